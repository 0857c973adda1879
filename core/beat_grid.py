"""Offline beat grids: the beats of a whole recording, from music or from the dance itself, and the beat columns of
the feature schema (`onbeat.core.music`) computed from them.

- `BeatGrid`: beat times with each beat's position in the bar; `columns(times)` gives the five beat columns (the
  same formula the live ear uses, `beat_columns_at`), `stretched(factor)` the grid of a time-stretched copy.
- `track_beats(novelty, fps)`: an offline dynamic-programming beat tracker (Ellis 2007, "Beat tracking by dynamic
  programming") over any novelty curve: a global tempo from the curve's autocorrelation under a log-Gaussian tempo
  prior (the live tracker's range and prior), then the beat sequence that best sits on the curve's peaks while
  keeping that tempo. It serves Motorica's beat activation (its sparse beat flags miss beats) and the motion.
- `kinematic_novelty(positions, fps)` and `motion_beats`: for dances without music, the beat from the dance itself
  (kinematic periodicity): how strongly the body sets off each frame, tracked like an onset curve.

Numpy (and scipy) only: the dataset builder and the retrieval choreographer use it offline.
"""
from dataclasses import dataclass

import numpy as np

from onbeat.core.music import BEATS_PER_BAR

MIN_BPM, MAX_BPM = 60.0, 180.0  # the live tracker's tempo range (`onbeat.ear.beats.BeatClock`)
PRIOR_BPM, PRIOR_OCTAVES = 100.0, 1.0  # and its log-Gaussian tempo prior
TIGHTNESS = 100.0  # Ellis' transition cost weight: how strictly consecutive beats keep the tempo
HARMONICS = 4  # autocorrelation peaks summed per tempo candidate (a comb filter)


def beat_columns_at(times: np.ndarray, beats: np.ndarray, beat_in_bar: np.ndarray) -> np.ndarray:
    """(len(times), 5) beat columns (beat phase sin/cos, beat distance, bar phase sin/cos) at `times` (s) from a
    sorted beat grid that brackets every time (`beats[0] <= min(times)`, `beats[-1] > max(times)`), each beat with
    its position in the bar (0 = downbeat)."""
    times, beats = np.atleast_1d(np.asarray(times, np.float64)), np.asarray(beats, np.float64)
    k = np.clip(np.searchsorted(beats, times, side="right") - 1, 0, len(beats) - 2)
    previous, following = beats[k], beats[k + 1]
    interval = np.maximum(following - previous, 1e-6)
    phase = np.clip((times - previous) / interval, 0.0, 1.0)
    distance = np.clip(np.minimum(times - previous, following - times) / (0.5 * interval), 0.0, 1.0)
    bar_phase = (np.asarray(beat_in_bar)[k] % BEATS_PER_BAR + phase) / BEATS_PER_BAR
    return np.stack([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase), distance,
                     np.sin(2 * np.pi * bar_phase), np.cos(2 * np.pi * bar_phase)], axis=1)


@dataclass
class BeatGrid:
    """The beats of one recording: times (s, increasing, at least 2) and each beat's position in the bar."""
    times: np.ndarray
    beat_in_bar: np.ndarray

    def __post_init__(self):
        self.times = np.asarray(self.times, np.float64)
        self.beat_in_bar = np.asarray(self.beat_in_bar, np.int64) % BEATS_PER_BAR
        if len(self.times) < 2 or len(self.beat_in_bar) != len(self.times) or np.any(np.diff(self.times) <= 0):
            raise ValueError("a beat grid needs at least 2 increasing beat times, each with its bar position")

    @classmethod
    def counted(cls, times: np.ndarray, downbeat: int = 0) -> "BeatGrid":
        """Beats numbered through the bar from the beat at index `downbeat` (a downbeat)."""
        return cls(times, np.arange(len(times)) - downbeat)

    def covering(self, start: float, stop: float) -> "BeatGrid":
        """The grid extended at both ends by its first and last intervals so it brackets [start, stop]."""
        first, last = self.times[1] - self.times[0], self.times[-1] - self.times[-2]
        before = max(0, int(np.ceil((self.times[0] - start) / first)))
        after = max(0, int(np.floor((stop - self.times[-1]) / last)) + 1)
        times = np.concatenate([self.times[0] - first * np.arange(before, 0, -1), self.times,
                                self.times[-1] + last * np.arange(1, after + 1)])
        bars = np.concatenate([self.beat_in_bar[0] - np.arange(before, 0, -1), self.beat_in_bar,
                               self.beat_in_bar[-1] + np.arange(1, after + 1)])
        return BeatGrid(times, bars)

    def columns(self, times: np.ndarray) -> np.ndarray:
        """(len(times), 5) float32 beat columns at `times` (s); beyond the beats the grid continues its tempo."""
        times = np.atleast_1d(np.asarray(times, np.float64))
        grid = self.covering(times.min(), times.max())
        return beat_columns_at(times, grid.times, grid.beat_in_bar).astype(np.float32)

    def bpm(self, times: np.ndarray) -> np.ndarray:
        """(len(times),) tempo (beats per minute) of the beat interval each time falls in."""
        times = np.atleast_1d(np.asarray(times, np.float64))
        grid = self.covering(times.min(), times.max())
        k = np.clip(np.searchsorted(grid.times, times, side="right") - 1, 0, len(grid.times) - 2)
        return (60.0 / np.diff(grid.times)[k]).astype(np.float32)

    def stretched(self, factor: float) -> "BeatGrid":
        """The grid of the same recording played `factor` times as long (tempo divided by `factor`)."""
        return BeatGrid(self.times * factor, self.beat_in_bar)


