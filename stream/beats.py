"""Online, causal beat tracking with a phase-locked beat clock and predicted next beats.

Three small stages, each fed one 735-sample hop (one motion frame) at a time:

1. `OnsetEnvelope`: aubio phase vocoder + mel filterbank -> log-mel "superflux" novelty, computed at
   `SUB_HOPS` sub-hops per hop (90 novelty frames/s) for a finer beat grid than the 30 fps motion rate.
2. `BeatClock`: the beat clock, in the style of Stark et al.'s real-time tracker (BTrack): a causal
   cumulative beat score (Ellis' dynamic programming run forwards) gives the phase; half a beat before each
   beat the score is projected into the future to commit the next beat time, so beats are known before they
   sound. Tempo comes from a comb filter bank over the autocorrelation of the last seconds of novelty, with a
   log-Gaussian tempo prior and a smoothed tempo state (Viterbi-like) that follows changes within a few beats.
   With no onsets (a break, silence) the projection keeps the last period, so the clock coasts on its grid.
3. Downbeat guess: low-frequency onset strength on each beat, accumulated per beat position mod 4.

`BeatTracker` ties them together behind one call: `.process(hop) -> BeatState`.
"""
from dataclasses import dataclass

import aubio
import numpy as np

from onbeat.models.errors import OnbeatError
from onbeat.stream.features import ANALYSIS_RATE, HOP

SUB_HOPS = 3            # novelty frames per hop: 735 / 3 = 245 samples = 11.1 ms
WINDOW = 1024           # STFT window, 46 ms at 22050 Hz
MEL_BANDS = 40
LOW_BANDS = 3           # the mel bands below ~200 Hz: kick and bass, the downbeat accent
BEATS_PER_BAR = 4
# A novelty frame peaks when an onset reaches the middle of the analysis window, not its end: beat times
# are the frame's end time minus this delay.
ONSET_DELAY_S = 0.5 * WINDOW / ANALYSIS_RATE


@dataclass(frozen=True)
class BeatState:
    """The beat clock after one hop. Times are stream seconds (0 = first sample fed)."""
    time: float              # end of the hop just processed
    bpm: float
    phase: float             # 0..1, fraction of the current beat interval elapsed since the last beat
    bar_position: int        # 0..3, beat index within the bar (0 = downbeat)
    is_beat: bool            # a beat falls in this hop
    is_downbeat: bool
    confidence: float        # 0..1: periodicity strength times signal presence
    next_beats: np.ndarray   # predicted times of the next beats (s), all later than `time`
    last_beat: float = float("nan")  # time of the most recent beat (s), NaN before the first


class OnsetEnvelope:
    """Log-mel superflux novelty (positive spectral change, vibrato-robust) per sub-hop, built on aubio."""

    def __init__(self, sample_rate, sub_hop, window=WINDOW, bands=MEL_BANDS, lag=2, compression=1000.0):
        self.sub_hop = sub_hop
        self.pvoc = aubio.pvoc(window, sub_hop)
        self.filterbank = aubio.filterbank(bands, window)
        self.filterbank.set_mel_coeffs(float(sample_rate), 30.0, min(11000.0, sample_rate / 2))
        self.compression = compression
        self.history = np.zeros((lag, bands), dtype=np.float32)  # the last `lag` log-mel frames

    def process(self, samples):
        """One sub-hop of samples -> (novelty, low-band novelty)."""
        log_mel = np.log1p(self.compression * self.filterbank(self.pvoc(samples)))
        # superflux: compare with the max over neighbouring bands `lag` frames ago
        reference = self.history[0]
        reference = np.maximum(reference, np.maximum(np.roll(reference, 1), np.roll(reference, -1)))
        rise = np.maximum(log_mel - reference, 0.0)
        self.history = np.roll(self.history, -1, axis=0)
        self.history[-1] = log_mel
        return float(rise.sum()), float(rise[:LOW_BANDS].sum())


def _log_gaussian(lags, centre, tightness):
    """Weight of each candidate lag around `centre` (beat period): a Gaussian in log-lag."""
    return np.exp(-0.5 * (tightness * np.log(lags / centre)) ** 2)


