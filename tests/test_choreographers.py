"""The choreographers' runtimes: the shipped models by name, slices that continue, quality levels, energy,
and exports found by the kind in their own metadata."""
import numpy as np
import pytest

from onbeat.choreographers.badm import BadmChoreographer
from onbeat.choreographers.base import choose_style
from onbeat.choreographers.conditioning import STYLE_BLEND_SECONDS, conditioned
from onbeat.choreographers.kinds import load_choreographer
from onbeat.choreographers.library import Library
from onbeat.core.errors import OnbeatError
from onbeat.core.music import synthetic_music
from onbeat.core.paths import ASSETS

SIXTY_SECONDS = """
import sys
import numpy as np
from onbeat.core.music import synthetic_music
from onbeat.choreographers.library import Library

dancer = Library(threads=1, seed=0).load(sys.argv[1])
music = synthetic_music(60.0)
frames = dancer.slice_frames
motions = [dancer.next_slice(music[k * frames:(k + 2) * frames]) for k in range(len(music) // frames)]
positions = np.concatenate([m.positions() for m in motions])
speed = np.linalg.norm(np.diff(positions, axis=0), axis=-1).mean(-1) * dancer.fps
assert len(positions) == 1800 and np.isfinite(positions).all(), positions.shape
print(f"{np.median(speed):.4f} {'torch' in sys.modules}")
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["badm", "codes"])
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
    return Library(threads=1, seed=3).load("badm")


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
    step = getattr(badm.denoise, "step", badm.denoise)  # the graph itself, under a styled model's conditioning
    counted = BadmChoreographer({"step": lambda *a, **k: calls.append(1) or step(*a, **k)}, badm.denoise.metadata)
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


def test_unknown_name_and_missing_files_are_named(tmp_path):
    with pytest.raises(OnbeatError, match="model salsa: choose one of groove, default, badm, codes"):
        Library().load("salsa")
    with pytest.raises(OnbeatError, match=r"mine\.onnx: no such model file"):
        load_choreographer(tmp_path / "mine.onnx")


def test_a_several_graph_export_is_found_by_its_name_or_either_file_and_its_kind_is_read_from_the_file(tmp_path):
    for name in ("codes.gpt.onnx", "codes.decoder.onnx"):
        (tmp_path / name.replace("codes", "mine")).write_bytes((ASSETS / name).read_bytes())
    for path in ("mine.onnx", "mine.gpt.onnx", "mine.decoder.onnx"):
        assert load_choreographer(tmp_path / path).slice_frames == 8
    (tmp_path / "renamed.onnx").write_bytes((ASSETS / "codes.gpt.onnx").read_bytes())  # a name that says nothing
    with pytest.raises(OnbeatError, match=r"renamed\.decoder\.onnx: no such model file"):
        load_choreographer(tmp_path / "renamed.onnx")  # read as a codes gpt graph: its decoder is looked for
    (tmp_path / "mine.decoder.onnx").write_bytes((ASSETS / "badm.onnx").read_bytes())
    with pytest.raises(OnbeatError, match=r"mine\.decoder\.onnx: a badm step graph, expected codes decoder"):
        load_choreographer(tmp_path / "mine.gpt.onnx")


def test_a_styled_graph_gets_the_live_mask_and_the_chosen_style():
    calls = []
    metadata = {"styles": ["freestyle", "waltz", "tango"], "music_mask": ["audio", "beat"]}
    step = conditioned(lambda *arrays, **named: calls.append(named), metadata, music_input=1, style="waltz")
    music = np.zeros((1, 4, 28), np.float32)
    music[0, :2] = 0.5  # two rows of music, then silence
    step(np.zeros(1), music)
    assert calls[-1]["style"].tolist() == [1] and calls[-1]["music_mask"][0].tolist() == [[1, 1]] * 2 + [[0, 0]] * 2
    step.style = None  # freestyle
    step(np.zeros(1), music)
    assert calls[-1]["style"].tolist() == [0]
    with pytest.raises(OnbeatError, match="unknown style 'krump'"):
        step.style = "krump"  # in the vocabulary, but not one this model knows
    plain = object()
    assert conditioned(plain, {"styles": []}, 1) is plain  # a model without the inputs is left as it is
    with pytest.raises(OnbeatError, match="music_mask"):
        conditioned(plain, {"styles": ["freestyle"], "music_mask": ["audio"]}, 1)


def test_a_style_switch_blends_the_graph_outputs_of_both_styles_then_runs_one():
    calls = []

    def step(*arrays, music_mask, style):  # outputs that say which style was asked for
        calls.append(int(style[0]))
        return np.full((1, 2), 10.0 * style[0], np.float32), np.full((1, 3), 100.0 * style[0], np.float32)
    metadata = {"styles": ["freestyle", "waltz", "tango"], "music_mask": ["audio", "beat"]}
    graph = conditioned(step, metadata, music_input=1, style="waltz")
    music = np.ones((1, 4, 28), np.float32)
    assert graph(None, music)[0].tolist() == [[10.0, 10.0]] and calls == [1]  # one call when not blending
    graph.switch("tango")
    assert graph.blending and graph.style == "tango"
    graph.advance(STYLE_BLEND_SECONDS / 4)
    calls.clear()
    first, second = graph(None, music)
    assert sorted(calls) == [1, 2]  # both styles ran
    assert first.tolist() == [[12.5, 12.5]] and second.tolist() == [[125.0] * 3]  # a quarter of the way to tango
    graph.advance(STYLE_BLEND_SECONDS)
    calls.clear()
    assert graph(None, music)[0].tolist() == [[20.0, 20.0]] and calls == [2] and not graph.blending
    with pytest.raises(OnbeatError, match="unknown style 'salsa'"):
        graph.switch("salsa")
    assert graph.style == "tango" and not graph.blending  # an unknown style changes nothing


def test_the_groove_knows_no_styles_and_says_so():
    with pytest.raises(OnbeatError, match="this model knows no styles"):
        choose_style(Library().load("groove"), "waltz")
