"""Online, causal beat and downbeat tracking with predicted next beats.

Four stages, fed one 735-sample hop (one motion frame) at a time:

1. `SpectralFrontEnd` + `BeatActivation` (`onbeat.ear.activation`): log-mel frames at 90 frames/s and a small
   recurrent network that gives each frame a beat and a downbeat probability.
2. `TempoPhaseFilter`: the forward algorithm of a hidden Markov model over (beat interval, position within the
   beat), the "bar pointer" model of Krebs, Böck and Widmer (ISMIR 2015) that madmom's online DBN also uses,
   written here from the paper. Every interval from 55 to 215 BPM is a chain of states, one per frame; tempo
   may change only at a beat, towards nearby intervals. The beat states see the activation, the others its
   complement. A small uniform floor keeps every state alive, so a tempo jump or a new track re-locks within
   a few beats; without onsets (a break, silence) the observation is neutral and the clock coasts.
3. Beats are emitted from the filter's best state, in the hop their time falls in: the state's position says
   when the last beat was and when the next one comes, so beats are known before they sound.
4. `BarTracker`: a second, beat-synchronous filter over (meter 3 or 4, position in the bar) fed the downbeat
   probability at each beat: the bar position and meter of every beat.

`TrackChangeDetector` watches timbre and harmony (long against short-term mean log-mel); when the music
changes abruptly it resets both filters, so a DJ's next track is locked as fast as a first one.

`BeatTracker` ties them together behind one call: `.process(hop) -> BeatState`. The offline analysis
(`features.extract_file`) runs this same causal tracker over the file, so training features and live agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import ANALYSIS_RATE, BEATS_PER_BAR, HOP
from onbeat.ear.activation import (
    BANDS,
    FPS,
    MODEL_PATH,
    SUB_HOPS,
    BeatActivation,
    SpectralFrontEnd,
    frame_time,
    label_frames,
)

METERS = (3, 4)


@dataclass(frozen=True)
class BeatState:
    """The beat clock after one hop. Times are stream seconds (0 = first sample fed)."""
    time: float              # end of the hop just processed
    bpm: float
    phase: float             # 0..1, fraction of the current beat interval elapsed since the last beat
    bar_position: int        # 0..beats_per_bar-1, beat index within the bar (0 = downbeat)
    is_beat: bool            # a beat falls in this hop
    is_downbeat: bool
    confidence: float        # 0..1: how strongly beats sound where the clock puts them
    next_beats: np.ndarray   # predicted times of the next beats (s), all later than `time`
    last_beat: float = float("nan")  # time of the most recent beat (s), NaN before the first
    beats_per_bar: int = BEATS_PER_BAR   # the tracked meter: 4, or 3 (waltz)


class TempoPhaseFilter:
    """Forward filter over (beat interval in frames, frames since the last beat); `update(activation)` per frame.

    `transition_lambda`: how strongly the tempo sticks from beat to beat (exp(-lambda |ratio - 1|));
    `observation_lambda`: the 1/lambda of each beat interval around the beat is the beat region; `floor`: share of the
    probability spread uniformly every frame (re-locking); `coast_below`: with no activation above this for
    `coast_s`, frames carry no evidence and the clock keeps its tempo and phase."""

    def __init__(self, fps=FPS, min_bpm=55.0, max_bpm=215.0, transition_lambda=100.0, observation_lambda=16.0,
                 floor=1e-5, coast_below=0.1, coast_s=1.0, prior_bpm=None, prior_octaves=1.0):
        self.fps = fps
        self.intervals = np.arange(int(np.ceil(60.0 * fps / max_bpm)), int(np.floor(60.0 * fps / min_bpm)) + 1)
        self.first = np.concatenate([[0], np.cumsum(self.intervals)[:-1]])
        self.last = self.first + self.intervals - 1
        self.tempo_of = np.repeat(np.arange(len(self.intervals)), self.intervals)
        self.position = np.arange(self.intervals.sum()) - self.first[self.tempo_of]
        ratio = self.intervals[None, :] / self.intervals[:, None]
        transition = np.exp(-transition_lambda * np.abs(ratio - 1.0))
        self.transition = transition / transition.sum(axis=1, keepdims=True)   # from row tempo to column tempo
        if prior_bpm:   # a log-Gaussian preference for tempi near prior_bpm, applied at every beat
            bpm = 60.0 * fps / self.intervals
            self.transition *= np.exp(-0.5 * (np.log2(bpm / prior_bpm) / prior_octaves) ** 2)[None, :]
        # the beat region: the 1/lambda of the interval centred on the beat (position 0)
        half_region = np.maximum(0.5, 0.5 * self.intervals[self.tempo_of] / observation_lambda)
        distance = np.minimum(self.position, self.intervals[self.tempo_of] - self.position)
        self.beat_states = np.flatnonzero(distance < half_region)
        self.observation_lambda = observation_lambda
        self.floor, self.coast_below = floor, coast_below
        self.coast_frames = int(coast_s * fps)
        self.reset()

    def reset(self):
        self.forward = np.full(len(self.position), 1.0 / len(self.position))
        self.quiet_frames = self.coast_frames   # start coasting: no evidence yet

    def update(self, activation: float):
        forward = self.forward
        new = np.empty_like(forward)
        new[1:] = forward[:-1]                                  # one frame further into the beat
        new[self.first] = forward[self.last] @ self.transition  # a beat: tempo may move to a neighbour
        self.quiet_frames = 0 if activation > self.coast_below else self.quiet_frames + 1
        if self.quiet_frames < self.coast_frames:
            # beat states see the activation a, the others (1 - a) / (lambda - 1): only their ratio matters
            a = min(max(activation, 1e-4), 1.0 - 1e-4)
            new[self.beat_states] *= a * (self.observation_lambda - 1.0) / (1.0 - a)
        new *= (1.0 - self.floor) / new.sum()
        new += self.floor / len(new)
        self.forward = new

    def best(self) -> tuple[int, float]:
        """(frames since the last beat, beat interval in frames) of the most probable state; the interval is
        refined between whole frames by a parabola through the log probability of the neighbouring tempi."""
        state = int(np.argmax(self.forward))
        tempo = int(self.tempo_of[state])
        interval = float(self.intervals[tempo])
        if 0 < tempo < len(self.intervals) - 1:
            mass = np.log(np.add.reduceat(self.forward, self.first)[tempo - 1:tempo + 2])
            curvature = mass[0] - 2 * mass[1] + mass[2]
            if curvature < 0:
                interval += float(np.clip(0.5 * (mass[0] - mass[2]) / curvature, -0.5, 0.5))
        return int(self.position[state]), interval


class BarTracker:
    """Beat-synchronous forward filter over (meter, position in the bar): `beat()` at each beat gives its meter and
    position, `observe(downbeat probability)` of that beat once the network has heard it.

    `stay`: how surely the position moves on by one each beat; `meter_change`: odds of a new meter at a beat."""

    def __init__(self, meters=METERS, stay=0.98, meter_change=1e-3, sharpness=1.0):
        self.states = [(m, q) for m in meters for q in range(m)]
        n = len(self.states)
        self.transition = np.zeros((n, n))
        for i, (m, q) in enumerate(self.states):
            for j, (m2, q2) in enumerate(self.states):
                if m2 == m:
                    self.transition[i, j] = stay if q2 == (q + 1) % m else (1 - stay) / (m - 1)
                elif q2 == 0:
                    self.transition[i, j] = meter_change   # a new meter starts a bar
            self.transition[i] /= self.transition[i].sum()
        self.is_downbeat = np.array([q == 0 for _, q in self.states])
        self.meters = meters
        self.meter_of = np.array([m for m, _ in self.states])
        meter_prior = np.where(self.meter_of == 3, 0.3, 0.7)    # most music is in 4
        self.prior = meter_prior / self.meter_of
        self.sharpness = sharpness
        self.reset()

    def reset(self):
        self.belief = self.prior.copy()   # about the latest beat

    def beat(self) -> tuple[int, int]:
        """A beat: the belief moves on one beat. This beat's (beats per bar, position), before its evidence."""
        belief = self.belief @ self.transition
        self.belief = belief / belief.sum()
        meter = max(self.meters, key=lambda m: self.belief[self.meter_of == m].sum())
        candidates = np.flatnonzero(self.meter_of == meter)
        return meter, self.states[int(candidates[np.argmax(self.belief[candidates])])][1]

    def observe(self, downbeat: float):
        """The downbeat probability the network gave the latest beat."""
        d = min(max(downbeat, 1e-3), 1 - 1e-3)
        belief = self.belief * np.where(self.is_downbeat, d, 1.0 - d) ** self.sharpness
        self.belief = belief / belief.sum()