class BeatClock:
    """Tempo and beat phase from a stream of novelty values at `fps` frames per second."""

    def __init__(self, fps, history_s=6.0, min_bpm=60.0, max_bpm=180.0, prior_bpm=120.0, prior_octaves=0.7,
                 alpha=0.9, tightness=5.0, tempo_change_octaves=0.08):
        self.fps = fps
        self.size = int(round(history_s * fps))
        self.novelty = np.zeros(self.size)
        self.score = np.zeros(self.size)        # causal cumulative beat score
        self.alpha, self.tightness = alpha, tightness
        # tempo candidates (log spaced) and their periods in frames
        self.tempi = np.geomspace(min_bpm, max_bpm, 80)
        self.periods = 60.0 * fps / self.tempi
        self.prior = np.exp(-0.5 * (np.log2(self.tempi / prior_bpm) / prior_octaves) ** 2)
        steps = np.log2(self.tempi[:, None] / self.tempi[None, :])
        self.transition = np.exp(-0.5 * (steps / tempo_change_octaves) ** 2)
        self.tempo_belief = self.prior / self.prior.sum()
        self.period = 60.0 * fps / prior_bpm
        self.frames_to_beat = int(round(self.period))   # counts down to the next committed beat
        self.frames_to_prediction = self.frames_to_beat // 2
        self.periodicity = 0.0
        self.frame = 0

    def update(self, novelty):
        """Feed one novelty frame; returns True when this frame is a beat."""
        self.frame += 1
        self.novelty = np.roll(self.novelty, -1)
        self.novelty[-1] = novelty
        self.score = np.roll(self.score, -1)
        self.score[-1] = (1 - self.alpha) * novelty + self.alpha * self._best_predecessor(self.score[:-1])
        self.frames_to_beat -= 1
        self.frames_to_prediction -= 1
        if self.frames_to_prediction == 0:
            self._predict_next_beat()
        if self.frames_to_beat == 0:
            self._update_tempo()
            return True
        return False

    def _best_predecessor(self, score):
        """max over the frames 2 periods .. half a period back of score x log-Gaussian transition weight."""
        far, near = int(round(2 * self.period)), int(round(self.period / 2))
        lags = np.arange(far, near - 1, -1, dtype=float)
        n = len(score)
        window = score[n - far: n - near + 1]
        return float((window * _log_gaussian(lags, self.period, self.tightness)).max()) if len(window) else 0.0

    def _predict_next_beat(self):
        """Half a beat before the expected beat: project the score one period into the future (no new onsets)
        and commit the next beat at its best point, weighted towards the expected position."""
        horizon = max(int(self.period), 1)
        future = np.concatenate([self.score, np.zeros(horizon)])
        for i in range(self.size, self.size + horizon):
            future[i] = self._best_predecessor(future[:i])
        offsets = np.arange(1, horizon + 1)
        expectation = np.exp(-0.5 * ((offsets - self.period / 2) / (self.period / 2)) ** 2)
        self.frames_to_beat = int(offsets[np.argmax(future[self.size:] * expectation)])
        self.frames_to_prediction = self.frames_to_beat + int(round(self.period / 2))

    def _update_tempo(self):
        """Comb filter bank on the autocorrelation of the recent novelty -> smoothed tempo belief."""
        signal = self.novelty - self.novelty.mean()
        energy = float(signal @ signal)
        if energy <= 1e-9:
            self.periodicity = 0.0
            return  # nothing to learn from silence: keep the tempo, the clock coasts
        spectrum = np.fft.rfft(signal, 2 * self.size)
        acf = np.fft.irfft(spectrum * np.conj(spectrum))[: self.size] / energy
        acf = np.maximum(acf, 0.0)
        comb = np.zeros(len(self.periods))
        for harmonic in range(1, 5):
            lags = self.periods * harmonic
            valid = lags < self.size - 1
            comb[valid] += np.interp(lags[valid], np.arange(self.size), acf) / harmonic
        observation = comb * self.prior + 1e-6
        predicted = (self.transition @ self.tempo_belief)
        belief = predicted * observation
        self.tempo_belief = belief / belief.sum()
        best = int(np.argmax(self.tempo_belief))
        self.period = self.periods[best]
        self.periodicity = float(np.clip(np.interp(self.period, np.arange(self.size), acf), 0.0, 1.0))

    @property
    def bpm(self):
        return 60.0 * self.fps / self.period


