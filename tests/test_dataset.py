import sys
import types

import numpy as np
import pytest

from onbeat.commands.cli import main
from onbeat.core.beat_grid import BeatGrid
from onbeat.core.importers.common import Sequence
from onbeat.core.motion import Motion
from onbeat.core.music import AUDIO_COLUMNS, BEAT_COLUMNS, FEATURE_DIM, FEATURE_NAMES
from onbeat.core.representation import POSE_DIM, decode, mirror
from onbeat.core.skeleton import NUM_JOINTS
from onbeat.core.styles import STYLES, style_id
from onbeat.models import dataset

SONG_BEATS = BeatGrid.counted(np.arange(0.25, 3.0, 0.5))  # 120 BPM, a downbeat at 0.25 s
SONG_FRAMES = 80  # the songs are shorter than the ballroom motions (89 frames at 30 fps): motion gets cropped
MOTORICA_BEATS = BeatGrid.counted(np.arange(0.1, 3.0, 0.6), downbeat=1)


def swaying(frames, fps=30.0, period=0.5, seed=0):
    """A dance that sways its arms with the given period and walks forward."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    aa = 0.05 * rng.standard_normal((frames, NUM_JOINTS, 3))
    aa[:, 16:22, 2] += 0.6 * np.sin(2 * np.pi * t / period)[:, None]
    root = np.stack([0.1 * t, 0.9 + 0.02 * np.cos(2 * np.pi * t / period), 0.5 * t], -1)
    return Motion.from_axis_angle(fps, root, aa)


def fake_sequences():
    """Ballroom-like takes with songs in two styles (and one take of a third), Motorica-like phase pairs with
    annotated beats, BVH takes without music; all tiny."""
    seqs = [Sequence(f"DANCE_{style}_{n}", "ballroom", style, swaying(75, 25.0, seed=n), f"/audio/{style}_{n}.ogg",
                     None, False) for style in ("waltz", "chacha") for n in range(3)]
    seqs.append(Sequence("DANCE_R_0", "ballroom", "rumba", swaying(75, 25.0), "/audio/rumba_0.ogg", None, False))
    seqs += [Sequence(f"take{n}_{phase}", "motorica", "krump", swaying(70, seed=n), None, f"take{n}", False,
                      beats=MOTORICA_BEATS) for n in range(3) for phase in ("00", "01")]
    seqs += [Sequence(name, "bvh", "", swaying(65, period=0.6), None, name, False, "dancedb")
             for name in ("olivia", "vaso")]
    return seqs


def song(path):
    """Features of a fake song: audio columns numbered by the path, beat columns of SONG_BEATS."""
    features = np.full((SONG_FRAMES, FEATURE_DIM), len(str(path)) / 100, np.float32)
    features[:, BEAT_COLUMNS] = SONG_BEATS.columns(np.arange(SONG_FRAMES) / 30)
    return features, SONG_BEATS.times


@pytest.fixture
def fake_data(monkeypatch):
    importers = sys.modules.get("onbeat.core.importers") or types.ModuleType("onbeat.core.importers")
    monkeypatch.setitem(sys.modules, "onbeat.core.importers", importers)
    monkeypatch.setattr(importers, "iter_dataset", lambda root, sources: iter(
        [s for s in fake_sequences() if s.source in sources]), raising=False)
    calls = []
    monkeypatch.setattr(dataset, "music_features", lambda path: calls.append(path) or song(path))
    monkeypatch.setattr(dataset, "_feature_key", lambda path: str(path).replace("/", "_"))
    return calls


def phase_of(music):
    return np.arctan2(music[:, FEATURE_NAMES.index("beat_phase_sin")],
                      music[:, FEATURE_NAMES.index("beat_phase_cos")]) / (2 * np.pi) % 1.0


def test_every_source_gets_music_rows_a_mask_and_a_style(fake_data, tmp_path):
    tracks = {t.name: t for t in dataset.load_tracks(tmp_path, ["ballroom", "motorica", "bvh"])}
    ballroom = tracks["DANCE_waltz_0"]
    assert len(ballroom.rows) == len(ballroom.music) == SONG_FRAMES and ballroom.has_music
    assert ballroom.mask.tolist() == [[1.0, 1.0]] * SONG_FRAMES and ballroom.beat_source == "audio"
    np.testing.assert_allclose(ballroom.music[:, AUDIO_COLUMNS], len("/audio/waltz_0.ogg") / 100)
    # the beat columns come from the tracker's beats (and its downbeat guess), the tempo with them
    np.testing.assert_allclose(ballroom.music[:, BEAT_COLUMNS], SONG_BEATS.columns(np.arange(SONG_FRAMES) / 30),
                               atol=1e-6)
    np.testing.assert_allclose(ballroom.bpm, 120.0, rtol=1e-5)

    krump = tracks["take0_00"]
    assert krump.mask[:, 0].max() == 0 and krump.mask[:, 1].min() == 1 and krump.beat_source == "annotated"
    assert not krump.music[:, AUDIO_COLUMNS].any() and not krump.has_music
    np.testing.assert_allclose(krump.music[:, BEAT_COLUMNS], MOTORICA_BEATS.columns(np.arange(70) / 30), atol=1e-6)

    olivia = tracks["olivia"]
    assert olivia.beat_source in ("motion", "") and olivia.mask[:, 0].max() == 0
    assert olivia.mask[:, 1].min() == olivia.mask[:, 1].max() == (olivia.beat_source == "motion")
    assert {t.style for t in tracks.values()} == {"waltz", "cha-cha", "rumba", "krump", "freestyle"}


def test_split_by_take_keeps_every_style_with_two_takes_in_both(fake_data, tmp_path):
    tracks = dataset.load_tracks(tmp_path, ["ballroom", "motorica", "bvh"])
    arrays = dataset.build(tracks, window=30, stride=15, val_fraction=0.3, seed=1)
    groups = {}
    for group, split in zip(arrays["seq_group"], arrays["seq_split"], strict=True):
        groups.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in groups.values())  # the two phases of a take share a split
    val = arrays["seq_split"] == 1
    for style in ("waltz", "cha-cha", "krump", "freestyle"):  # 2 or more takes: in both splits
        assert {0, 1} == set(arrays["seq_split"][arrays["seq_style"] == style]), style
    assert set(arrays["seq_split"][arrays["seq_style"] == "rumba"]) == {0}  # one take: all training
    assert arrays["seq_has_music"][val & np.isin(arrays["seq_style"], ["waltz", "cha-cha"])].all()
    np.testing.assert_array_equal(arrays["seq_style_id"], [style_id(s) for s in arrays["seq_style"]])
    assert list(arrays["style_names"]) == list(STYLES)
    again = dataset.build(dataset.load_tracks(tmp_path, ["ballroom", "motorica", "bvh"]), 30, 15, 0.3, seed=1)
    np.testing.assert_array_equal(again["seq_split"], arrays["seq_split"])
    # the music normalizer only counts real columns: Motorica's and BVH's zero audio columns do not drag it
    train = [t for t, s in zip(tracks, arrays["seq_split"], strict=True) if s == 0 and t.has_music]
    np.testing.assert_allclose(arrays["music_mean"][AUDIO_COLUMNS],
                               np.concatenate([t.music for t in train])[:, AUDIO_COLUMNS].mean(0), rtol=1e-5)


def test_batches_carry_style_and_mask_and_augment(fake_data, tmp_path):
    tracks = dataset.load_tracks(tmp_path, ["ballroom", "motorica"])
    data = dataset.WindowData(dataset.build(tracks, window=30, stride=15, val_fraction=0.3, seed=1))
    first = data.indices(0)[0]
    seq, start = data.arrays["windows"][first]
    plain = data.batch([first])
    np.testing.assert_array_equal(plain["motion"][0], tracks[seq].rows[start:start + 30])
    assert plain["style"][0] == style_id(tracks[seq].style) and plain["music_mask"].shape == (1, 30, 2)
    assert data.conditioning() == {"styles": len(STYLES)}
    flipped = data.batch([first], mirrored=np.array([True]))["motion"][0]
    np.testing.assert_array_equal(flipped, mirror(tracks[seq].rows[start:start + 30]))
    moved = data.batch([first], shift=np.array([7]))["motion"][0]
    np.testing.assert_array_equal(moved, tracks[seq].rows[start + 7:start + 37])


def test_time_stretch_slows_motion_and_music_together(fake_data, tmp_path):
    tracks = dataset.load_tracks(tmp_path, ["ballroom"])
    data = dataset.WindowData(dataset.build(tracks, window=40, stride=40, val_fraction=0.0))
    factor = 1.15
    plain, slow = data.batch([0]), data.batch([0], stretch=np.array([factor]))
    # the beat grid is recomputed: its period grows by the factor (120 BPM -> 104 BPM)
    wraps = np.flatnonzero(np.diff(phase_of(slow["music"][0])) < -0.5)
    assert np.diff(wraps).min() >= np.floor(15 * factor) and np.diff(wraps).max() <= np.ceil(15 * factor)
    # audio columns are interpolated (constant here), the mask stays real
    np.testing.assert_allclose(slow["music"][0, :, AUDIO_COLUMNS], plain["music"][0, :, AUDIO_COLUMNS], atol=1e-6)
    assert slow["music_mask"].min() == 1
    # the dance is the same path, walked 1/factor as fast: its root speed and its arm sway both slow down
    speed = lambda rows: np.linalg.norm(rows[:, :2], axis=1).mean()  # noqa: E731
    assert speed(slow["motion"][0]) == pytest.approx(speed(plain["motion"][0]) / factor, rel=0.02)
    positions = decode(slow["motion"][0], 30).positions()
    original = decode(tracks[0].rows, 30).positions()
    sampled = np.interp(np.arange(40) / factor, np.arange(len(original)), original[:, 20, 1])
    np.testing.assert_allclose(positions[:, 20, 1] - positions[0, 20, 1], sampled - sampled[0], atol=0.01)


def test_song_features_are_cached(fake_data, tmp_path):
    audio, beats = dataset.song_features("/audio/waltz_0.ogg", tmp_path)
    again, beats_again = dataset.song_features("/audio/waltz_0.ogg", tmp_path)
    assert len(fake_data) == 1 and list(tmp_path.glob("*.npz"))
    np.testing.assert_array_equal(audio, again)
    np.testing.assert_array_equal(beats.times, beats_again.times)
    np.testing.assert_array_equal(beats.beat_in_bar, SONG_BEATS.beat_in_bar)


def test_cli_writes_a_file_the_loader_reads(fake_data, tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["dataset", "build", "--data", str(tmp_path), "--sources", "ballroom,bvh", "--window", "40",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "waltz" in text and "freestyle" in text and (tmp_path / "feature-cache").is_dir()
    data = dataset.WindowData.load(out)
    assert data.window == 40 and data.stats["pose_mean"].shape == (POSE_DIM,)


def test_unreadable_or_old_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(dataset.OnbeatError, match="bad.npz"):
        dataset.WindowData.load(bad)
    old = tmp_path / "old.npz"
    np.savez(old, windows=np.zeros((1, 2)), rows=np.zeros((2, POSE_DIM)))
    with pytest.raises(dataset.OnbeatError, match="rebuild"):
        dataset.WindowData.load(old)


@pytest.mark.slow
def test_real_sequences_build(data_dir, tmp_path):
    """A ballroom song, a Motorica take and a BVH dance: every row finite, each with its kind of music rows."""
    from onbeat.core import importers
    popping = sorted((data_dir / "motorica").glob("*_gPO_*.expmap_30fps.pkl"))[0].name.split(".")[0]
    seqs = [importers.load_sequence(name) for name in ("DANCE_W_1", popping, "olivia")]
    tracks = [dataset.make_track(seq, tmp_path) for seq in seqs]
    arrays = dataset.build(tracks, window=120, stride=60, val_fraction=0.5)
    assert np.isfinite(arrays["rows"]).all() and np.isfinite(arrays["music"]).all()
    assert [t.beat_source for t in tracks] == ["audio", "annotated", "motion"]
    assert [t.style for t in tracks] == ["waltz", "popping", "freestyle"]
    assert 60 < np.median(tracks[1].bpm) < 180 and len(arrays["windows"]) > 10


def test_a_song_without_beats_gets_the_dance_beats(fake_data, monkeypatch, tmp_path):
    """The tracker hears no beat (a song of silence): the sequence's beats come from the motion instead."""
    monkeypatch.setattr(dataset, "music_features", lambda path: (np.zeros((SONG_FRAMES, FEATURE_DIM), np.float32),
                                                                 np.zeros(0)))
    seq = fake_sequences()[0]
    track = dataset.make_track(seq, tmp_path)
    assert track.has_music and track.beat_source == "motion" and track.beats is not None
    assert dataset.song_features(seq.audio_path, tmp_path)[1] is None  # cached as "no beats"
