"""Online, causal beat tracking with a phase-locked beat clock and predicted next beats.

Five small stages, each fed one 735-sample hop (one motion frame) at a time:

1. `OnsetEnvelope`: short-time spectrum + mel filterbank -> log-mel "superflux" novelty, computed at
   `SUB_HOPS` sub-hops per hop (90 novelty frames/s) for a finer beat grid than the 30 fps motion rate.
2. `onbeat.ear.activation.BeatActivation`: small causal networks over the same log-mel frames that fire on beats
   rather than on every onset; the clock hears superflux and this activation mixed (`ACTIVATION_MIX`).
3. `BeatClock`, in the style of Stark et al.'s real-time tracker (BTrack): a causal cumulative beat score
   (Ellis' dynamic programming run forwards) gives the phase; half a beat before each beat the score is
   projected one period into the future to commit the next beat time, so beats are known before they sound.
   Tempo, re-estimated twice per beat: a comb filter bank over the autocorrelation of the last 6 s of novelty
   (weighed by the activation's own comb response), times a log-Gaussian prior around 100 BPM, drives a
   drift-smoothed tempo belief (stable; in a track's first 12 s each comb response counts in proportion to its
   strength, so the weak, lopsided responses of a short history, which favour too-fast tempi, do not bury the right
   tempo once the music shows it); a change detector watching only the last ~1.5 s resets it when the music is
   strongly periodic at a new tempo and no longer at the old one (a 100 -> 130 BPM jump is followed in about 4
   beats). With no onsets (a break, silence) the tempo is kept and the projection keeps the grid, so the clock
   coasts. When the tempo jumps (more than 4 %), the score, whose memory holds the phase of a grid at the old tempo,
   is rebuilt from the last 3 beats' novelty, so the phase follows within a beat or two. When the last 6 beats'
   onsets clearly sit elsewhere in the beat than the clock's beats (the off-beat), the phase jumps there.
4. `BarCounter`, which beat of the bar: two logistic regressions over each beat's beat-synchronous features (the
   log-mel spectrum's change from the beat before and from two beats before, in 8 band groups and as distances: bass
   notes change on downbeats; the chroma's change from them, from `onbeat.ear.harmony.Chroma`: chords do too; the
   same distances between the two beats after it and the two before, as a chord lasts half a bar or more; the
   attack at the beat per band group; the low-band (kick, bass) and total onset strength), each standardised against
   the track's beats so far, give the log-odds that it is a strong beat (1 or 3 of the bar, against 2 or 4: kick
   against snare) and, from the spectral and chord distances alone, that a strong beat starts the bar (against the
   third beat). Known two beats later, both are accumulated, slowly forgetting, per beat position mod 4 (the bar start
   as one capped vote per beat between it and the beat two before it); the downbeat is the position whose bar (it and
   the position two later strong, it the first of them) is most likely. (Issue 17: one regression of downbeat against
   any other beat mostly confused the first beat with the third.)

5. `TrackChangeDetector`: timbre and harmony novelty (the last second's mean log-mel spectrum against the last
   8 s, relative to how far apart they usually are), called only when it lasts a second (a fill or a break within
   the song comes back sooner); a new track restarts the clock's tempo (held for 1.5 s first) and the bar, while
   the beat's phase carries on (a DJ's beatmatched mix keeps its beat).

Parameters were chosen on the 30 GTZAN dev clips; `onbeat eval beats` cross-validates them (tuned on two folds,
scored on the third), one set for all music; the downbeat weights are refitted there on the tuning folds.

`BeatTracker` ties them together behind one call: `.process(hop) -> BeatState`. The offline analysis
(`features.extract_file`, training features and `render --beats`) runs this same causal tracker over the file,
so training features and the live clock agree.
"""
from dataclasses import dataclass

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import ANALYSIS_RATE, BEATS_PER_BAR, HOP
from onbeat.ear.activation import SHIPPED, BeatActivation
from onbeat.ear.harmony import Chroma
from onbeat.ear.spectrum import SlidingSpectrum, slaney_mel_filterbank

