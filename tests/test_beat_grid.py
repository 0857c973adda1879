import numpy as np
import pytest

from onbeat.core import beat_grid as G
from onbeat.core.music import FEATURE_NAMES
from onbeat.core.styles import FREESTYLE, STYLES, known_style, style_id, style_name
from onbeat.ear.beats import BeatState
from onbeat.ear.features import beat_columns

FPS = 30.0


def pulses(times, seconds, fps=FPS, width=0.03, seed=0):
    """A novelty curve: a bump at each time, plus a little noise."""
    t = np.arange(int(seconds * fps)) / fps
    curve = np.exp(-0.5 * ((t[:, None] - np.asarray(times)[None]) / width) ** 2).sum(1)
    return curve + 0.05 * np.random.default_rng(seed).random(len(t))


def test_track_beats_finds_tempo_and_phase_of_a_pulse_train():
    beats = 0.37 + np.arange(40) * 0.55  # 109 BPM
    found = G.track_beats(pulses(beats, 23), FPS)
    assert 60 / np.median(np.diff(found)) == pytest.approx(109, rel=0.03)
    nearest = np.abs(found[:, None] - beats[None]).min(1)
    assert np.median(nearest) < 1 / FPS and len(found) >= 38
    # missing beats (as in Motorica's flags) do not break the grid: it keeps the tempo through the gaps
    sparse = np.delete(beats, [5, 6, 7, 15, 16, 25, 30, 31])
    through = G.track_beats(pulses(sparse, 23), FPS)
    assert np.abs(through[:, None] - beats[None]).min(1).max() < 2 / FPS and len(through) >= 38
    assert len(G.track_beats(np.zeros(300), FPS)) == 0  # a flat curve has no beat


def test_grid_columns_match_the_live_formula_and_stretch_with_the_tempo():
    grid = G.BeatGrid.counted([1.0, 1.5, 2.0, 2.5, 3.0], downbeat=1)
    state = BeatState(time=1.1, bpm=120.0, phase=0.2, bar_position=3, is_beat=False, is_downbeat=False,
                      confidence=1.0, next_beats=np.array([1.5, 2.0, 2.5, 3.0]), last_beat=1.0)
    times = [1.0, 1.25, 1.5, 1.625, 2.9]
    np.testing.assert_allclose(grid.columns(times), beat_columns(state, times), atol=1e-6)
    # beyond its beats the grid continues at its tempo
    np.testing.assert_allclose(grid.columns([0.25, 3.75]), beat_columns(state, [0.25, 3.75]), atol=1e-6)
    np.testing.assert_allclose(grid.bpm([1.2, 2.7]), 120.0)
    slow = grid.stretched(1.25)
    np.testing.assert_allclose(slow.bpm([2.0]), 96.0)
    np.testing.assert_allclose(slow.columns(np.array(times) * 1.25), grid.columns(times), atol=1e-6)
    with pytest.raises(ValueError):
        G.BeatGrid([1.0, 1.0], [0, 1])


def test_bar_positions_put_the_downbeat_on_the_strongest_position():
    strength = np.tile([0.2, 0.3, 1.0, 0.1], 5)
    positions = G.bar_positions(strength)
    assert all(positions[2::4] % 4 == 0) and all(positions[3::4] % 4 == 1)


def test_motion_beats_follow_a_dancer_who_sets_off_on_the_beat():
    """Joints that rest, then snap out and back once per beat (a popping-like hit every 0.6 s)."""
    period, frames = 0.6, 600
    t = np.arange(frames) / FPS
    phase = (t - 0.2) % period / period
    reach = np.where(phase < 0.3, np.sin(np.pi * phase / 0.3), 0.0)  # out and back within 30% of the beat
    positions = np.zeros((frames, 24, 3))
    positions[:, :, 0] = 0.3 * reach[:, None] * np.linspace(0.2, 1.0, 24)
    grid = G.motion_beats(positions, FPS)
    assert 60 / np.median(np.diff(grid.times)) == pytest.approx(100, rel=0.03)
    onsets = 0.2 + np.arange(40) * period
    assert np.median(np.abs(grid.times[:, None] - onsets[None]).min(1)) < 2 / FPS
    assert G.motion_beats(np.zeros((300, 24, 3)), FPS) is None  # standing still: no beat


def test_style_vocabulary_maps_every_spelling_and_unknowns_to_freestyle():
    assert style_name("chacha") == "cha-cha" and style_name("Hip Hop") == "hip-hop" and style_name("J-POP") == "j-pop"
    assert style_id("salsa") == FREESTYLE and known_style("salsa") is None and style_id("") == FREESTYLE
    assert STYLES[FREESTYLE] == "freestyle" and len(set(STYLES)) == len(STYLES)
    assert "beat_phase_sin" in FEATURE_NAMES  # the columns the grid fills
