"""The onnxruntime side: loading exported files, rejecting bad ones, and the default choreographers."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper

from onbeat.evaluation import fuzz_grammar as grammar
from onbeat.evaluation.fuzz import onnx_metadata_case

from onbeat.exporters.parity import synthetic_music
from onbeat.core.errors import OnbeatError
from onbeat.choreographers import runtime
from onbeat.core.music import FEATURE_NAMES
from onbeat.core.representation import POSE_DIM

# What a BADM runtime reads from its file, valid.
BADM_METADATA = {"fps": 30, "slice_frames": 8, "ddim_steps": 4, "pose_mean": [0.0] * POSE_DIM,
                 "pose_std": [1.0] * POSE_DIM}


def write_identity_model(path, **metadata_changes):
    """A one-node ONNX graph (y = x) with onbeat metadata, edited by `metadata_changes` (None deletes a key)."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props = runtime.metadata_props("badm", BADM_METADATA, "0" * 64)
    props.update(metadata_changes)
    for key, value in props.items():
        if value is not None:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_onnx_step_runs_and_decodes_metadata(tmp_path):
    step = runtime.OnnxStep(write_identity_model(tmp_path / "m.onnx"), "badm", threads=1)
    x = np.arange(4, dtype=np.float64).reshape(1, 4)  # float64 in: the step casts to the graph's float32
    np.testing.assert_array_equal(step(x), x.astype(np.float32))
    np.testing.assert_array_equal(step(x=x), x.astype(np.float32))
    assert step.metadata["fps"] == 30 and step.metadata["slice_frames"] == 8
    assert step.device in runtime.available_devices()


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(OnbeatError, match=r"nothere\.onnx: no such model file"):
        runtime.OnnxStep(tmp_path / "nothere.onnx", "badm")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(OnbeatError, match=r"corrupt\.onnx: not a readable ONNX model"):
        runtime.OnnxStep(path, "badm")


def test_truncated_file_is_rejected(tmp_path):
    path = write_identity_model(tmp_path / "cut.onnx")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OnbeatError, match=r"cut\.onnx"):
        runtime.OnnxStep(path, "badm")


def test_other_format_version_is_named(tmp_path):
    path = write_identity_model(tmp_path / "old.onnx", onbeat_format_version="0")
    with pytest.raises(OnbeatError, match=r"old\.onnx: format version '0' does not match this onbeat's '1'"):
        runtime.OnnxStep(path, "badm")


def test_other_feature_layout_is_named(tmp_path):
    changed = list(FEATURE_NAMES)
    changed[5] = "loudness"
    path = write_identity_model(tmp_path / "feat.onnx", feature_names=",".join(changed))
    with pytest.raises(OnbeatError, match=r"feat\.onnx: feature layout .*name 5 is 'loudness'"):
        runtime.OnnxStep(path, "badm")
    shorter = write_identity_model(tmp_path / "short.onnx", feature_names=",".join(FEATURE_NAMES[:-1]))
    with pytest.raises(OnbeatError, match=rf"short\.onnx: feature layout .*{len(FEATURE_NAMES) - 1} names"):
        runtime.OnnxStep(shorter, "badm")


def test_other_skeleton_and_kind_and_foreign_onnx_are_named(tmp_path):
    with pytest.raises(OnbeatError, match=r"skeleton"):
        runtime.OnnxStep(write_identity_model(tmp_path / "a.onnx", joint_names="Hips,Spine"), "badm")
    with pytest.raises(OnbeatError, match=r"model kind 'badm'"):
        runtime.OnnxStep(write_identity_model(tmp_path / "b.onnx"), "codes.gpt")
    with pytest.raises(OnbeatError, match=r"c\.onnx: not an onbeat model"):
        runtime.OnnxStep(write_identity_model(tmp_path / "c.onnx", onbeat_format_version=None), "badm")
    with pytest.raises(OnbeatError, match=r"d\.onnx: damaged metadata"):
        runtime.OnnxStep(write_identity_model(tmp_path / "d.onnx", fps="{thirty"), "badm")