def tempo_period(novelty: np.ndarray, fps: float, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM,
                 prior_bpm: float = PRIOR_BPM, prior_octaves: float = PRIOR_OCTAVES) -> float | None:
    """The beat period (frames) of a novelty curve: the tempo whose comb (autocorrelation at 1..HARMONICS periods)
    times the tempo prior is highest; None when the curve is flat."""
    signal = np.asarray(novelty, np.float64) - np.mean(novelty)
    energy = float(signal @ signal)
    if energy <= 1e-12:
        return None
    spectrum = np.fft.rfft(signal, 2 * len(signal))
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:len(signal)] / energy
    tempi = np.geomspace(min_bpm, max_bpm, 240)
    periods = 60.0 * fps / tempi
    comb = np.zeros(len(tempi))
    for harmonic in range(1, HARMONICS + 1):
        lags = periods * harmonic
        comb += np.interp(lags, np.arange(len(acf)), np.maximum(acf, 0.0), right=0.0)
    prior = np.exp(-0.5 * (np.log2(tempi / prior_bpm) / prior_octaves) ** 2)
    return float(periods[np.argmax(comb * prior)])


def track_beats(novelty: np.ndarray, fps: float, period: float | None = None,
                tightness: float = TIGHTNESS) -> np.ndarray:
    """Beat times (s) of a novelty curve sampled at `fps`: Ellis' dynamic programme. Each frame's cumulative score
    is its (smoothed, normalised) novelty plus the best predecessor's score between half and two periods back,
    penalised by tightness * log(lag / period)^2; the beats are backtracked from the best-scoring frame of the
    last period. Returns an empty array when the curve has no periodicity to follow."""
    novelty = np.asarray(novelty, np.float64)
    period = period or tempo_period(novelty, fps)
    if period is None or len(novelty) < 2 * period:
        return np.zeros(0)
    width = max(1.0, period / 32)  # librosa's local score: a Gaussian of a 32nd of the period
    kernel = np.exp(-0.5 * (np.arange(-int(4 * width), int(4 * width) + 1) / width) ** 2)
    local = np.convolve(novelty / (novelty.std() + 1e-12), kernel, mode="same")
    lags = np.arange(int(round(period / 2)), int(round(2 * period)) + 1)
    cost = -tightness * np.log(lags / period) ** 2
    score, back = local.copy(), np.full(len(local), -1)
    for t in range(lags[0], len(local)):
        valid = lags <= t
        candidates = score[t - lags[valid]] + cost[valid]
        best = int(np.argmax(candidates))
        if candidates[best] > 0:
            score[t] += candidates[best]
            back[t] = t - lags[valid][best]
    tail = len(score) - int(round(period))
    beat = tail + int(np.argmax(score[tail:]))
    chain = [beat]
    while back[chain[-1]] >= 0:
        chain.append(back[chain[-1]])
    beats = np.array(chain[::-1])
    # the chain may start with weak frames before the music (or dance) does: drop beats below a fifth of the
    # typical local score at the ends, as librosa's beat trimming does
    strong = local[beats] > 0.2 * np.median(local[beats])
    if strong.any():
        beats = beats[np.argmax(strong):len(strong) - np.argmax(strong[::-1])]
    return beats / fps


def bar_positions(strength: np.ndarray) -> np.ndarray:
    """(N,) position in the bar of each of N beats whose accent strengths are `strength`: the downbeats are the
    one of the BEATS_PER_BAR positions with the strongest mean accent (as the live tracker guesses them)."""
    strength = np.asarray(strength, np.float64)
    means = [strength[offset::BEATS_PER_BAR].mean() if len(strength) > offset else -np.inf
             for offset in range(BEATS_PER_BAR)]
    return np.arange(len(strength)) - int(np.argmax(means))


def kinematic_novelty(positions: np.ndarray, fps: float, smoothing_s: float = 0.05) -> np.ndarray:
    """(T,) how strongly the dance sets off at each frame of (T, J, 3) joint positions: the half-wave rectified rise
    of the mean joint speed (positions smoothed over `smoothing_s` first, against marker jitter). Street dancers
    start their moves on the beat; this was the best of eight candidate curves (speed minima, deceleration,
    acceleration, per-joint speed flux, pelvis bounce, foot stops) against Motorica's beat grids, so its numbers
    there are in-sample (`onbeat dataset check --beats` reports them)."""
    from scipy.ndimage import gaussian_filter1d
    positions = gaussian_filter1d(np.asarray(positions, np.float64), max(smoothing_s * fps, 1e-3), axis=0)
    speed = np.linalg.norm(np.gradient(positions, axis=0), axis=-1).mean(axis=1) * fps
    return np.maximum(np.gradient(speed), 0.0)


def motion_beats(positions: np.ndarray, fps: float) -> "BeatGrid | None":
    """A BeatGrid estimated from the dance alone (kinematic periodicity), or None when it shows no beat."""
    novelty = kinematic_novelty(positions, fps)
    times = track_beats(novelty, fps)
    if len(times) < 2:
        return None
    frames = np.clip(np.round(times * fps).astype(int), 0, len(novelty) - 1)
    return BeatGrid(times, bar_positions(novelty[frames]))
