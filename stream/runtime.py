"""Run the exported choreographers with onnxruntime: no torch, CPU or CUDA.

An exported model is one ONNX graph per streaming step (BADM: the denoiser; codes: the GPT step and the VQ-VAE
decoder) with everything the runtime needs stored in the file's metadata (fps, slice length, feature layout,
skeleton, normaliser...). The sampling loops themselves live once, in numpy, in `onbeat.models.*_sampler`: torch
feeds them callables for training and evaluation, this module feeds them the same callables backed by ONNX
sessions (`OnnxStep`).
"""
import json
from pathlib import Path

import numpy as np

from onbeat.models.errors import OnbeatError
from onbeat.models.skeleton import JOINT_NAMES
from onbeat.stream.features import FEATURE_NAMES

FORMAT_VERSION = 1  # bump when the meaning of an exported graph's inputs/outputs changes
ASSETS = Path(__file__).resolve().parent / "assets"

# Metadata keys stored as plain strings; every other key holds JSON (the model's own `metadata()` entries).
PLAIN_KEYS = ("onbeat_format_version", "onbeat_kind", "feature_names", "joint_names", "checkpoint_sha256")
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                "tensor(bool)": np.bool_, "tensor(double)": np.float64}


def metadata_props(kind, model_metadata, checkpoint_sha256):
    """The string → string metadata written into an exported ONNX file (see `read_metadata`)."""
    props = {"onbeat_format_version": str(FORMAT_VERSION), "onbeat_kind": kind,
             "feature_names": ",".join(FEATURE_NAMES), "joint_names": ",".join(JOINT_NAMES),
             "checkpoint_sha256": checkpoint_sha256}
    props.update({key: json.dumps(value) for key, value in model_metadata.items() if key not in props})
    return props


def decode_metadata(props):
    """The inverse of `metadata_props`: plain keys stay strings, the others are decoded from JSON."""
    return {key: value if key in PLAIN_KEYS else json.loads(value) for key, value in props.items()}


def check_metadata(path, metadata, kind):
    """Raise one OnbeatError naming the first thing in `metadata` this onbeat cannot run."""
    def expect(key, wanted, what):
        found = metadata.get(key)
        if found is None:
            raise OnbeatError(f"{path}: not an onbeat model (no '{key}' in its metadata)")
        if found != wanted:
            raise OnbeatError(f"{path}: {what} {found!r} does not match this onbeat's {wanted!r}; re-export it "
                              "with `onbeat export`")

    expect("onbeat_format_version", str(FORMAT_VERSION), "format version")
    expect("onbeat_kind", kind, "model kind")
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
    index = next(i for i, (a, b) in enumerate(zip(found, wanted)) if a != b)
    return f"name {index} is {found[index]!r}, expected {wanted[index]!r}"


def available_devices():
    """The devices onnxruntime could run on here: always 'cpu', 'cuda' when the CUDA provider is installed."""
    import onnxruntime as ort
    return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])


def open_session(path, threads=2, device="auto"):
    """An onnxruntime session for `path` on `device` ('auto' = CUDA when it really works, else CPU)."""
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # a CUDA fallback or an unused initializer is not the user's problem
    path = Path(path)
    if not path.is_file():
        raise OnbeatError(f"{path}: no such model file")
    if device not in ("auto", "cpu", "cuda"):
        raise OnbeatError(f"unknown device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and "cuda" not in available_devices():
        raise OnbeatError(f"device cuda: onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
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
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable graphs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnbeatError(f"{path}: not a readable ONNX model ({reason[:200]})") from None
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise OnbeatError(f"device cuda: onnxruntime could not start CUDA for {path} (driver or CUDA libraries)")
    return session


class OnnxStep:
    """One exported graph as a numpy callable: `step(*arrays)` → the output array (or a tuple of them), inputs
    in the graph's order (or by name), cast to the dtypes the graph expects."""

    def __init__(self, path, kind, threads=2, device="auto"):
        self.path = Path(path)
        self.session = open_session(path, threads, device)
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map)
        check_metadata(self.path, self.metadata, kind)
        self.inputs = [(i.name, _NUMPY_TYPES.get(i.type, np.float32)) for i in self.session.get_inputs()]
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    def __call__(self, *arrays, **named):
        if len(arrays) + len(named) != len(self.inputs):
            raise TypeError(f"{self.path.name} takes {len(self.inputs)} inputs, got {len(arrays) + len(named)}")
        values = dict(zip((name for name, _ in self.inputs), arrays), **named)
        feed = {name: np.ascontiguousarray(values[name], dtype=dtype) for name, dtype in self.inputs}
        outputs = self.session.run(None, feed)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