SUB_HOPS = 3            # novelty frames per hop: 735 / 3 = 245 samples = 11.1 ms
WINDOW = 1024           # STFT window, 46 ms at 22050 Hz
MEL_BANDS = 80
LOW_BANDS = 3           # the mel bands below ~200 Hz: kick and bass, the downbeat accent
BAND_GROUPS = 8         # the downbeat features' resolution over the mel bands
BEAT_FEATURES = 3 * BAND_GROUPS + 11                 # per beat, see `BarCounter.features`
ONSET_FEATURES = slice(3 * BAND_GROUPS, 3 * BAND_GROUPS + 6)  # its onset strengths and spectral distances
BASS_BANDS = 12         # the mel bands below ~400 Hz: bass notes, whose change marks a bar
# the bar counter's chroma window (186 ms): chords are told apart by their notes, which a longer window resolves
# (issue 17, gtzan-dev, shipped clock, downbeat weights refitted per fold: downbeat F 0.49 with the features
# standardised but no chroma; with chroma from 1024, 2048, 4096 samples: 0.50, 0.56, 0.58)
HARMONY_WINDOW = 4096
# each beat's downbeat features are standardised by their running mean and spread over this track's beats, the last
# ~STANDARD_BEATS once it has that many: the bar is told by how a beat differs from the track's other beats, and
# across songs the raw features' scales differ more than the beats within one song do
STANDARD_BEATS = 100
# the least spread a feature is standardised by: within a gtzan-dev song every feature spreads more (at least 0.025,
# median 0.15-0.65), while on a clean synthetic loop the near-equal spectra of its clicks, blown up to unit spread,
# outvoted the chord changes now and then (cross-validated downbeat F on gtzan-dev alike with 0.001 and 0.05)
SPREAD_FLOOR = 0.05
# the features that tell a bar's first beat from its third: a beat's spectral and chord distances and the constant
# (given all the features that regression overfits: cross-validated downbeat F 0.44 instead of 0.54 on gtzan-dev)
BAR_START_FEATURES = np.r_[3 * BAND_GROUPS + 2:BEAT_FEATURES, BEAT_FEATURES + 6]
# downbeat evidence per feature (a beat's `BarCounter.features`, standardised within the track, the onset features of
# the beat before it, a constant): the log-odds of a strong beat (row 0) and of the bar's first beat against its third
# (row 1, `BAR_START_FEATURES` only), logistic regressions fitted by `onbeat.evaluation.beats.fit_downbeat_weights`
# on the tracked beats of all 30 gtzan-dev clips (in-sample there)
DOWNBEAT_WEIGHTS = np.array([[
    0.4241, 0.1417, 0.2426, -0.1408, 0.0232, 0.0047, -0.2321, 0.1489,         # change from the beat before
    -0.0645, -0.0942, -0.1715, 0.1316, -0.1168, -0.0019, -0.0026, -0.1188,    # change from two beats before
    -0.0395, -0.1062, 0.1089, -0.1024, 0.0721, 0.1270, -0.0161, -0.0026,      # attack at the beat
    0.4889, -0.4590,                                                             # low-band, total onset strength
    -0.0497, 0.2104, 0.5448, -0.0893,        # distances (all bands, bass) from the beat before, two beats before
    0.3597, -0.2944,                                             # chord changes from the beat before, two beats before
    0.3714, -0.1997, 0.0293,                 # chord change, distances (all bands, bass): the two beats after/before
    -0.3615, 0.3479, -0.0483, -0.1665, -0.4494, 0.0916,                        # the beat before's onsets, distances
    -0.4723,                                                                     # offset
], np.zeros(BEAT_FEATURES + 7)])
DOWNBEAT_WEIGHTS[1, BAR_START_FEATURES] = [0.4677, 0.0355, -0.0375, -0.1315, -0.2094, 0.2356, 0.3415, -0.2685, 0.1812,
                                           -0.1000]  # + offset
# the most log-odds one beat's bar-start vote moves (`BarCounter.add_evidence`): a new section or a break (a big
# spectral jump, wherever in the bar it falls) would otherwise outweigh dozens of bars of small chord changes; capped,
# each beat is close to one vote. (gtzan-dev, `onbeat eval beats` cross-validated: downbeat F 0.520 -> 0.562; with the
# shipped clock and the cap chosen on the training folds among 0.05-2, 0.504 -> 0.539; 120 synthesized songs, weights
# fitted on gtzan-dev: 0.487 -> 0.494)
FIRST_VOTE_CAP = 0.2
OCTAVES = (2.0, 0.5)    # period ratios that are the same music at another metrical level
# the clock hears (1 - ACTIVATION_MIX) x superflux + ACTIVATION_MIX x ACTIVATION_SCALE x the learned beat activation
# (`onbeat.ear.activation`); the scale is about the ratio of the two's means over the gtzan-dev clips (median 93:1:
# superflux keeps its level, which the tempo estimate weighs by, and the activation counts about as much). Chosen on
# held-out activations of gtzan-dev (mix 0.4-0.5, scale 60-120 tried): in-sample
ACTIVATION_MIX, ACTIVATION_SCALE = 0.5, 93.0
# the tempo belief weighs each tempo's comb response over the mix by the learned activation's own comb response to the
# power ACTIVATION_COMB_POWER: superflux peaks on off-beat eighths as much as on beats, the activation mostly on beats,
# so this tips the octave and 3:2 choices towards the activation's (issue 17: gtzan-dev, 3-fold cross-validated over
# the clock parameters, F 0.844 -> 0.858, CMLt 0.671 -> 0.717, median lock 3.7 -> 3.4 s; half-time reggae.00070 locks
# at the right tempo). The power was chosen on all 30 clips at the shipped clock settings among 0.25, 0.5 and 1
# (F 0.861, 0.864, 0.827; 0.857 without): in-sample
ACTIVATION_COMB_POWER = 0.5


