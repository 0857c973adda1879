import sys
import types
from collections import namedtuple

import numpy as np
import pytest

from onbeat.models import dataset
from onbeat.core.motion import Motion
from onbeat.core.representation import POSE_DIM, mirror
from onbeat.core.skeleton import NUM_JOINTS
from onbeat.commands.cli import main
from onbeat.core.music import FEATURE_DIM

Sequence = namedtuple("Sequence", "name source style motion audio_path take suspect")


def fake_sequences():
    """Ballroom-like takes with music in two styles, Motorica-like phase pairs, a BVH take; all tiny."""
    rng = np.random.default_rng(0)

    def motion(frames, fps=30.0):
        aa = 0.2 * rng.standard_normal((frames, NUM_JOINTS, 3))
        return Motion.from_axis_angle(fps, np.tile([0, 0.9, 0], (frames, 1)), aa)

    seqs = [Sequence(f"DANCE_{style}_{n}", "ballroom", style, motion(75, 25.0), f"/audio/{style}_{n}.ogg", None, False)
            for style in ("waltz", "tango") for n in range(3)]
    seqs.append(Sequence("DANCE_rumba_0", "ballroom", "rumba", motion(75, 25.0), "/audio/rumba_0.ogg", None, False))
    seqs += [Sequence(f"take{n}_{phase}", "motorica", "krump", motion(70), None, f"take{n}", False)
             for n in range(3) for phase in ("00", "01")]
    seqs.append(Sequence("olivia", "bvh", "", motion(65), None, None, False))
    return seqs


@pytest.fixture
def fake_data(monkeypatch):
    importers = sys.modules.get("onbeat.core.importers") or types.ModuleType("onbeat.core.importers")
    monkeypatch.setitem(sys.modules, "onbeat.core.importers", importers)
    monkeypatch.setattr(importers, "iter_dataset", lambda root, sources: iter(
        [s for s in fake_sequences() if s.source in sources]), raising=False)
    # Music with a known frame count, shorter than the motion (89 frames at 30 fps): the motion gets cropped.
    monkeypatch.setattr(dataset, "music_features", lambda path: np.full((80, FEATURE_DIM), len(path), np.float32))


def test_build_aligns_music_and_splits_by_take(fake_data, tmp_path):
    tracks = dataset.load_tracks(tmp_path, ["ballroom", "motorica", "bvh"])
    arrays = dataset.build(tracks, window=30, stride=15, val_fraction=0.3, seed=1)
    data = dataset.WindowData(arrays)
    ballroom = [t for t in tracks if t.source == "ballroom"]
    assert all(len(t.rows) == len(t.music) == 80 and t.has_music for t in ballroom)
    assert not any(t.has_music for t in tracks if t.source != "ballroom")

    groups = {}
    for group, split in zip(arrays["seq_group"], arrays["seq_split"]):
        groups.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in groups.values())  # the two phases of a take share a split
    val = arrays["seq_split"] == 1
    assert {"waltz", "tango", "rumba"} <= set(arrays["seq_style"][val & arrays["seq_has_music"]])
    assert {"waltz", "tango"} <= set(arrays["seq_style"][~val])  # a style with several takes is also trained on
    assert set(arrays["seq_split"][~val]) == {0} and 0 < val.sum() < len(tracks)

    batch = data.batch(data.indices(1))
    assert batch["motion"].shape[1:] == (30, POSE_DIM) and batch["music"].shape[1:] == (30, FEATURE_DIM)
    first = data.indices(0)[0]
    seq, start = arrays["windows"][first]
    np.testing.assert_array_equal(data.batch([first])["motion"][0], tracks[seq].rows[start:start + 30])
    flipped = data.batch([first], mirrored=np.array([True]))["motion"][0]
    np.testing.assert_array_equal(flipped, mirror(tracks[seq].rows[start:start + 30]))

    again = dataset.build(dataset.load_tracks(tmp_path, ["ballroom", "motorica", "bvh"]), 30, 15, 0.3, seed=1)
    np.testing.assert_array_equal(again["seq_split"], arrays["seq_split"])


def test_cli_writes_a_file_the_loader_reads(fake_data, tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["dataset", "build", "--data", str(tmp_path), "--sources", "ballroom,bvh", "--window", "40",
                 "-o", str(out)]) == 0
    assert "validation" in capsys.readouterr().out
    data = dataset.WindowData.load(out)
    assert data.window == 40 and data.stats["pose_mean"].shape == (POSE_DIM,)


def test_unreadable_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(dataset.OnbeatError, match="bad.npz"):
        dataset.WindowData.load(bad)


@pytest.mark.slow
def test_real_sequences_build(data_dir, tmp_path):
    pytest.importorskip("onbeat.core.importers")
    if not hasattr(pytest.importorskip("onbeat.ear.features"), "extract_file"):
        pytest.skip("features.extract_file is not written yet")
    tracks = dataset.load_tracks(data_dir, ["ballroom"], limit=2)
    arrays = dataset.build(tracks, window=120, stride=60, val_fraction=0.5)
    assert np.isfinite(arrays["rows"]).all() and np.isfinite(arrays["music"]).all()
    assert len(arrays["windows"]) > 10 and arrays["seq_has_music"].any()
