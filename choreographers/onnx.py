"""Exported models on onnxruntime: the metadata every file carries, sessions on CPU or CUDA, numpy callables.

An exported model is one ONNX graph per streaming step (see `onbeat.choreographers.kinds` for which graphs each
kind has). Each file's metadata says what it is (`onbeat_kind`, `onbeat_graph`) and holds everything the runtime
needs (fps, slice length, feature layout, skeleton, normaliser...), so a file loads with nothing beside it.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import FEATURE_NAMES
from onbeat.core.skeleton import JOINT_NAMES

FORMAT_VERSION = 2  # bump when the meaning of an exported graph's inputs/outputs or metadata changes

# Metadata keys stored as plain strings; every other key holds JSON (the model's own `metadata()` entries).
PLAIN_KEYS = ("onbeat_format_version", "onbeat_kind", "onbeat_graph", "feature_names", "joint_names",
              "checkpoint_sha256")
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                "tensor(bool)": np.bool_, "tensor(double)": np.float64}


def metadata_props(kind: str, graph: str, model_metadata: dict[str, Any], checkpoint_sha256: str) -> dict[str, str]:
    """The string → string metadata written into an exported ONNX file (see `decode_metadata`)."""
    props = {"onbeat_format_version": str(FORMAT_VERSION), "onbeat_kind": kind, "onbeat_graph": graph,
             "feature_names": ",".join(FEATURE_NAMES), "joint_names": ",".join(JOINT_NAMES),
             "checkpoint_sha256": checkpoint_sha256}
    props.update({key: json.dumps(value) for key, value in model_metadata.items() if key not in props})
    return props


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """The inverse of `metadata_props`: plain keys stay strings, the others are decoded from JSON."""
    return {key: value if key in PLAIN_KEYS else json.loads(value) for key, value in props.items()}


def read_metadata(path: Path, props: dict[str, str]) -> dict[str, Any]:
    """The metadata of the model file `path` from its string → string map: decoded and checked."""
    try:
        metadata = decode_metadata(props)
    except (ValueError, RecursionError) as e:  # not JSON, or JSON nested deeper than the parser's recursion limit
        raise OnbeatError(f"{path}: damaged metadata ({str(e)[:200]})") from None
    check_metadata(path, metadata)
    return metadata


def check_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Raise one OnbeatError naming the first thing in `metadata` this onbeat cannot run."""
    for key in ("onbeat_format_version", "onbeat_kind", "onbeat_graph"):
        if key not in metadata:
            raise OnbeatError(f"{path}: not an onbeat model (no '{key}' in its metadata)")
    if metadata["onbeat_format_version"] != str(FORMAT_VERSION):
        raise OnbeatError(f"{path}: format version {metadata['onbeat_format_version']!r} does not match this "
                          f"onbeat's {str(FORMAT_VERSION)!r}; re-export it with `onbeat export`")
    features = metadata.get("feature_names", "").split(",")
    if features != list(FEATURE_NAMES):
        problem = _first_difference(features, FEATURE_NAMES)
        raise OnbeatError(f"{path}: feature layout does not match this onbeat's ({problem}); re-export it with "
                          "`onbeat export`")
    joints = metadata.get("joint_names", "").split(",")
    if joints != list(JOINT_NAMES):
        raise OnbeatError(f"{path}: skeleton does not match SMPL-24 ({_first_difference(joints, JOINT_NAMES)})")


def _first_difference(found, wanted):
    if len(found) != len(wanted):
        return f"{len(found)} names, expected {len(wanted)}"
    index = next(i for i, (a, b) in enumerate(zip(found, wanted, strict=True)) if a != b)
    return f"name {index} is {found[index]!r}, expected {wanted[index]!r}"


# --- the values a runtime reads ----------------------------------------------------------------------------------
# Each kind states the metadata values its runtime reads, with their types and bounds (`MetadataSchema`, named by
# its `Kind`): a file that breaks one is refused at load with one line naming the key, where a damaged or hostile
# file would otherwise crash, hang the show, or allocate without limit.

@dataclass(frozen=True)
class Integer:
    low: int
    high: int

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return None if self.low <= value <= self.high else f"must be {self.low}..{self.high}"


@dataclass(frozen=True)
class Number:
    low: float
    high: float
    above_low: bool = False  # low itself is excluded

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "must be a finite number"
        ok = (value > self.low if self.above_low else value >= self.low) and value <= self.high
        return None if ok else f"must be {'above ' if self.above_low else ''}{self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class Numbers:
    """A list of `length` numbers, each within `each`."""
    length: int
    each: Number

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list) or len(value) != self.length:
            return f"must be a list of {self.length} numbers"
        bad = next((i for i, v in enumerate(value) if self.each.problem(v)), None)
        return None if bad is None else f"item {bad} {self.each.problem(value[bad])}"


