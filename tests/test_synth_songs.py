"""The synthesized songs the ear's beat activation trains on: their beats must be where their notes are."""
import shutil

import numpy as np
import pytest
import soundfile
from test_beats import write_clip_set

from onbeat.commands.cli import main
from onbeat.core.errors import OnbeatError
from onbeat.evaluation.beats import load_beats
from onbeat.models import synth_songs
from onbeat.models.synth_songs import DRUMS, KICK, compose, render

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not any(path.is_file() for path in synth_songs.SOUNDFONTS),
    reason=f"fluidsynth or its soundfont not installed ({synth_songs.INSTALL_HINT})")


def note_on_times(midi, channel, note):
    """Seconds of each note-on of `note` on `channel`, as a player of the file (mido, through its tempo map) plays
    them."""
    now, times = 0.0, []
    for message in midi:
        now += message.time
        if message.type == "note_on" and message.channel == channel and message.note == note and message.velocity:
            times.append(now)
    return np.array(times)


def test_a_seed_gives_the_same_song_and_another_seed_another():
    first, table, about = compose(7)
    again, table_again, about_again = compose(7)
    assert about == about_again and np.array_equal(table, table_again)
    assert [str(m) for m in first.tracks[0]] == [str(m) for m in again.tracks[0]]
    assert [compose(seed)[2] for seed in range(8, 12)] != [about] * 4


@pytest.mark.parametrize("seed", range(40))
def test_the_labels_count_bars_and_follow_the_tempo(seed):
    _, table, about = compose(seed)
    times, positions = table[:, 0], table[:, 1].astype(int)
    assert 0.0 < times[0] <= 1.05 and times[-1] < synth_songs.SECONDS   # a lead-in of up to a second
    meter = about["beats_per_bar"]
    assert np.array_equal(positions, np.arange(len(positions)) % meter + 1)
    intervals = np.diff(times)
    assert np.allclose(np.median(intervals), 60.0 / about["bpm"], rtol=0.08)   # drifting songs wander a little
    if about["tempo"] == "steady":
        assert np.allclose(intervals, 60.0 / about["bpm"], atol=1e-3)


def test_every_bar_of_the_backbeat_styles_starts_with_a_kick():
    """The files' own timing (mido plays them through their tempo map) against the labels: in rock, waltz and disco
    every labelled bar start after the drums come in has a kick within 50 ms (the humanising jitter is at most
    12 ms, one sigma), and most kicks fall on a labelled beat."""
    checked = 0
    for seed in range(60):
        midi, table, about = compose(seed)
        if about["style"] not in ("rock", "waltz", "disco"):
            continue
        beats = table[:, 0]
        kicks = note_on_times(midi, DRUMS, KICK)
        kicks = kicks[kicks < beats[-1] + 0.05]
        bar_starts = beats[(table[:, 1] == 1) & (beats > kicks[0] - 0.05)]
        assert np.abs(bar_starts[:, None] - kicks[None, :]).min(axis=1).max() < 0.05, (seed, about)
        assert np.mean(np.abs(kicks[:, None] - beats[None, :]).min(axis=1) < 0.05) > 0.7, (seed, about)
        checked += 1
    assert checked >= 10


@needs_fluidsynth
def test_a_rendered_song_sounds_where_its_beats_are(tmp_path):
    """Rendered by fluidsynth: the audio's onsets (a rise in the short-time energy) fall on the labelled beats more
    than half-way between them, and the files are in the layout `eval beats --data` reads."""
    seed = next(seed for seed in range(60) if compose(seed)[2]["style"] == "rock")
    about = render(seed, tmp_path)
    audio, rate = soundfile.read(tmp_path / f"synth.{seed:05d}.flac")
    audio = audio.mean(axis=1)   # fluidsynth's stereo
    beats, downbeats = load_beats(tmp_path / f"synth.{seed:05d}.beats")
    assert rate == synth_songs.RATE and len(audio) == pytest.approx(synth_songs.SECONDS * rate, abs=rate * 0.05)
    assert len(downbeats) == pytest.approx(len(beats) / about["beats_per_bar"], abs=1)
    frame = rate // 100
    energy = np.log(1e-6 + np.add.reduceat(audio ** 2, np.arange(0, len(audio), frame)))
    rise = np.maximum(np.diff(energy, prepend=energy[0]), 0)

    def rise_near(times):
        index = np.round(times * 100).astype(int)
        return np.mean([rise[max(i - 2, 0):i + 3].max() for i in index if i + 3 < len(rise)])

    half_way = beats[:-1] + np.diff(beats) / 2
    assert rise_near(beats) > 2 * rise_near(half_way)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"synth.{seed:05d}.beats", f"synth.{seed:05d}.flac"]


def test_without_fluidsynth_the_error_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(OnbeatError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        render(0, tmp_path)
    assert main(["train-beats", "--data", str(tmp_path), "--synth", "-1"]) == 2
    assert "--synth at least 0" in capsys.readouterr().err
    # before reading any music: the folder is empty, and the error is about fluidsynth
    assert main(["train-beats", "--data", str(tmp_path), "--synth", "2"]) == 2
    assert "synthesized songs need fluidsynth" in capsys.readouterr().err


@needs_fluidsynth
def test_train_beats_adds_synthesized_songs(tmp_path, capsys):
    folder = write_clip_set(tmp_path / "clicks", [100, 110, 125])
    out = tmp_path / "weights.npz"
    assert main(["train-beats", "--data", str(folder), "--synth", "2", "--steps", "2", "--members", "1",
                 "--out", str(out)]) == 0
    assert "synthesized 2 of 2 songs" in capsys.readouterr().out and out.is_file()
