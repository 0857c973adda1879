"""The one checkpoint format of every model kind, and the dict → config dataclass step they share.

A checkpoint is a torch-saved dict: "kind" (a registered kind, see `onbeat.choreographers.kinds`), "config" (the
model's full config dataclass as a dict, plus the trainer's settings), "stats" (the dataset normalizer arrays the
model was built with), "model" (its state dict), "step" and "train_seconds". The trainer's `checkpoint.pt` adds
"optimizer" and "rng" so `--resume` continues exactly; `model.pt` is the same without them.
"""
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onbeat.core.errors import OnbeatError


def config_from(cls: type, values: dict[str, Any]) -> Any:
    """The config dataclass `cls` from `values`, ignoring keys it does not have (e.g. the trainer's)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def model_state(kind: str, model: Any, stats: dict[str, Any], cfg: dict[str, Any] | None = None,
                step: int = 0, seconds: float = 0.0) -> dict[str, Any]:
    """What a checkpoint of `model` holds (the model's own config overrides same-named keys of `cfg`)."""
    return {"kind": kind, "model": model.state_dict(), "config": {**(cfg or {}), **asdict(model.cfg)}, "step": step,
            "stats": {k: np.asarray(v) for k, v in stats.items()}, "train_seconds": seconds}


def save_model(path: str | Path, kind: str, model: Any, stats: dict[str, Any]) -> None:
    torch.save(model_state(kind, model, stats), path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise OnbeatError(f"{path}: no such checkpoint") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise OnbeatError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not {"kind", "config", "stats", "model"} <= set(state):
        raise OnbeatError(f"{path}: not an onbeat model checkpoint")
    return state


def load_model(path: str | Path, kind: str | None = None) -> Any:
    """The trained model in `path` (checkpoint.pt or model.pt), in eval mode; `kind` checks what it is.
    It is built bare from its config rather than through `from_config`: the checkpoint holds every weight, so
    files the config names for training (a codes GPT's `vq_checkpoint`) need not exist any more."""
    from onbeat.choreographers.kinds import kind_named

    state = read_checkpoint(path)
    if kind is not None and state["kind"] != kind:
        raise OnbeatError(f"{path}: a {state['kind']} checkpoint, not {kind}")
    cls = kind_named(state["kind"]).model_class()
    model = cls(config_from(cls.CONFIG, state["config"]), state["stats"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise OnbeatError(f"{path}: weights do not fit the {state['kind']} model ({str(e).splitlines()[0]})") from None
    return model.eval()
