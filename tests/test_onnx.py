"""Exported files on onnxruntime: metadata, sessions, and one clear error for every file that cannot run."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onbeat.core.errors import OnbeatError
from onbeat.choreographers import onnx as runtime
from onbeat.core.music import FEATURE_NAMES


def write_identity_model(path, **metadata_changes):
    """A one-node ONNX graph (y = x) with onbeat metadata, edited by `metadata_changes` (None deletes a key)."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props = runtime.metadata_props("badm", "step", {"fps": 30, "slice_frames": 8}, "0" * 64)
    props.update(metadata_changes)
    for key, value in props.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_onnx_step_runs_and_decodes_metadata(tmp_path):
    step = runtime.OnnxStep(write_identity_model(tmp_path / "m.onnx"), threads=1)
    x = np.arange(4, dtype=np.float64).reshape(1, 4)  # float64 in: the step casts to the graph's float32
    np.testing.assert_array_equal(step(x), x.astype(np.float32))
    np.testing.assert_array_equal(step(x=x), x.astype(np.float32))
    assert step.metadata["fps"] == 30 and step.metadata["slice_frames"] == 8
    assert step.device in runtime.available_devices()


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(OnbeatError, match=r"nothere\.onnx: no such model file"):
        runtime.OnnxStep(tmp_path / "nothere.onnx")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(OnbeatError, match=r"corrupt\.onnx: not a readable ONNX model"):
        runtime.OnnxStep(path)


def test_truncated_file_is_rejected(tmp_path):
    path = write_identity_model(tmp_path / "cut.onnx")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OnbeatError, match=r"cut\.onnx"):
        runtime.OnnxStep(path)


def test_other_format_version_is_named(tmp_path):
    path = write_identity_model(tmp_path / "old.onnx", onbeat_format_version="0")
    with pytest.raises(OnbeatError, match=r"old\.onnx: format version '0' does not match this onbeat's '2'"):
        runtime.OnnxStep(path)


def test_other_feature_layout_is_named(tmp_path):
    changed = list(FEATURE_NAMES)
    changed[5] = "loudness"
    path = write_identity_model(tmp_path / "feat.onnx", feature_names=",".join(changed))
    with pytest.raises(OnbeatError, match=r"feat\.onnx: feature layout .*name 5 is 'loudness'"):
        runtime.OnnxStep(path)
    shorter = write_identity_model(tmp_path / "short.onnx", feature_names=",".join(FEATURE_NAMES[:-1]))
    with pytest.raises(OnbeatError, match=rf"short\.onnx: feature layout .*{len(FEATURE_NAMES) - 1} names"):
        runtime.OnnxStep(shorter)


def test_other_skeleton_and_foreign_onnx_are_named(tmp_path):
    with pytest.raises(OnbeatError, match=r"skeleton"):
        runtime.OnnxStep(write_identity_model(tmp_path / "a.onnx", joint_names="Hips,Spine"))
    with pytest.raises(OnbeatError, match=r"b\.onnx: not an onbeat model \(no 'onbeat_graph'"):
        runtime.OnnxStep(write_identity_model(tmp_path / "b.onnx", onbeat_graph=None))
    with pytest.raises(OnbeatError, match=r"c\.onnx: not an onbeat model"):
        runtime.OnnxStep(write_identity_model(tmp_path / "c.onnx", onbeat_format_version=None))
    with pytest.raises(OnbeatError, match=r"d\.onnx: damaged metadata"):
        runtime.OnnxStep(write_identity_model(tmp_path / "d.onnx", fps="{thirty"))


def test_unavailable_device_is_explained(tmp_path):
    path = write_identity_model(tmp_path / "m.onnx")
    if "cuda" in runtime.available_devices():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(OnbeatError, match="device cuda"):
        runtime.OnnxStep(path, device="cuda")