@dataclass(frozen=True)
class Table:
    """A JSON object with exactly these keys (`optional` ones may be missing)."""
    keys: dict
    optional: tuple = ()

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return "must be an object"
        missing = set(self.keys) - set(value) - set(self.optional)
        unknown = set(value) - set(self.keys)
        if missing or unknown:
            return f"{'misses' if missing else 'has unknown'} {', '.join(sorted(missing or unknown))}"
        return next((f"{key} {self.keys[key].problem(v)}" for key, v in value.items() if self.keys[key].problem(v)),
                    None)


@dataclass(frozen=True)
class MetadataSchema:
    """The values a kind's runtime reads (key → Integer/Number/Numbers/Table), and `rules` between them: each
    takes the metadata (its values already in bounds) and returns a problem or None."""
    values: dict
    rules: tuple = ()

    def check(self, path: Path, metadata: dict[str, Any]) -> None:
        """OnbeatError naming the first value that is missing, out of bounds, or breaks a rule."""
        for key, spec in self.values.items():
            if key not in metadata:
                raise OnbeatError(f"{path}: metadata has no '{key}'; re-export it with `onbeat export`")
            problem = spec.problem(metadata[key])
            if problem:
                shown = repr(metadata[key])
                raise OnbeatError(f"{path}: metadata {key} = {shown if len(shown) < 40 else shown[:37] + '...'}: "
                                  f"{problem}")
        for rule in self.rules:
            problem = rule(metadata)
            if problem:
                raise OnbeatError(f"{path}: metadata {problem}")


def available_devices() -> list[str]:
    """The devices onnxruntime could run on here: always 'cpu', 'cuda' when the CUDA provider is installed."""
    import onnxruntime as ort
    return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])


def open_session(path: Path, threads: int = 1, device: str = "auto") -> Any:
    """An onnxruntime session for `path` on `device` ('auto' = CUDA when it really works, else CPU). One thread
    by default: a step is ~1 ms of small matrices, where a second thread gains little and takes a core from the
    live engine's audio and output threads (`onbeat bench model` compares 1 and 2)."""
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # a CUDA fallback or an unused initializer is not the user's problem
    path = Path(path)
    if not path.is_file():
        raise OnbeatError(f"{path}: no such model file")
    if device not in ("auto", "cpu", "cuda"):
        raise OnbeatError(f"unknown device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and "cuda" not in available_devices():
        raise OnbeatError("device cuda: onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
    use_cuda = device == "cuda" or (device == "auto" and "cuda" in available_devices())
    providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads would steal the cores the audio and output threads of the live engine need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors for unreadable graphs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnbeatError(f"{path}: not a readable ONNX model ({reason[:200]})") from None
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise OnbeatError(f"device cuda: onnxruntime could not start CUDA for {path} (driver or CUDA libraries)")
    return session


class OnnxStep:
    """One exported graph as a numpy callable: `step(*arrays)` → the output array (or a tuple of them), inputs
    in the graph's order (or by name), cast to the dtypes the graph expects. `.kind`, `.graph` and `.metadata`
    come from the file."""

    def __init__(self, path: Path, threads: int = 1, device: str = "auto"):
        self.path = Path(path)
        self.session = open_session(path, threads, device)
        self.metadata = read_metadata(self.path, self.session.get_modelmeta().custom_metadata_map)
        self.kind, self.graph = self.metadata["onbeat_kind"], self.metadata["onbeat_graph"]
        self.inputs = [(i.name, _NUMPY_TYPES.get(i.type, np.float32)) for i in self.session.get_inputs()]
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        # One call on zeros: onnxruntime allocates on its first run, which must not delay the first live slice.
        # A dynamic dimension (the batch of `exporters.onnx_export`) is warmed up at 1.
        shapes = [[size if isinstance(size, int) else 1 for size in i.shape] for i in self.session.get_inputs()]
        self(*(np.zeros(shape) for shape in shapes))
        self.batched = any(not isinstance(size, int) for i in self.session.get_inputs() for size in i.shape)

    def __call__(self, *arrays: np.ndarray, **named: np.ndarray) -> Any:
        if len(arrays) + len(named) != len(self.inputs):
            raise TypeError(f"{self.path.name} takes {len(self.inputs)} inputs, got {len(arrays) + len(named)}")
        values = dict(zip((name for name, _ in self.inputs), arrays, strict=False), **named)  # the rest by name
        feed: dict[str, np.ndarray] = {name: np.ascontiguousarray(values[name], dtype=dtype)
                                       for name, dtype in self.inputs}
        outputs = self.session.run(None, feed)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


Step = Callable[..., Any]  # a graph as a numpy callable: an OnnxStep, or the torch model's own for parity/eval
