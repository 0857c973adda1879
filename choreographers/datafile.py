"""Exported data files: the export of a kind that is data rather than a graph (`graph`: a motion database) is one
`.npz` of plain arrays plus the same onbeat metadata an ONNX file carries (`onbeat.choreographers.onnx.metadata_props`:
kind, part, format version, feature and joint names, and the kind's own entries), stored as one JSON string under
`onbeat_metadata`. It loads with numpy alone: no onnxruntime, no pickles.
"""
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from onbeat.choreographers.onnx import metadata_props, read_metadata
from onbeat.core.errors import OnbeatError

METADATA_KEY = "onbeat_metadata"


class DataFile:
    """One exported data file, read whole: `.kind`, `.graph` (the part's name), `.metadata`, `.arrays` {name: array}."""

    def __init__(self, path: str | Path, arrays: bool = True):
        """`arrays=False` reads the metadata alone (`.arrays` is then empty)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise OnbeatError(f"{self.path}: no such model file")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if METADATA_KEY not in data.files:
                    raise OnbeatError(f"{self.path}: not an onbeat model (no '{METADATA_KEY}' in it)")
                props = str(data[METADATA_KEY])
                self.arrays = {name: data[name] for name in data.files if name != METADATA_KEY} if arrays else {}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise OnbeatError(f"{self.path}: not a readable onbeat data file ({str(e)[:200]})") from None
        try:
            props = json.loads(props)
        except (ValueError, RecursionError) as e:
            raise OnbeatError(f"{self.path}: damaged metadata ({str(e)[:200]})") from None
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise OnbeatError(f"{self.path}: damaged metadata (not a map of strings)")
        self.metadata = read_metadata(self.path, props)
        self.kind, self.graph = self.metadata["onbeat_kind"], self.metadata["onbeat_graph"]


def save_data_file(path: str | Path, kind: str, part: str, model_metadata: dict[str, Any],
                   arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` and their metadata as the export `path` (compressed); its digest is of the arrays' bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    props = metadata_props(kind, part, model_metadata, digest.hexdigest())
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # an open file: np.savez would append .npz to any other suffix
            named: dict[str, Any] = {METADATA_KEY: np.array(json.dumps(props)), **arrays}
            np.savez_compressed(f, **named)
    except OSError as e:
        raise OnbeatError(f"{path}: cannot write ({e.strerror or e})") from None
    return path