def neighbour_max(values):
    """Each value's max with its two neighbours (circular): superflux's band maximum, the re-anchor's frame slack."""
    wrapped = np.concatenate([values[-1:], values, values[:1]])   # (np.roll costs several times more, per frame)
    return np.maximum(values, np.maximum(wrapped[:-2], wrapped[2:]))


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
    """Log-mel superflux novelty (positive spectral change, vibrato-robust) per sub-hop: the magnitude spectrum of
    the last `window` samples (periodic Hann window) through a mel filterbank, log-compressed. (numpy; it was aubio's
    phase vocoder and mel filterbank, which this reproduces within float32 rounding, `tests/test_beats.py`: the whole
    tracker costs 5-14 % less, and there is no C library to compile.)"""

    def __init__(self, sample_rate, sub_hop, window=WINDOW, bands=MEL_BANDS, lag=3, compression=1000.0):
        self.sub_hop = sub_hop
        # a novelty frame peaks when an onset reaches the middle of the window, not its end
        self.delay_s = 0.5 * window / sample_rate
        self.spectrum = SlidingSpectrum(np.hanning(window + 1)[:-1].astype(np.float32))   # periodic Hann
        filterbank = slaney_mel_filterbank(sample_rate, window, bands, 30.0, min(11000.0, sample_rate / 2))
        self.filterbank = np.ascontiguousarray(filterbank.T, dtype=np.float32)   # (bins, bands)
        self.compression = compression
        self.history = np.zeros((lag, bands), dtype=np.float32)  # the last `lag` log-mel frames

    def process(self, samples):
        """One sub-hop of samples -> (novelty, low-band novelty, log-mel spectrum)."""
        log_mel = np.log1p(self.compression * (self.spectrum.process(samples) @ self.filterbank))
        # superflux: compare with the max over neighbouring bands `lag` frames ago
        rise = np.maximum(log_mel - neighbour_max(self.history[0]), 0.0)
        self.history[:-1] = self.history[1:]
        self.history[-1] = log_mel
        return float(rise.sum()), float(rise[:LOW_BANDS].sum()), log_mel


