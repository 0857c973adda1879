"""Exported files on onnxruntime: metadata, sessions, and one clear error for every file that cannot run."""
import json
import os
import re

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper

from onbeat.choreographers import onnx as runtime
from onbeat.choreographers.kinds import kind_named
from onbeat.commands.cli import main
from onbeat.core.errors import OnbeatError
from onbeat.core.music import FEATURE_NAMES
from onbeat.core.paths import ASSETS
from onbeat.evaluation import fuzz_grammar as grammar
from onbeat.evaluation.fuzz import onnx_metadata_case


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


# --- the values each kind's runtime reads --------------------------------------------------------------------------

def shipped_badm_with(tmp_path, **changes):
    """The shipped BADM file with metadata values replaced (JSON text; None deletes the key)."""
    model = onnx.load(str(ASSETS / "badm.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    for key, value in props.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    path = tmp_path / "edited.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"ddim_steps": None}, "metadata has no 'ddim_steps'"),
    ({"ddim_steps": "100000"}, "ddim_steps = 100000: must be 1..200"),
    ({"ddim_steps": "4.5"}, "ddim_steps = 4.5: must be an integer"),
    ({"slice_frames": "0"}, "slice_frames = 0: must be 2..300"),
    ({"pose_std": "[0.0]"}, r"pose_std = \[0\.0\]: must be a list of 151 numbers"),
    ({"pose_mean": json.dumps([float("nan")] * 151)}, "pose_mean = .*item 0 must be a finite number"),
    ({"pose_mean": "[1, 2"}, "damaged metadata"),
    ({"pose_mean": "[" * 100_000 + "]" * 100_000}, "damaged metadata"),
])
def test_metadata_values_are_checked_against_their_bounds(tmp_path, capsys, changes, expected):
    path = shipped_badm_with(tmp_path, **changes)
    assert main(["play", "--demo", "--seconds", "1", "--model", str(path), "--silent", "--no-vmc", "--quiet",
                 "--control-port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and re.search(expected, err[0]), err


@pytest.mark.parametrize("changes, expected", [
    ({"slice_frames": 9}, "not a multiple of rate 4"), ({"start_token": 300}, "past the codebook"),
    ({"context": 8192, "layers": 64}, "MiB cache"),
    ({"sampling": {"temperature": 1.0, "top_k": 12, "repeat_window": 8}}, "sampling = .*: misses repeat_penalty"),
    ({"sampling": {"temperature": 0, "top_k": 12, "repeat_window": 8, "repeat_penalty": 1.0}},
     "temperature must be above"),
])
def test_codes_metadata_is_checked_across_keys(changes, expected):
    step = runtime.OnnxStep(ASSETS / "codes.gpt.onnx")
    with pytest.raises(OnbeatError, match=expected):
        kind_named("codes").check_metadata("codes.gpt.onnx", {**step.metadata, **changes})


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(grammar.strategy(grammar.onnx_metadata))
def test_grammar_fuzz_metadata_is_refused_in_one_line_or_runs(case):
    onnx_metadata_case(case)  # raises on any other error, or when accepted metadata does not dance