class BeatTracker:
    """Online beat tracker: feed consecutive mono hops of `hop` samples at `sample_rate`, get a BeatState each.

    Bad input: a hop of the wrong length raises OnbeatError (a wiring bug); NaN/inf samples are replaced by 0
    and counted in `.bad_samples` (a glitching sound card must not stop the show).
    """

    def __init__(self, sample_rate=ANALYSIS_RATE, hop=HOP):
        if hop % SUB_HOPS:
            raise OnbeatError(f"beat tracker: hop {hop} is not a multiple of {SUB_HOPS}")
        self.sample_rate, self.hop = sample_rate, hop
        self.sub_hop = hop // SUB_HOPS
        self.fps = sample_rate / self.sub_hop
        self.onsets = OnsetEnvelope(sample_rate, self.sub_hop)
        self.clock = BeatClock(self.fps)
        self.samples_seen = 0
        self.bad_samples = 0
        self.last_beat = None
        self.beat_count = 0
        self.accents = np.zeros(BEATS_PER_BAR)
        self.low_novelty = []               # recent low-band novelty, for the accent of the last beat
        self.level = 0.0                    # slow signal level, for the confidence's presence factor

    def process(self, mono_hop):
        samples = np.asarray(mono_hop, dtype=np.float32).reshape(-1)
        if samples.shape[0] != self.hop:
            raise OnbeatError(f"beat tracker: got a block of {samples.shape[0]} samples, expected {self.hop}")
        if not np.isfinite(samples).all():
            bad = ~np.isfinite(samples)
            self.bad_samples += int(bad.sum())
            samples = np.where(bad, 0.0, samples).astype(np.float32)
        hop_start = self.samples_seen / self.sample_rate
        is_beat = is_downbeat = False
        for k in range(SUB_HOPS):
            novelty, low = self.onsets.process(samples[k * self.sub_hop:(k + 1) * self.sub_hop])
            self.samples_seen += self.sub_hop
            self.low_novelty = (self.low_novelty + [low])[-8:]
            if self.clock.update(novelty):
                is_beat = True
                self.last_beat = self.samples_seen / self.sample_rate - ONSET_DELAY_S
                is_downbeat = self._count_beat()
        now = self.samples_seen / self.sample_rate
        self.level = 0.97 * self.level + 0.03 * float(np.sqrt(np.mean(samples ** 2)))
        return self._state(now, is_beat, is_downbeat)

    def _count_beat(self):
        """Accent of this beat (low-band onsets around it) into its bar position; True on a downbeat."""
        self.accents *= 0.95
        self.accents[self.beat_count % BEATS_PER_BAR] += max(self.low_novelty[-4:])
        self.beat_count += 1
        return self._bar_position() == 0

    def _bar_position(self):
        """Position of the most recent beat within the bar (0 = downbeat)."""
        downbeat_slot = int(np.argmax(self.accents))
        return (self.beat_count - 1 - downbeat_slot) % BEATS_PER_BAR

    def _state(self, now, is_beat, is_downbeat):
        clock = self.clock
        period_s = clock.period / self.fps
        next_beat = now + clock.frames_to_beat / self.fps - ONSET_DELAY_S
        next_beats = next_beat + period_s * np.arange(4)
        last = self.last_beat if self.last_beat is not None else next_beat - period_s
        phase = float(np.clip((now - last) / max(next_beat - last, 1e-6), 0.0, 1.0 - 1e-6))
        presence = float(np.clip(self.level / 1e-3, 0.0, 1.0))  # fades out below -60 dBFS
        return BeatState(time=now, bpm=float(clock.bpm), phase=phase,
                         bar_position=self._bar_position() if self.beat_count else 0,
                         is_beat=is_beat, is_downbeat=is_downbeat,
                         confidence=float(clock.periodicity * presence), next_beats=next_beats,
                         last_beat=self.last_beat if self.last_beat is not None else float("nan"))
