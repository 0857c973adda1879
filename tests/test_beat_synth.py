"""The synthesized training songs: their beat labels are where the music's onsets are (needs fluidsynth)."""
import shutil

import numpy as np
import pytest

from onbeat.ear.activation import frame_time, label_frames
from onbeat.models.beat_net import targets
from onbeat.models.beat_synth import SOUNDFONT, synthesize

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
                                reason="needs Debian's fluidsynth and fluid-soundfont-gm")


def onset_times(audio, rate):
    """Times where the short-time energy jumps (a crude onset detector, independent of the ear)."""
    frame = 128
    energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(frame) / frame, mode="same")[::frame // 2]
    rise = np.maximum(np.diff(np.log(energy + 1e-10)), 0.0)
    peaks = np.flatnonzero((rise[1:-1] > rise[:-2]) & (rise[1:-1] >= rise[2:]) & (rise[1:-1] > 1.0)) + 1
    return peaks * (frame // 2) / rate


@pytest.mark.parametrize("style", ["disco", "rock", "waltz"])
def test_labels_fall_on_onsets(style):
    song = synthesize(seed=3, seconds=12.0, style=style)
    assert song.audio.shape == (12 * song.rate,) and np.isfinite(song.audio).all()
    period = np.median(np.diff(song.beats))
    assert np.all(np.abs(np.diff(song.beats) / period - 1.0) < 0.35)   # a tempo map, not random times
    assert set(song.positions) == ({1, 2, 3} if style == "waltz" else {1, 2, 3, 4})
    onsets = onset_times(song.audio, song.rate)
    played = song.beats[song.beats > 1.0]
    distance = np.abs(played[:, None] - onsets[None, :]).min(axis=1)
    # nearly every labelled beat has an onset within 30 ms (human timing jitter, drum-less intros)
    assert np.mean(distance < 0.03) > 0.8


def test_targets_mark_the_labelled_frames():
    beats = np.array([0.5, 1.0, 1.5])
    y = targets(200, beats, beats[:1])
    k = label_frames(beats)
    assert np.all(y[k, 0] == 1.0) and np.all(y[k - 1, 0] == 0.5) and y[k[0], 1] == 1.0 and y[k[1], 1] == 0.0
    assert np.allclose(frame_time(k), beats, atol=0.012)   # the frame a beat is taught at maps back to it