class TrackChangeDetector:
    """A new track: the last `short_s` of mean log-mel spectrum far from the `long_s` before it, compared with how
    far it usually is (a running mean and spread of that distance)."""

    def __init__(self, fps=FPS, short_s=1.0, long_s=8.0, threshold=4.0, refractory_s=8.0):
        self.short_rate, self.long_rate = 1.0 / (short_s * fps), 1.0 / (long_s * fps)
        self.threshold = threshold
        self.refractory = int(refractory_s * fps)
        self.short = self.long = None
        self.mean_distance, self.mean_square = 0.0, 0.0
        self.frames = 0
        self.since_change = 0

    def update(self, spectra: np.ndarray) -> bool:
        """Feed a hop's log-mel frames; True when a track change is detected."""
        for frame in spectra:
            self.frames += 1
            self.since_change += 1
            if self.short is None:
                self.short, self.long = frame.copy(), frame.copy()
            self.short += self.short_rate * (frame - self.short)
            self.long += self.long_rate * (frame - self.long)
        distance = float(np.mean(np.abs(self.short - self.long)))
        spread = np.sqrt(max(self.mean_square - self.mean_distance ** 2, 1e-4))
        changed = (self.since_change > self.refractory and self.frames > self.refractory
                   and distance > self.mean_distance + self.threshold * spread)
        rate = SUB_HOPS * self.long_rate
        self.mean_distance += rate * (distance - self.mean_distance)
        self.mean_square += rate * (distance ** 2 - self.mean_square)
        if changed:
            self.since_change = 0
            self.long = self.short.copy()   # the new track is the reference from now on
        return changed


