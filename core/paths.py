"""Where onbeat finds the real data sets and its shipped model files."""
import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # onbeat/ when installed; the repository root in a checkout
ASSETS = PACKAGE_ROOT / "choreographers" / "assets"  # the shipped exported models (package data)
CHECKPOINTS = PACKAGE_ROOT / "models" / "checkpoints"  # the shipped trained weights they were exported from
# The checkpoint each shipped export comes from (its model card beside it); other kinds: <kind>_small.pt.
# codes_v2 is the default (choreographers.library.DEFAULT): the best on the validation split (see codes_v2.md).
SHIPPED_CHECKPOINTS = {"badm": "badm_v2.pt", "codes": "codes_v2.pt"}


def shipped_checkpoint(kind: str) -> Path:
    """The committed checkpoint the shipped export of `kind` is made from."""
    return CHECKPOINTS / SHIPPED_CHECKPOINTS.get(kind, f"{kind}_small.pt")


def user_models() -> Path:
    """Where onbeat keeps the models a user builds from data it may not ship (`onbeat graph build`):
    $ONBEAT_HOME/models, else $XDG_DATA_HOME/onbeat/models (default ~/.local/share/onbeat/models)."""
    if os.environ.get("ONBEAT_HOME"):
        return Path(os.environ["ONBEAT_HOME"]) / "models"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "onbeat" / "models"


def data_root() -> Path | None:
    """The shared research data (never shipped): $ONBEAT_DATA, else ../shared/data beside the checkout or the
    working directory. Returns None when none of them exists."""
    candidates = [os.environ.get("ONBEAT_DATA"), PACKAGE_ROOT.parent / "shared" / "data",
                  Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate).resolve()
    return None