class BeatClock:
    """Tempo and beat phase from a stream of novelty values at `fps` frames per second."""

    def __init__(self, fps, min_lead_frames=1, history_s=6.0, min_bpm=60.0, max_bpm=180.0, prior_bpm=100.0,
                 prior_octaves=1.0,
                 alpha=0.9, tightness=5.0, tempo_drift_octaves=0.08, harmonics=4,
                 change_memory_s=1.5, change_strength=0.6, change_ratio=0.3, change_votes=2,
                 early_s=12.0, early_gain=15.0, reanchor_beats=6, reanchor_margin=2.0, reanchor_min_s=0.06,
                 tempo_jump=0.04, jump_rebuild_beats=3, restart_hold_s=1.5):
        self.fps = fps
        self.min_lead_frames = min_lead_frames   # a beat is never committed closer than this to the present
        self.size = int(round(history_s * fps))
        self.novelty = np.zeros(self.size)
        self.activation = np.zeros(self.size)   # the learned beat activation heard alongside (`update`)
        self.hears_activation = False
        self.score = np.zeros(self.size)        # causal cumulative beat score
        self.alpha, self.tightness, self.harmonics = alpha, tightness, harmonics
        # tempo candidates (log spaced), their periods in frames, the prior and the drift between updates
        self.tempi = np.geomspace(min_bpm, max_bpm, 80)
        self.periods = 60.0 * fps / self.tempi
        self.prior = np.exp(-0.5 * (np.log2(self.tempi / prior_bpm) / prior_octaves) ** 2)
        self.drift = np.exp(-0.5 * (np.log2(self.tempi[:, None] / self.tempi[None, :]) / tempo_drift_octaves) ** 2)
        self.tempo_belief = self.prior / self.prior.sum()
        # for the first `early_s` of a track (0 `early_gain`: never) the belief weighs each comb response by
        # exp(`early_gain` x response) instead of the response itself: the first seconds' responses are weak and
        # favour fast tempi (their harmonics fit a short history), and as a product of ratios (0.03 against 0.06
        # counts as much as 0.3 against 0.6) they buried the right tempo for seconds after the music had shown it
        self.early_frames, self.early_gain = early_s * fps, early_gain
        self.heard = 0                                      # frames since the start or the last restart
        # tempo change detector: the last ~1.5 s alone, strongly periodic at a new tempo for a few updates
        age = np.arange(self.size)[::-1] / fps
        self.recent = np.exp(-age / change_memory_s)
        self.recent_lag_gain = np.exp(np.arange(self.size) / fps / change_memory_s)
        self.change_strength, self.change_ratio, self.change_votes = change_strength, change_ratio, change_votes
        self.votes = 0
        self.period = 60.0 * fps / prior_bpm
        self.frame = 0                                      # index of the latest novelty frame
        self.next_beat_frame = int(round(self.period))      # provisional until committed half a beat ahead
        self.prediction_frame = self.next_beat_frame // 2
        self.periodicity = 0.0
        self._weights_period = None   # the period `_transition_weights` were computed for
        # phase re-anchor (0 beats: off): see `_reanchor`
        self.reanchor_beats, self.reanchor_margin = reanchor_beats, reanchor_margin
        self.reanchor_min = reanchor_min_s * fps
        self.reanchors = 0                                  # how often the phase jumped
        # a tempo jump of more than `tempo_jump` (relative) rebuilds the score (0 `jump_rebuild_beats`: never)
        self.tempo_jump, self.jump_rebuild_beats = tempo_jump, jump_rebuild_beats
        self.rebuilds = 0                                   # how often that happened
        self.restart_hold = restart_hold_s * fps
        self.hold = 0.0                                     # frames after a restart with the tempo held

    def update(self, novelty, activation=None):
        """Feed one novelty frame (and the learned beat activation of that frame, if there is one: it sharpens the
        tempo estimate); returns True when this frame is the committed beat."""
        self.frame += 1
        self.heard += 1
        # the histories shift in place, oldest out (np.roll's new arrays per frame were an eighth of the tracker's time)
        self.novelty[:-1] = self.novelty[1:]
        self.novelty[-1] = novelty
        if activation is not None:
            self.hears_activation = True
            self.activation[:-1] = self.activation[1:]
            self.activation[-1] = activation
        self.score[:-1] = self.score[1:]
        self.score[-1] = self._score_step(self.score[:-1], novelty)
        if self.frame == self.prediction_frame:
            self._update_tempo()   # tempo is re-estimated twice per beat: here and on the beat
            self._predict_next_beat()
            if self.reanchor_beats:
                self._reanchor()
        if self.frame != self.next_beat_frame:
            return False
        self._update_tempo()
        self.next_beat_frame = self.frame + max(int(round(self.period)), 1)   # provisional
        self.prediction_frame = self.frame + max(int(round(self.period / 2)), 1)
        return True

    def restart(self):
        """Forget the tempo heard so far (a new track): no novelty history, the prior tempo belief. The frame count,
        the committed next beat and the beat score (the phase) stay, and the tempo is held for `restart_hold_s`,
        until the new track has given evidence: in a DJ's beatmatched mix the beat goes on (the tempo estimated from
        the first half second after a change swung 110 -> 100 -> 129 BPM and put a beat 120 ms off), and a new
        track's other tempo rebuilds the score when the belief jumps to it."""
        self.novelty[:] = 0.0
        self.activation[:] = 0.0
        self.tempo_belief = self.prior / self.prior.sum()
        self.votes = 0
        self.heard = 0
        self.hold = self.restart_hold

    def _score_step(self, score, novelty):
        """The cumulative beat score of a frame with this novelty appended to `score`."""
        return (1 - self.alpha) * novelty + self.alpha * self._best_predecessor(score)

    def _best_predecessor(self, score):
        """max over the frames 2 periods .. half a period back of score x transition weight (a Gaussian in
        log-lag around the beat period), for a new frame appended to `score`."""
        if self._weights_period != self.period:
            far, near = int(round(2 * self.period)), int(round(self.period / 2))
            lags = np.arange(far, near - 1, -1, dtype=float)
            self._transition_weights = np.exp(-0.5 * (self.tightness * np.log(lags / self.period)) ** 2)
            self._weights_period, self._lag_range = self.period, (far, near)
        far, near = self._lag_range
        return float((score[len(score) - far: len(score) - near + 1] * self._transition_weights).max())

    def _predict_next_beat(self):
        """Half a beat before the expected beat: project the score one period into the future (no new onsets)
        and commit the next beat at its best point, weighted towards the expected position."""
        horizon = max(int(self.period), self.min_lead_frames)
        future = np.concatenate([self.score, np.zeros(horizon)])
        for i in range(self.size, self.size + horizon):
            future[i] = self._best_predecessor(future[:i])
        offsets = np.arange(1, horizon + 1)
        expectation = np.exp(-0.5 * ((offsets - self.period / 2) / (self.period / 2)) ** 2)
        expectation[:self.min_lead_frames - 1] = 0.0
        # (a tiny floor lets the expectation alone decide when there is no score yet: silence)
        self.next_beat_frame = self.frame + int(offsets[np.argmax((future[self.size:] + 1e-12) * expectation)])

    def _reanchor(self):
        """Right after a prediction: when over the last `reanchor_beats` beats of the committed grid the onsets sit at
        another offset within the beat (at least `reanchor_min_s` away), `reanchor_margin` times stronger in sum than
        at the beats and stronger at all but one of them, move the next beat by that offset and rebuild the score
        from that recent novelty. (Issue 17: once the tempo was right, the score's long memory could hold the phase on
        the off-beat, or ~130 ms off, for seconds.)"""
        period, beats = self.period, self.reanchor_beats
        if self.heard < (beats + 1) * period:
            return
        half = int(period // 2)
        offsets = np.arange(-half, half + 1)
        last = self.size - 1 - (self.frame - self.next_beat_frame)   # the next beat's index in the history
        grid = np.round(last - period * np.arange(1, beats + 1)).astype(int)
        index = grid[:, None] + offsets[None, :]
        if index.min() < 1 or index.max() > self.size - 1:
            return
        profile = neighbour_max(self.novelty)[index]                         # (past beats, offsets)
        total = profile.sum(axis=0)
        best = int(np.argmax(total))
        shift = int(offsets[best])
        if abs(shift) < self.reanchor_min:
            return
        here = profile[:, half]
        if total[best] < self.reanchor_margin * total[half] or np.sum(profile[:, best] > here) < beats - 1:
            return
        self.next_beat_frame = max(self.next_beat_frame + shift, self.frame + self.min_lead_frames)
        # the score's memory holds the old phase: rebuild it from the recent novelty alone
        self._rebuild_score(beats + 1)
        self.reanchors += 1

    def _rebuild_score(self, beats):
        """The cumulative beat score as if the clock had started `beats` periods ago at the current tempo."""
        span = int(round(beats * self.period))
        rebuilt = np.zeros(self.size)
        for i in range(max(self.size - span, int(round(2 * self.period)) + 1), self.size):
            rebuilt[i] = self._score_step(rebuilt[:i], self.novelty[i])
        self.score = rebuilt

    def _periodicity(self, history, weights):
        """Normalised autocorrelation of a weighted, mean-removed history (novelty or activation), and its comb filter
        bank response per tempo candidate (the mean of the autocorrelation at 1..`harmonics` periods)."""
        signal = (history - history.mean()) * weights
        energy = float(signal @ signal)
        if energy <= 1e-9:
            return None, None
        spectrum = np.fft.rfft(signal, 2 * self.size)
        acf = np.maximum(np.fft.irfft(spectrum * np.conj(spectrum))[: self.size] / energy, 0.0)
        if weights is self.recent:  # undo the decay the weighting puts on long lags: a steady beat scores ~1
            acf = acf * self.recent_lag_gain
        comb = np.zeros(len(self.periods))
        for harmonic in range(1, self.harmonics + 1):
            lags = self.periods * harmonic
            valid = lags < 0.75 * self.size
            comb[valid] += np.interp(lags[valid], np.arange(self.size), acf)
        return acf, comb / self.harmonics

    def _update_tempo(self):
        """Tempo belief: drift-smoothed product of comb responses over the whole history (stable), reset when
        the recent past alone is strongly periodic at another tempo (a tempo change, followed in a few beats)."""
        if self.heard < self.hold:
            return   # just restarted: too little of the new track to estimate from, the clock coasts
        acf, comb = self._periodicity(self.novelty, 1.0)
        if acf is None:
            self.periodicity = 0.0
            return  # nothing to learn from silence: keep the tempo, the clock coasts
        if self.hears_activation:
            _, activation_comb = self._periodicity(self.activation, 1.0)
            if activation_comb is not None:
                comb = comb * np.maximum(activation_comb, 1e-3) ** ACTIVATION_COMB_POWER
        if self.early_gain and self.heard < self.early_frames:   # a track's first seconds: evidence by strength
            likelihood = np.exp(self.early_gain * (comb - comb.max())) * self.prior
        else:
            likelihood = comb * self.prior + 1e-6
        belief = (self.drift @ self.tempo_belief) * likelihood
        self.tempo_belief = belief / belief.sum()
        recent_acf, recent_comb = self._periodicity(self.novelty, self.recent)
        candidate = int(np.argmax(recent_comb * self.prior))
        new_fit = np.interp(self.periods[candidate], np.arange(self.size), recent_acf)
        old_fit = np.interp(self.period, np.arange(self.size), recent_acf)
        # a change: the recent past is strongly periodic at a new tempo and no longer at the current one; not half
        # or double the current tempo (a sparse bar is no reason to flip octave: issue 17's Vibe Ace flipped
        # between 130 and 65 BPM, so the live BPM disagreed with the beats). A new track restarts the clock.
        ratio = self.periods[candidate] / self.period
        octave = any(abs(ratio / level - 1.0) < 0.05 for level in OCTAVES)
        changed = new_fit > self.change_strength and old_fit < self.change_ratio * new_fit and not octave
        self.votes = self.votes + 1 if changed else 0
        if self.votes >= self.change_votes:
            self.tempo_belief = self.drift[candidate] / self.drift[candidate].sum()
            self.votes = 0
        previous = self.period
        self.period = self.periods[int(np.argmax(self.tempo_belief))]
        if self.jump_rebuild_beats and abs(self.period / previous - 1.0) > self.tempo_jump:
            # the score remembers the phase of a grid at the old tempo, and held it for seconds (issue 17): rebuild
            # it from the last beats' novelty alone
            self._rebuild_score(self.jump_rebuild_beats)
            self.rebuilds += 1
        self.periodicity = float(np.clip(np.interp(self.period, np.arange(self.size), acf), 0.0, 1.0))

    @property
    def bpm(self):
        return 60.0 * self.fps / self.period


class BarCounter:
    """Which beat of the bar each beat is. Feed every novelty frame (`frame`) and tell it when the clock's beat frame
    passes (`beat`); a beat's evidence needs the two beats after it (the spectrum between them), so it is added two
    beats late to that beat's position mod 4, where evidence slowly fades (`memory` per beat)."""

    def __init__(self, fps, weights=DOWNBEAT_WEIGHTS, memory=0.99, evidence_log=None):
        self.weights, self.memory = np.asarray(weights, dtype=float), memory
        self.size = int(5 * fps)                                  # four beats at 60 BPM, and a margin
        self.spectra = np.zeros((self.size, MEL_BANDS))           # ring buffers, indexed by frame % size
        self.onsets = np.zeros((self.size, 2))                    # (low-band, total) novelty
        self.chroma = np.zeros((self.size, 12))
        self.frames = 0
        self.beat_frames: list[int] = []                          # the last five beats' frames
        # per position: strong-beat log-odds, bar-start votes. (A memory of 0.98 to 1 scores alike on 30 s clips;
        # 0.99 still forgets a bar slipped by the clock within about 70 beats.)
        self.evidence = np.zeros((2, BEATS_PER_BAR))
        self.first_odds: dict[int, float] = {}                    # the last two beats' bar-start log-odds, by count
        self.downbeat = 0                                         # the most likely downbeat's position mod 4
        self.previous = np.zeros(BEAT_FEATURES)                   # the last scored beat's features
        self.scored = 0                                           # beats scored since the track began
        self.feature_mean = np.zeros(BEAT_FEATURES)               # their running mean and mean square
        self.feature_square = np.zeros(BEAT_FEATURES)
        self.evidence_log = evidence_log   # a list gets (beat frame, features) per beat: for fitting the weights

    def frame(self, novelty, low, log_mel, chroma):
        self.frames += 1   # counted as the clock counts them: the beat's frame is the latest one
        self.spectra[self.frames % self.size] = log_mel
        self.onsets[self.frames % self.size] = low, novelty
        self.chroma[self.frames % self.size] = chroma

    def beat(self, number):
        """The latest frame is the clock's beat, the `number`-th: score the beat two before it, now that the two
        intervals after that one are heard."""
        self.beat_frames = (self.beat_frames + [self.frames])[-5:]
        if len(self.beat_frames) < 5 or self.frames - self.beat_frames[0] > self.size:
            return
        own = self.standardised(self.features(*self.beat_frames))
        # the beat before's onsets and distances too: a downbeat's neighbours are weak beats
        features = np.concatenate([own, self.previous[ONSET_FEATURES], [1.0]])
        self.previous = own
        if self.evidence_log is not None:
            self.evidence_log.append((self.beat_frames[2], features))
        self.add_evidence(number - 2, features)

    def add_evidence(self, beat_count: int, features: np.ndarray) -> None:
        """Weigh the downbeat features of the `beat_count`-th beat and pick the most likely bar."""
        self.evidence *= self.memory
        strong_odds, first_odds = self.weights @ features
        position = (beat_count - 1) % BEATS_PER_BAR
        self.evidence[0, position] += strong_odds
        # bar start: this beat against the beat two before it (the bar's other strong beat, if this one is strong), one
        # capped vote for the likelier, taken from the other. (Voting each beat's own odds, two strong beats that both
        # saturate the cap tie, and the one scored last won: on a clean drum loop the bar flipped every two beats.)
        earlier = self.first_odds.get(beat_count - 2)
        if earlier is not None:
            vote = FIRST_VOTE_CAP * np.tanh((first_odds - earlier) / FIRST_VOTE_CAP)
            self.evidence[1, position] += vote
            self.evidence[1, (position + 2) % BEATS_PER_BAR] -= vote
        self.first_odds = {count: odds for count, odds in self.first_odds.items() if count == beat_count - 1}
        self.first_odds[beat_count] = float(first_odds)
        strong, first = self.evidence
        # each position's bar, log-likelihood up to a constant: it and the position two later strong, it the first
        likelihood = strong + np.roll(strong, 2) + 0.5 * (first - np.roll(first, 2))
        self.downbeat = int(np.argmax(likelihood))

    def features(self, earlier, before, beat, after, later):
        """Downbeat features of the beat at frame `beat` (the frames of the two beats before and after it given): the
        mean log-mel (band groups) of the beat interval after it minus that of the interval before it and minus that
        of the one before that; the attack (3 frames after the beat against 3 before); log low-band and total onset
        strength at the beat; how far the spectrum moved from those intervals (mean absolute change, all bands and
        bass bands: a new chord or bass note); how far the harmony moved from them (cosine distance of the mean
        chroma); how far the harmony and the spectrum (all bands, bass bands) of the two intervals after the beat
        moved from the two before it."""
        def mean(start, stop, ring=None):
            return (self.spectra if ring is None else ring)[np.arange(start, stop) % self.size].mean(axis=0)

        def harmony(start, stop):
            chroma = mean(start, stop, self.chroma)
            return chroma / (np.linalg.norm(chroma) + 1e-9)

        def groups(spectrum):
            return spectrum.reshape(BAND_GROUPS, -1).mean(axis=1)
        following = mean(beat, after)
        changes = (following - mean(before, beat), following - mean(earlier, before))
        onsets = self.onsets[np.arange(beat - 3, beat + 2) % self.size].max(axis=0)
        distances = [part.mean() for change in changes for part in (np.abs(change), np.abs(change[:BASS_BANDS]))]
        attack = mean(beat, beat + 3) - mean(beat - 4, beat - 1)
        chord = harmony(beat, after)
        chord_changes = [1.0 - chord @ harmony(before, beat), 1.0 - chord @ harmony(earlier, before)]
        # a chord lasts half a bar or more, so two beats' notes tell it better than one's (issue 17, gtzan-dev, `onbeat
        # eval beats` cross-validated: downbeat F 0.498 -> 0.566, paired +0.068, 95% +0.028 to +0.112, 12 clips better
        # and 2 worse; at the shipped clock 0.574 -> 0.594. Three or four beats each side: 0.570, 0.465 there)
        halves = mean(beat, later) - mean(earlier, beat)
        half_bar = [1.0 - harmony(beat, later) @ harmony(earlier, beat), np.abs(halves).mean(),
                    np.abs(halves[:BASS_BANDS]).mean()]
        return np.concatenate([groups(changes[0]), groups(changes[1]), groups(attack), np.log1p(onsets), distances,
                               chord_changes, half_bar])

    def standardised(self, features):
        """A beat's features against this track's beats so far: their running mean and spread (0 for the first two
        beats, whose spread is not known yet)."""
        self.scored += 1
        rate = max(1.0 / self.scored, 1.0 / STANDARD_BEATS)   # the first beat's rate 1 forgets a previous track's
        self.feature_mean += rate * (features - self.feature_mean)
        self.feature_square += rate * (features ** 2 - self.feature_square)
        if self.scored <= 2:
            return np.zeros_like(features)
        spread = np.sqrt(np.maximum(self.feature_square - self.feature_mean ** 2, 0.0)) + SPREAD_FLOOR
        return (features - self.feature_mean) / spread

    def restart(self):
        self.evidence[:] = 0.0
        self.first_odds = {}
        self.downbeat = 0
        self.beat_frames = []
        self.previous[:] = 0.0
        self.scored = 0

    def position(self, beat_count):
        """Bar position (0 = downbeat) of the `beat_count`-th beat."""
        return (beat_count - 1 - self.downbeat) % BEATS_PER_BAR


class TrackChangeDetector:
    """A new track: the mean log-mel spectrum of the last `short_s` far from that of the last `long_s`, compared
    with how far apart they have been since this track began (a running mean and spread of that distance, kept
    from `long_s` into the track on, so the track's own start is not taken for its normal variation)."""

    def __init__(self, fps, short_s=1.0, long_s=8.0, threshold=3.5, settle_s=2.0, persist_s=1.0, hold=2.5):
        self.short_rate, self.long_rate = 1.0 / (short_s * fps), 1.0 / (long_s * fps)
        # a change is called once the distance, having passed `threshold` spreads, has stayed above `hold` spreads for
        # `persist_s` (a fill or a break in the song comes back sooner)
        self.threshold, self.hold = threshold, hold
        self.persist = int(persist_s * fps)
        self.away = 0                              # frames since the distance passed the threshold (0: it has not)
        self.warmup = int(long_s * fps)            # frames before the long-term mean describes this track
        self.settle = int(settle_s * fps)          # frames of distance statistics before a change can be called
        self.short: np.ndarray | None = None
        self.long: np.ndarray | None = None
        self.since_change = 0
        self._reset_statistics()

    def _reset_statistics(self):
        self.mean_distance, self.mean_square, self.measured = 0.0, 0.0, 0

    def update(self, spectra) -> bool:
        """Feed a hop's log-mel frames; True when a track change is detected."""
        for frame in spectra:
            if self.short is None:
                self.short, self.long = np.array(frame, dtype=float), np.array(frame, dtype=float)
            self.short += self.short_rate * (frame - self.short)
            self.long += self.long_rate * (frame - self.long)
        self.since_change += len(spectra)
        if self.since_change < self.warmup:
            return False
        assert self.short is not None and self.long is not None  # set by the first spectrum
        distance = float(np.mean(np.abs(self.short - self.long)))
        spread = np.sqrt(max(self.mean_square - self.mean_distance ** 2, 1e-4))
        level = self.threshold if not self.away else self.hold
        if self.measured >= self.settle and distance > self.mean_distance + level * spread:
            self.away += len(spectra)
            if self.away < self.persist:
                return False   # not yet a change; nor this track's normal variation: the statistics wait
            self.since_change, self.away = 0, 0
            self.long = self.short.copy()   # the new track is the reference from now on
            self._reset_statistics()
            return True
        self.away = 0
        self.measured += len(spectra)
        rate = max(len(spectra) / self.measured, len(spectra) * self.long_rate)   # a plain mean at first
        self.mean_distance += rate * (distance - self.mean_distance)
        self.mean_square += rate * (distance ** 2 - self.mean_square)
        return False


class BeatTracker:
    """Online beat tracker: feed consecutive mono hops of `hop` samples at `sample_rate`, get a BeatState each.

    Bad input: a hop of the wrong length raises OnbeatError (a wiring bug); NaN/inf samples are replaced by 0
    and counted in `.bad_samples` (a glitching sound card must not stop the show).
    """

    def __init__(self, sample_rate=ANALYSIS_RATE, hop=HOP, detect_track_changes=True, downbeat_weights=DOWNBEAT_WEIGHTS,
                 downbeat_log=None, activation=SHIPPED, **clock_options):
        if hop % SUB_HOPS:
            raise OnbeatError(f"beat tracker: hop {hop} is not a multiple of {SUB_HOPS}")
        self.sample_rate, self.hop = sample_rate, hop
        self.sub_hop = hop // SUB_HOPS
        self.fps = sample_rate / self.sub_hop
        self.onsets = OnsetEnvelope(sample_rate, self.sub_hop)
        self.harmony = Chroma(HARMONY_WINDOW, sample_rate)
        # beats sound `delay_s` before their novelty frame: commit them at least that early, so they are
        # never flagged after their time
        self.clock_options = {"min_lead_frames": int(np.ceil(self.onsets.delay_s * self.fps)) + 1, **clock_options}
        self.clock = BeatClock(self.fps, **self.clock_options)
        self.changes = TrackChangeDetector(self.fps) if detect_track_changes else None
        self.track_changes = 0
        self.samples_seen = 0
        self.bad_samples = 0
        self.last_beat = None
        self.beat_count = 0
        self.bar = BarCounter(self.fps, downbeat_weights, evidence_log=downbeat_log)
        # the learned beat activation's networks (a set in its weights file; None: the clock hears superflux alone)
        self.activation = BeatActivation(activation) if activation else None
        self.level = 0.0                    # slow signal level, for the confidence's presence factor

    def process(self, mono_hop) -> "BeatState":
        samples = np.asarray(mono_hop, dtype=np.float32).reshape(-1)
        if samples.shape[0] != self.hop:
            raise OnbeatError(f"beat tracker: got a block of {samples.shape[0]} samples, expected {self.hop}")
        if not np.isfinite(samples).all():
            bad = ~np.isfinite(samples)
            self.bad_samples += int(bad.sum())
            samples = np.where(bad, 0.0, samples).astype(np.float32)
        return self.follow(*self.hear(samples))

    def hear(self, samples):
        """The onset envelope of one clean hop: its RMS, its sub-hops' (novelty, low-band novelty, log-mel) and its
        chroma, what `follow` takes."""
        onsets = [self.onsets.process(samples[k * self.sub_hop:(k + 1) * self.sub_hop]) for k in range(SUB_HOPS)]
        return float(np.sqrt(np.mean(samples ** 2))), onsets, self.harmony.process(samples)

    def follow(self, rms, onsets, chroma, activations=None) -> "BeatState":
        """Everything after the onset envelope, for one hop: its RMS, its sub-hops' (novelty, low-band novelty,
        log-mel) and its chroma. The evaluation replays recorded envelopes through this to tune the clock cheaply,
        with the sub-hops' beat `activations` computed beforehand for a whole clip (else the tracker's own networks
        run)."""
        if self.changes is not None and self.changes.update([log_mel for _, _, log_mel in onsets]):
            self.clock.restart()        # a new track: its tempo and bar are learnt afresh (the phase carries on)
            self.bar.restart()
            self.track_changes += 1
        if activations is None and self.activation is not None:
            activations = self.activation.process([log_mel for _, _, log_mel in onsets])
        is_beat = False
        for k, (novelty, low, log_mel) in enumerate(onsets):
            self.samples_seen += self.sub_hop
            # the beat sounds (window delay) before the clock reaches its frame: emit it once its time is in
            beat = self.frame_time(self.clock.next_beat_frame)
            if beat <= self.samples_seen / self.sample_rate and (self.last_beat is None or beat > self.last_beat):
                is_beat, self.last_beat = True, beat
                self.beat_count += 1
            self.bar.frame(novelty, low, log_mel, chroma)
            activation = None if activations is None else activations[k]
            if activation is not None:
                novelty = (1.0 - ACTIVATION_MIX) * novelty + ACTIVATION_MIX * ACTIVATION_SCALE * activation
            # the clock's beat frame: the onsets of the beat just emitted are in
            if self.clock.update(novelty, activation):
                self.bar.beat(self.beat_count)
        self.level = 0.97 * self.level + 0.03 * rms
        return self._state(self.samples_seen / self.sample_rate, is_beat)

    def frame_time(self, frame):
        """Audio time of a novelty frame's onsets: its end minus the window delay."""
        return frame * self.sub_hop / self.sample_rate - self.onsets.delay_s

    def _state(self, now, is_beat):
        clock = self.clock
        period_s = clock.period / self.fps
        next_beat = self.frame_time(clock.next_beat_frame)
        if next_beat <= now:   # already emitted; the clock steps past it within two frames
            next_beat += period_s
        next_beats = next_beat + period_s * np.arange(4)
        last = self.last_beat if self.last_beat is not None else next_beat - period_s
        phase = float(np.clip((now - last) / max(next_beat - last, 1e-6), 0.0, 1.0 - 1e-6))
        presence = float(np.clip(self.level / 1e-3, 0.0, 1.0))  # fades out below -60 dBFS
        bar_position = self.bar.position(self.beat_count) if self.beat_count else 0
        return BeatState(time=now, bpm=float(clock.bpm), phase=phase, bar_position=bar_position,
                         is_beat=is_beat, is_downbeat=is_beat and bar_position == 0,
                         confidence=float(clock.periodicity * presence), next_beats=next_beats,
                         last_beat=self.last_beat if self.last_beat is not None else float("nan"))