def shipped_badm_with(tmp_path, **changes):
    """The shipped BADM file with metadata values replaced (JSON text; None deletes the key)."""
    model = onnx.load(str(runtime.ASSETS / "badm.onnx"))
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
    from onbeat.commands.cli import main
    path = shipped_badm_with(tmp_path, **changes)
    assert main(["play", "--demo", "--seconds", "1", "--model", str(path), "--silent", "--no-vmc", "--quiet",
                 "--control-port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and re.search(expected, err[0]), err


@pytest.mark.parametrize("changes, expected", [
    ({"slice_frames": 9}, "not a multiple of rate 4"), ({"start_token": 300}, "past the codebook"),
    ({"context": 8192, "layers": 64}, "MiB cache"),
    ({"sampling": {"temperature": 1.0, "top_k": 12, "repeat_window": 8}}, "sampling = .*: misses repeat_penalty"),
    ({"sampling": {"temperature": 0, "top_k": 12, "repeat_window": 8, "repeat_penalty": 1.0}}, "temperature must be above"),
])
def test_codes_metadata_is_checked_across_keys(changes, expected):
    step = runtime.OnnxStep(runtime.ASSETS / "codes.gpt.onnx", "codes.gpt")
    with pytest.raises(OnbeatError, match=expected):
        runtime.check_metadata_values("codes.gpt.onnx", {**step.metadata, **changes}, "codes.gpt")


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(grammar.strategy(grammar.onnx_metadata))
def test_grammar_fuzz_metadata_is_refused_in_one_line_or_runs(case):
    onnx_metadata_case(case)  # raises on a traceback-worthy error or a run that fails (see onbeat.evaluation.fuzz)


SLOW_STEP_AT_EXIT = """
from onbeat.choreographers.runtime import load_default_choreographer
from onbeat.stream.engine import Engine
from onbeat.ear.sources import SyntheticSource
dancer = load_default_choreographer()
dancer.set_quality = lambda level: None
dancer.full_steps = dancer.steps = 4000  # a slice takes seconds: still in onnxruntime when the show ends
Engine(SyntheticSource(bpm=120), {"default": dancer}, [], rate=60.0).run(3.0)
print("done", flush=True)
"""


@pytest.mark.slow
def test_the_show_ends_cleanly_while_onnxruntime_is_in_a_long_step():
    result = subprocess.run([sys.executable, "-c", SLOW_STEP_AT_EXIT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]
    assert "terminate called" not in result.stderr


def test_unavailable_device_is_explained(tmp_path):
    path = write_identity_model(tmp_path / "m.onnx")
    if "cuda" in runtime.available_devices():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(OnbeatError, match="device cuda"):
        runtime.OnnxStep(path, "badm", device="cuda")


# --- the shipped models ------------------------------------------------------------------------------------------

SIXTY_SECONDS = """
import sys
import numpy as np
from onbeat.exporters.parity import synthetic_music
from onbeat.choreographers.runtime import load_default_choreographer

dancer = load_default_choreographer(sys.argv[1], threads=1, seed=0)
music = synthetic_music(60.0)
frames = dancer.slice_frames
motions = [dancer.next_slice(music[k * frames:(k + 2) * frames]) for k in range(len(music) // frames)]
positions = np.concatenate([m.positions() for m in motions])
speed = np.linalg.norm(np.diff(positions, axis=0), axis=-1).mean(-1) * dancer.fps
assert len(positions) == 1800 and np.isfinite(positions).all(), positions.shape
print(f"{np.median(speed):.4f} {'torch' in sys.modules}")
"""


@pytest.mark.parametrize("name", sorted(runtime.DEFAULT_MODELS))
def test_default_model_dances_a_minute_without_torch(name):
    """The live path: the shipped ONNX model, onnxruntime and numpy only (torch is never imported)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SIXTY_SECONDS, name], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    median_speed, torch_loaded = done.stdout.split()
    assert torch_loaded == "False"
    assert float(median_speed) > 0.05  # m/s of the mean joint: it dances, it does not stand still


@pytest.fixture(scope="module")
def badm():
    return runtime.load_default_choreographer("badm", threads=1, seed=3)


def music_slices(dancer, seconds=2.0):
    music = synthetic_music(seconds)
    frames = dancer.slice_frames
    return [music[k * frames:(k + 2) * frames] for k in range(len(music) // frames - 1)]


def test_slices_continue_each_other_and_reset_repeats_a_seeded_dance(badm):
    badm.reset()
    first = [badm.next_slice(m) for m in music_slices(badm)]
    root = np.concatenate([m.root_translation for m in first])
    step = np.linalg.norm(np.diff(root[:, [0, 2]], axis=0), axis=-1)
    assert step.max() < 0.2  # m per frame: no jump back to the origin at slice joins
    badm.reset()
    again = [badm.next_slice(m) for m in music_slices(badm)]
    np.testing.assert_allclose(again[-1].rotations, first[-1].rotations, atol=1e-5)


def test_quality_levels_take_fewer_denoising_steps(badm):
    calls = []
    counted = runtime.BadmChoreographer(lambda *a: calls.append(1) or badm.denoise(*a), badm.denoise.metadata)
    music = music_slices(counted)[0]
    for level, expected in ((1.0, counted.full_steps), (0.25, max(1, round(counted.full_steps / 4)))):
        counted.set_quality(level)
        calls.clear()
        counted.next_slice(music)
        assert len(calls) == expected


def test_energy_scales_the_motion_and_a_key_pose_is_accepted(badm):
    def mean_speed(energy, key_pose=None):
        badm.reset()
        motions = [badm.next_slice(m, energy=energy, key_pose=key_pose) for m in music_slices(badm, 4.0)]
        positions = np.concatenate([m.positions() for m in motions])
        return np.linalg.norm(np.diff(positions, axis=0), axis=-1).mean()

    assert mean_speed(0.2) < 0.6 * mean_speed(1.0)
    assert np.isfinite(mean_speed(1.0, key_pose="arms_up"))


def test_music_of_the_wrong_shape_is_one_error(badm):
    with pytest.raises(OnbeatError, match="music for a slice"):
        badm.next_slice(np.zeros((badm.slice_frames, 5), np.float32))


def test_unknown_default_and_missing_codes_pair_are_named(tmp_path):
    with pytest.raises(OnbeatError, match="unknown model 'salsa'"):
        runtime.load_default_choreographer("salsa")
    (tmp_path / "mine.decoder.onnx").write_bytes(b"")
    with pytest.raises(OnbeatError, match=r"mine\.gpt\.onnx: no such model file"):
        runtime.load_choreographer(tmp_path / "mine.onnx")