class BeatTracker:
    """Online beat tracker: feed consecutive mono hops of `hop` samples at `sample_rate`, get a BeatState each.

    Bad input: a hop of the wrong length raises OnbeatError (a wiring bug); NaN/inf samples are replaced by 0
    and counted in `.bad_samples` (a glitching sound card must not stop the show).
    """

    def __init__(self, sample_rate=ANALYSIS_RATE, hop=HOP, detect_track_changes=True, network=MODEL_PATH,
                 **filter_options):
        if sample_rate != ANALYSIS_RATE or hop != HOP:
            raise OnbeatError(f"beat tracker: expects {HOP}-sample hops at {ANALYSIS_RATE} Hz, "
                              f"got {hop} at {sample_rate}")
        self.sample_rate, self.hop = sample_rate, hop
        self.front_end = SpectralFrontEnd()
        self.network = BeatActivation(network)
        self.filter = TempoPhaseFilter(**filter_options)
        self.bars = BarTracker()
        self.changes = TrackChangeDetector() if detect_track_changes else None
        self.track_changes = 0
        self.frames = 0                      # activation frames so far
        history = int(2 * FPS)
        self.recent = np.zeros((history, 2))  # the last frames' (beat, downbeat) activation
        self.samples_seen = 0
        self.bad_samples = 0
        self.last_beat = None
        self.bar_position, self.beats_per_bar = 0, BEATS_PER_BAR
        self.pending_bars = []               # emitted beats whose downbeat evidence is still to come
        self.confidence = 0.0
        self.level = 0.0                     # slow signal level, for the confidence's presence factor

    def process(self, mono_hop) -> BeatState:
        samples = np.asarray(mono_hop, dtype=np.float32).reshape(-1)
        if samples.shape[0] != self.hop:
            raise OnbeatError(f"beat tracker: got a block of {samples.shape[0]} samples, expected {self.hop}")
        if not np.isfinite(samples).all():
            bad = ~np.isfinite(samples)
            self.bad_samples += int(bad.sum())
            samples = np.where(bad, 0.0, samples).astype(np.float32)
        features = self.front_end.process(samples)
        return self.follow(float(np.sqrt(np.mean(samples ** 2))), features, self.network.process(features))

    def follow(self, rms: float, features: np.ndarray, activation: np.ndarray) -> BeatState:
        """The tracking after the network: one hop's RMS, front-end features and (beat, downbeat) activation.
        (The evaluation replays cached activations through this to tune the filters cheaply.)"""
        hop_start = self.samples_seen / self.sample_rate
        self.samples_seen += self.hop
        now = self.samples_seen / self.sample_rate
        if self.changes is not None and self.changes.update(features[:, BANDS:2 * BANDS]):
            self.filter.reset()
            self.bars.reset()
            self.track_changes += 1
        self.recent = np.concatenate([self.recent[SUB_HOPS:], activation])
        for beat in activation[:, 0]:
            self.filter.update(float(beat))
        self.frames += SUB_HOPS
        self._observe_bars()
        position, interval = self.filter.best()
        period = interval / FPS
        last_estimate = float(frame_time(self.frames - 1)) - position / FPS
        next_estimate = last_estimate + period
        is_beat = False
        for candidate in (last_estimate, next_estimate):
            fresh = self.last_beat is None or candidate > self.last_beat + 0.6 * period
            if fresh and hop_start - 0.05 < candidate <= now:
                self._emit(min(max(candidate, hop_start + 1e-6), now))
                is_beat = True
        self.level = 0.97 * self.level + 0.03 * rms
        upcoming = next_estimate if next_estimate > now else next_estimate + period
        if self.last_beat is not None and upcoming < self.last_beat + 0.6 * period:
            upcoming = self.last_beat + period
        return self._state(now, is_beat, period, upcoming)

    def _emit(self, time):
        self.last_beat = time
        # the bar filter moves on at the beat; its evidence (the downbeat probability) comes a few frames later
        self.beats_per_bar, self.bar_position = self.bars.beat()
        self.pending_bars.append(time)

    def _observe_bars(self):
        """Downbeat evidence for emitted beats whose frames the network has now heard (2 frames after theirs)."""
        while self.pending_bars:
            beat_frame = int(label_frames(self.pending_bars[0]))
            if beat_frame + 2 >= self.frames:
                break
            self.pending_bars.pop(0)
            start = beat_frame - 1 - (self.frames - len(self.recent))
            window = self.recent[max(start, 0):max(start + 4, 0)]
            if not len(window):
                continue
            self.bars.observe(float(window[:, 1].max()))
            self.confidence = 0.8 * self.confidence + 0.2 * float(window[:, 0].max())

    def _state(self, now, is_beat, period, upcoming):
        next_beats = upcoming + period * np.arange(4)
        last = self.last_beat if self.last_beat is not None else upcoming - period
        phase = float(np.clip((now - last) / max(upcoming - last, 1e-6), 0.0, 1.0 - 1e-6))
        presence = float(np.clip(self.level / 1e-3, 0.0, 1.0))  # fades out below -60 dBFS
        return BeatState(time=now, bpm=60.0 / period, phase=phase, bar_position=self.bar_position,
                         is_beat=is_beat, is_downbeat=is_beat and self.bar_position == 0,
                         confidence=float(self.confidence * presence), next_beats=next_beats,
                         last_beat=self.last_beat if self.last_beat is not None else float("nan"),
                         beats_per_bar=self.beats_per_bar)
