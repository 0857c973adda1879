import numpy as np
import pytest
import torch

from onbeat.models import dataset
from onbeat.evaluation import dance as evaluate
from onbeat.core import rotations as R
from onbeat.models.checkpoint import save_model
from onbeat.models.codes import Codes
from onbeat.core.motion import Motion
from onbeat.core.representation import encode
from onbeat.core.skeleton import JOINT_INDEX, NUM_JOINTS
from onbeat.commands.cli import main
from onbeat.core.music import FEATURE_DIM, FEATURE_NAMES

FPS = 30


def beat_music(frames, bpm, rng):
    music = rng.normal(size=(frames, FEATURE_DIM)).astype(np.float32)
    phase = (np.arange(frames) / FPS * bpm / 60) % 1.0
    music[:, FEATURE_NAMES.index("beat_phase_sin")] = np.sin(2 * np.pi * phase)
    music[:, FEATURE_NAMES.index("beat_phase_cos")] = np.cos(2 * np.pi * phase)
    return music


def swaying_rows(frames, bpm):
    t = np.arange(frames) / FPS
    rotations = R.quat_identity((frames, NUM_JOINTS))
    for joint in ("Left_Shoulder", "Right_Shoulder", "Left_Knee"):
        rotations[:, JOINT_INDEX[joint]] = R.quat_from_axis_angle(
            np.outer(0.6 * np.sin(np.pi * t * bpm / 60), [0.0, 0.0, 1.0]))
    root = np.stack([0.1 * np.sin(np.pi * t * bpm / 60), np.full(frames, 0.95), np.zeros(frames)], axis=1)
    return encode(Motion(FPS, root, rotations))


@pytest.fixture
def tiny_setup(tmp_path):
    rng = np.random.default_rng(0)
    tracks = [dataset.Track(f"dance{i}", "synthetic", "groove", f"take{i}", swaying_rows(300, 100 + 10 * i),
                            beat_music(300, 100 + 10 * i, rng), True) for i in range(4)]
    arrays = dataset.build(tracks, window=60, stride=30, val_fraction=0.25)
    data = tmp_path / "data.npz"
    dataset.save(data, arrays)
    torch.manual_seed(0)
    stats = dataset.WindowData(arrays).stats
    model = Codes.from_config(Codes.PRESETS["tiny"], stats)
    checkpoint = tmp_path / "codes.pt"
    save_model(checkpoint, "codes", model, stats)
    return data, checkpoint


def test_beat_times_are_where_the_phase_wraps():
    music = beat_music(300, 120, np.random.default_rng(1))
    beats = evaluate.beat_times(music, FPS)
    assert np.allclose(beats, np.arange(1, 20) * 0.5, atol=1 / FPS)


@pytest.mark.slow
def test_eval_dance_prints_one_table_and_plots(tiny_setup, tmp_path, capsys):
    data, checkpoint = tiny_setup
    plot = tmp_path / "speed.png"
    assert main(["eval", "dance", "--data", str(data), "--models", f"codes={checkpoint}", "--seconds", "8",
                 "--threads", "1", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    header, *rows = [line for line in out.splitlines() if "FID_k" in line or line.startswith(("real", "codes"))]
    assert header.split()[:2] == ["FID_k", "FID_g"] and header.split()[-2:] == ["x", "realtime"]
    assert [r.split()[0] for r in rows] == ["real", "real", "codes"]
    assert float(rows[2].split()[-1]) > 0  # generation speed was measured
    assert plot.stat().st_size > 1000


def test_eval_dance_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["eval", "dance", "--data", str(tmp_path / "missing.npz"), "--models", ""]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert main(["eval", "dance", "--data", str(tmp_path), "--models", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
