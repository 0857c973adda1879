import mir_eval
import numpy as np
import pytest

from onbeat.evaluation.beats import load_set, record
from onbeat.models.beat_labels import FPS, beat_frames, beat_period, frames_of, style_beats


def pulse_novelty(bpm, seconds=40.0, off_beat=0.0, jitter=0.0, seed=0):
    """Novelty frames with a peak on every beat (and one `off_beat` as strong half-way), over gamma noise."""
    rng = np.random.default_rng(seed)
    novelty = rng.gamma(1.0, 0.3, int(seconds * FPS))
    period = 60 * FPS / bpm
    beats = np.arange(10, len(novelty) - period, period)
    beats = np.round(beats + rng.normal(0, jitter, len(beats))).astype(int)
    novelty[beats] += 4.0
    novelty[np.round(beats + period / 2).astype(int)] += 4.0 * off_beat
    return novelty, beats


def test_the_period_is_the_beat_not_its_eighths():
    """Off-beat eighths half as strong as the beats: in a range that holds both the beat (120) and the eighths (240),
    the comb over the lag's multiples still picks the beat."""
    novelty, _ = pulse_novelty(120, off_beat=0.5)
    assert 60 * FPS / beat_period(novelty, 100, 250) == pytest.approx(120, rel=0.01)


def test_the_programme_finds_jittered_beats_through_noise():
    novelty, beats = pulse_novelty(96, jitter=1.0, seed=1)
    found = beat_frames(novelty, beat_period(novelty, 80, 110))
    assert mir_eval.beat.f_measure(beats / FPS, found / FPS, f_measure_threshold=0.035) > 0.95


def test_a_song_off_its_style_tempo_is_left_out():
    """A rumba range (92-112 BPM) on a song whose own pulse is at 75 BPM: the range would force a wrong tempo, so no
    labels; at 100 BPM or an octave of it (a cha-cha heard at half time) it is labelled."""
    assert style_beats(pulse_novelty(75)[0], "rumba") is None
    assert style_beats(pulse_novelty(100)[0], "rumba") is not None
    assert style_beats(pulse_novelty(62)[0], "cha-cha") is not None


def test_on_annotated_music_the_labels_match_the_annotators(data_dir):
    """On gtzan-dev, with the tempo range a style would give (+-12 % around the annotated tempo), the offline labels
    agree with the human annotations (F 0.91 measured; the live tracker reaches 0.83 on the same clips)."""
    _, clips = load_set(data_dir)
    scores = []
    for clip in clips:
        replay, _ = record(clip.audio, activation=None)
        novelty = replay.novelties()
        bpm = 60 / np.median(np.diff(clip.beats))
        frames = beat_frames(novelty, beat_period(novelty, bpm / 1.12, bpm * 1.12))
        reference = frames_of(clip.beats) / FPS   # both on the novelty frames' clock
        trimmed = mir_eval.beat.trim_beats
        scores.append(mir_eval.beat.f_measure(trimmed(reference), trimmed(frames / FPS)))
    assert np.mean(scores) > 0.88
