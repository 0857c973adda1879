"""`onbeat eval dance`: any folder of dances with music, the live path, intervals, JSON, report, model cards."""
import json
import pickle
import shutil

import numpy as np
import pytest
import soundfile

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.commands.cli import main
from onbeat.core.bvh import write_bvh
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.paths import CHECKPOINTS
from onbeat.ear.features import extract_file
from onbeat.ear.sources import SyntheticSource
from onbeat.evaluation import dance as evaluate
from onbeat.evaluation.songs import load_songs

SECONDS = 10.0


def groove_motion(features):
    """The groove dancing to feature rows: a plausible dancer for a synthetic song."""
    groove = GrooveChoreographer()
    slices = [groove.next_slice(features[i:i + 8]) for i in range(0, len(features) - 7, 8)]
    return Motion(30, np.concatenate([m.root_translation for m in slices]),
                  np.concatenate([m.rotations for m in slices]))


def write_song(path, bpm, seed):
    source = SyntheticSource(bpm=bpm, seconds=SECONDS, realtime=False, seed=seed)
    soundfile.write(path, np.concatenate([b.samples for b in source.blocks()]), source.sample_rate)
    return groove_motion(extract_file(path)[0])


@pytest.fixture(scope="module")
def song_folder(tmp_path_factory):
    """Three dances with music in three formats: onbeat .npz + .wav, BVH + .flac, AIST++ pickle + its music."""
    root = tmp_path_factory.mktemp("songs")
    write_song(root / "groove_a.wav", 100, 0).save(root / "groove_a.npz")
    write_bvh(write_song(root / "groove_b.flac", 120, 1), root / "groove_b.bvh")
    (root / "aist" / "music").mkdir(parents=True)
    motion = write_song(root / "aist" / "music" / "mBR0.wav", 132, 2).resample(60)
    frames = motion.num_frames
    with open(root / "aist" / "gBR_sBM_cAll_d04_mBR0_ch01.pkl", "wb") as f:
        pickle.dump({"smpl_poses": motion.axis_angle().reshape(frames, 72), "smpl_scaling": np.array([90.0]),
                     "smpl_trans": motion.root_translation * 90.0}, f)
    (root / "lonely.bvh").write_bytes((root / "groove_b.bvh").read_bytes())  # no music: not a test song
    return root


def test_any_folder_of_dances_with_music_is_a_test_set(song_folder, tmp_path):
    songs = load_songs(song_folder)
    assert [s.name for s in songs] == ["gBR_sBM_cAll_d04_mBR0_ch01", "groove_a", "groove_b"]
    assert [s.audio.name for s in songs] == ["mBR0.wav", "groove_a.wav", "groove_b.flac"]
    assert all(abs(s.motion.duration - SECONDS) < 0.5 for s in songs)
    assert [s.name for s in load_songs(song_folder, limit=1)] == ["gBR_sBM_cAll_d04_mBR0_ch01"]
    with pytest.raises(OnbeatError, match="no dance with music"):
        load_songs(tmp_path)
    with pytest.raises(OnbeatError, match="no such dataset file or folder"):
        load_songs(tmp_path / "missing")


@pytest.mark.slow
def test_eval_dance_scores_every_song_with_intervals_floor_and_chance(song_folder, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "dance", "--data", str(song_folder), "--models", "groove", "--seconds", "10", "--seeds", "1",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "3 songs, every dance with music in" in table and "kinetic features: onbeat" in table
    header = next(line for line in table.splitlines() if line.split()[:2] == ["real", "groove"])
    assert header
    result = json.loads(out.read_text())
    assert result["meta"]["songs"] == ["gBR_sBM_cAll_d04_mBR0_ch01", "groove_a", "groove_b"]
    stable = ["fid_k", "fid_g", "bas", "bas_chance", "beat_gain", "pfc", "skate", "contact_share",
              "jerk", "freeze", "travel", "pops", "penetration_p95"]
    for row in ("real", "groove"):
        for key in stable:
            entry = result["rows"][row][key]
            assert entry["low"] <= entry["value"] <= entry["high"], (row, key, entry)
    assert result["rows"]["real"]["div_k"]["value"] is None  # one 10 s segment per half of 3 songs: no diversity
    assert result["rows"]["groove"]["keypose_reach"]["value"] == 100  # the groove strikes its key poses exactly
    assert result["rows"]["groove"]["rtf"]["value"] > 1  # faster than real time
    # The real dancers here are the groove itself on the same music: the live groove is close to them.
    assert result["rows"]["groove"]["bas"]["value"] > result["rows"]["groove"]["bas_chance"]["value"]
    assert len(result["per_song"]["groove"]["bas"]) == 3


def test_eval_dance_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["eval", "dance", "--data", str(tmp_path / "missing"), "--models", "groove"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["eval", "dance", "--data", str(tmp_path), "--models", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["eval", "dance", "--data", str(tmp_path), "--path", "torch", "--models", "badm=none.pt"]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_set_metrics_floor_is_real_against_real_and_a_shifted_model_is_far():
    rng = np.random.default_rng(1)
    songs = [(rng.normal(size=(6, 5)), rng.normal(size=(6, 4))) for _ in range(10)]
    shifted = [[(k + 3.0, g + 3.0) for k, g in songs]]
    rows = evaluate.set_metrics(songs, {"far": shifted, "same": [songs]}, rng, draws=20)
    assert rows["real"]["fid_k"][0] < 5 < rows["far"]["fid_k"][0]
    assert rows["same"]["fid_k"][0] == pytest.approx(rows["real"]["fid_k"][0])  # the same songs: the floor itself
    assert rows["real"]["div_g"][1] <= rows["real"]["div_g"][0] <= rows["real"]["div_g"][2]


def test_cards_replace_the_hand_written_metrics_once_and_again(tmp_path):
    from onbeat.evaluation.cards import BEGIN, write_cards
    shutil.copy(CHECKPOINTS / "badm_small.md", tmp_path / "badm_small.md")
    rows = {"real": {"fid_k": (10.0, 8.0, 12.0)},
            "badm": {"fid_k": (30.0, 25.0, 35.0), "rtf": (20.0, 19.0, 21.0), "rtf_model": (50.0, 45.0, 55.0)}}
    meta = {"songs": ["a", "b"], "styles": ["waltz", "waltz"], "seconds": 60.0, "seeds": [0, 1], "path": "live",
            "kinetic": "onbeat", "beats": "ear", "intervals": "bootstrap", "load_average": [1.0, 1.0, 1.0],
            "models": {"badm": "badm"}}
    evaluation = evaluate.Evaluation([], rows, {}, {}, meta)
    assert write_cards(evaluation, tmp_path, "onbeat eval dance") == [tmp_path / "badm_small.md"]
    text = (tmp_path / "badm_small.md").read_text()
    assert text.count(BEGIN) == 1 and "| FID_k | 10.0 [8.0, 12.0] | 30.0 [25.0, 35.0] |" in text
    assert "86.4" not in text and "## Training" in text and "\nCode:" in text  # hand numbers gone, the rest kept
    rows["badm"]["fid_k"] = (31.0, 26.0, 36.0)
    write_cards(evaluation, tmp_path, "onbeat eval dance")
    again = (tmp_path / "badm_small.md").read_text()
    assert again.count(BEGIN) == 1 and "31.0 [26.0, 36.0]" in again and "30.0 [25.0, 35.0]" not in again


def test_a_card_named_like_an_evaluated_export_gets_that_export_s_row(tmp_path):
    from onbeat.choreographers.library import DEFAULT
    from onbeat.evaluation.cards import write_cards
    for card in (f"{DEFAULT}_small.md", "badm_v2.md"):
        (tmp_path / card).write_text("# a card\n")
    rows = {"real": {"fid_k": (10.0, 8.0, 12.0)}, "default": {"fid_k": (30.0, 25.0, 35.0)},
            "badm_v2": {"fid_k": (20.0, 15.0, 25.0)}}
    meta = {"songs": ["a"], "styles": ["waltz"], "seconds": 60.0, "seeds": [0], "path": "live", "kinetic": "onbeat",
            "beats": "ear", "intervals": "bootstrap", "load_average": [1.0, 1.0, 1.0],
            "models": {"default": "default", "badm_v2": "runs/v2/badm_v2.onnx"}}
    write_cards(evaluate.Evaluation([], rows, {}, {}, meta), tmp_path, "onbeat eval dance")
    # the default row belongs to a card of the default's kind
    assert "| metric | real | **default** | badm_v2 |" in (tmp_path / f"{DEFAULT}_small.md").read_text()
    assert "| metric | real | default | **badm_v2** |" in (tmp_path / "badm_v2.md").read_text()  # its own row


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed (the report's clips are videos)")
def test_report_has_plots_and_clips(song_folder, tmp_path, capsys):
    report = tmp_path / "report"
    assert main(["eval", "dance", "--data", str(song_folder), "--songs", "2", "--models", "groove", "--seconds", "6",
                 "--seeds", "1", "--no-key-poses", "--report", str(report)]) == 0
    names = sorted(p.name for p in report.iterdir())
    expected = {"beat_profile.png", "pops.png", "clip_real.mp4", "clip_groove.mp4", "speed_groove_a.png",
                "feet_groove_a.png"}
    assert expected <= set(names)
    assert all((report / n).stat().st_size > 10_000 for n in names)


@pytest.mark.slow
def test_live_path_with_the_shipped_model_is_deterministic_per_seed(song_folder):
    songs = load_songs(song_folder, limit=1)

    def run(seeds):
        result = evaluate.evaluate(songs, [("default", "default")], seconds=6.0, seeds=seeds, key_poses=False)
        return result.dances["default"]

    first, again, other = run((0,)), run((0,)), run((1,))
    assert np.array_equal(first[0][0].positions, again[0][0].positions)
    assert not np.allclose(first[0][0].positions, other[0][0].positions)


@pytest.mark.slow
def test_torch_path_scores_a_trained_checkpoint(song_folder, tmp_path, capsys):
    import torch

    from onbeat.models.checkpoint import save_model
    from onbeat.models.codes import Codes
    rows = np.zeros((120, 151), np.float32)
    stats = {"pose_mean": rows.mean(0), "pose_std": np.ones(151, np.float32),
             "music_mean": np.zeros(28, np.float32), "music_std": np.ones(28, np.float32)}
    torch.manual_seed(0)
    model = Codes.from_config(Codes.PRESETS["tiny"], stats)
    save_model(tmp_path / "codes.pt", "codes", model, stats)
    assert main(["eval", "dance", "--data", str(song_folder), "--songs", "2", "--path", "torch", "--models",
                 f"codes={tmp_path / 'codes.pt'}", "--seconds", "6", "--seeds", "1"]) == 0
    assert "torch path" in capsys.readouterr().out


def twitched(positions, fps, beats, burst=0.4):
    """The same dance moved in bursts, as the shipped badm moves: each beat's motion done in the middle `burst` of
    the beat, still around the beats."""
    t = np.arange(len(positions)) / fps
    k = np.clip(np.searchsorted(beats, t, side="right") - 1, 0, len(beats) - 2)
    u = np.clip((t - beats[k]) / (beats[k + 1] - beats[k]), 0, 1)
    progress = np.clip((u - 0.5 + burst / 2) / burst, 0, 1)
    source = beats[k] + 0.5 * (1 - np.cos(np.pi * progress)) * (beats[k + 1] - beats[k])
    source = np.where((t < beats[0]) | (t > beats[-1]), t, source) * fps
    i = np.clip(np.floor(source).astype(int), 0, len(positions) - 2)
    a = (source - i)[:, None, None]
    return (1 - a) * positions[i] + a * positions[i + 1]


@pytest.mark.slow
def test_real_dancers_are_at_chance_on_bas_while_a_twitch_scores_high_and_twitch_tells_them_apart(data_dir):
    """The negative example: BAS cannot tell a dancer from a twitch (real ballroom dancers score at chance, the same
    dances moved in bursts on the beat far above); twitch can."""
    from onbeat.evaluation import metrics
    rng = np.random.default_rng(0)
    songs = evaluate.prepare(load_songs(data_dir / "ballroom", limit=4), 20.0)
    real_gain, twitch_gain, real_twitch, burst_twitch = [], [], [], []
    for song in songs:
        p, beats = song.dance.positions, song.beats[song.beats < 20.0]
        burst = twitched(p, 30, beats)
        for positions, gains, twitches in ((p, real_gain, real_twitch), (burst, twitch_gain, burst_twitch)):
            chance = np.mean([metrics.beat_align_score(positions, 30, b) for b in metrics.shifted_beats(beats, rng)])
            gains.append(metrics.beat_align_score(positions, 30, beats) - chance)
            twitches.append(metrics.twitch(positions, 30, beats))
    assert abs(np.mean(real_gain)) < 0.05 and np.mean(twitch_gain) > 0.15
    assert max(real_twitch) < 0.45 and min(burst_twitch) > 0.8


def test_a_dataset_file_gives_its_validation_songs_read_from_the_data_folder(data_dir, tmp_path):
    from onbeat.models import dataset
    names = ["DANCE_W_1", "DANCE_W_3", "DANCE_C_2"]
    tracks = [dataset.Track(name, "ballroom", "ballroom", "waltz" if "_W_" in name else "cha-cha", name,
                            np.zeros((130, 151), np.float32), np.zeros((130, 28), np.float32),
                            np.ones((130, 2), np.float32), np.full(130, 120, np.float32)) for name in names]
    arrays = dataset.build(tracks, window=120, stride=30)
    arrays["seq_split"] = np.array([1, 0, 1], np.int8)  # W_1 and C_2 held out
    dataset.save(tmp_path / "data.npz", arrays)
    songs = load_songs(tmp_path / "data.npz")
    assert [s.name for s in songs] == ["DANCE_C_2", "DANCE_W_1"]
    assert songs[0].motion.fps == 25 and songs[0].audio.name == "DANCE_C_2.ogg"
