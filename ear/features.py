"""Music features at the motion frame rate (30 fps), the same numbers online (hop by hop) and offline.

Any input rate is resampled to 22050 Hz by a streaming polyphase FIR whose output does not depend on how the
input was chunked; stereo is averaged to mono. Row i describes the hop of audio [i/30, (i+1)/30) s (motion
frame i): its spectrum comes from the last 2048 samples (93 ms) ending at the end of that hop, so the row is
causal, and its beat columns are evaluated at the row's time i/30 s.

Gain robustness (a mic at -20 dB and a file at 0 dB look alike): levels are in dB relative to a running peak
level (of the hop RMS) that follows any rise at once and falls by 1 dB/s (`LEVEL_RELEASE_DB_PER_S`), never below
-50 dBFS (`QUIETEST_PEAK_DB`: faint noise is not boosted to full scale; digital silence gives 0). The beat tracker
is fed the hops scaled to that level too. Onset strength, flux and chroma are level-free ratios.

The columns are listed in `onbeat.core.music`. Columns 23-27 come from the `BeatTracker` run inside the extractor
and are computed by `beat_columns`, which `future_features` shares to extrapolate them over predicted beats (the
live model generates ahead of the sound).
"""
from math import gcd

import numpy as np
from scipy.signal import firwin

from onbeat.core.beat_grid import beat_columns_at
from onbeat.core.music import ANALYSIS_RATE, BEAT_COLUMNS, FEATURE_DIM, FEATURE_FPS, HOP
from onbeat.ear.beats import BeatTracker
from onbeat.ear.harmony import chroma_filterbank
from onbeat.ear.sources import check_format, read_audio
from onbeat.ear.spectrum import SlidingSpectrum, triangular_filterbank

N_FFT = 2048
QUIETEST_PEAK_DB = -50.0         # dBFS: music peaking below this is treated as quiet, not boosted to full scale
RANGE_DB = 60.0                  # dynamic range mapped onto 0..1 below the running peak level
LEVEL_RELEASE_DB_PER_S = 1.0
ONSET_SCALE_DB = 6.0
CHROMA_GATE_DB = 50.0            # chroma is zero for hops this far below the peak level
TRACKER_LEVEL_DB = -20.0         # the beat tracker hears the music with its running peak at this level
EPS = 1e-12


# --- resampling --------------------------------------------------------------------------------------------

class Resampler:
    """Streaming polyphase FIR resampler (scipy.signal.resample_poly's Kaiser-windowed sinc), zero delay.

    Output sample k is sum_n h[k*down + half - n*up] * x[n], exactly what resample_poly computes, so it is
    centred on input time k/out_rate and depends only on absolute sample indices: any chunking gives the same
    output. It waits for `half/up` input samples of look-ahead (0.45 ms at 44.1/48 kHz)."""

    def __init__(self, in_rate, out_rate, half_width=10):
        g = gcd(int(in_rate), int(out_rate))
        self.up, self.down = int(out_rate) // g, int(in_rate) // g
        self.half = half_width * max(self.up, self.down)
        self.produced = 0                             # output samples emitted so far
        if self.identity:
            return
        taps = firwin(2 * self.half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self.per_phase = -(-len(taps) // self.up)
        taps = np.pad(taps, (0, self.per_phase * self.up - len(taps)))
        self.phases = taps.reshape(self.per_phase, self.up).T.copy()   # phases[p, m] = taps[p + m*up]
        self.buffer = np.zeros(self.per_phase - 1)   # input history; x[n < 0] = 0
        self.buffer_start = -(self.per_phase - 1)     # absolute input index of buffer[0]

    @property
    def identity(self):
        return self.up == self.down

    def process(self, x):
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            self.produced += len(x)
            return x
        self.buffer = np.concatenate([self.buffer, x])
        received = self.buffer_start + len(self.buffer)
        end = (received * self.up - 1 - self.half) // self.down + 1   # outputs whose newest input has arrived
        k = np.arange(self.produced, max(end, self.produced))
        out = np.concatenate([self._filter(part) for part in np.array_split(k, len(k) // 8192 + 1)])
        self.produced += len(k)
        keep_from = (self.produced * self.down + self.half) // self.up - (self.per_phase - 1)
        self.buffer = self.buffer[keep_from - self.buffer_start:]
        self.buffer_start = keep_from
        return out

    def _filter(self, k):
        """Output samples `k` (absolute indices) from the buffered input."""
        position = k * self.down + self.half
        newest, phase = position // self.up, position % self.up
        index = newest[:, None] - np.arange(self.per_phase)[None, :] - self.buffer_start
        return (self.buffer[index] * self.phases[phase]).sum(axis=1)

    def input_for(self, outputs):
        """Input samples needed (beyond those given) to produce `outputs` more output samples."""
        if self.identity:
            return max(0, outputs)
        needed = ((self.produced + outputs - 1) * self.down + self.half) // self.up + 1
        return max(0, needed - (self.buffer_start + len(self.buffer)))


# --- filterbanks ---------------------------------------------------------------------------------------------

def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_filterbank(bands, n_fft=N_FFT, sample_rate=ANALYSIS_RATE, fmin=30.0, fmax=11000.0):
    """(bands, n_fft//2 + 1) triangular filters, evenly spaced in (HTK's) mel, each summing the power it covers."""
    edges = 700.0 * (10 ** (np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), bands + 2) / 2595.0) - 1.0)
    return triangular_filterbank(edges, n_fft, sample_rate)


# --- beat columns --------------------------------------------------------------------------------------------

def beat_columns(state, times):
    """The beat columns (len(times), 5) at `times` (s) from one BeatState's beat grid: its last beat, its
    predicted next beats, then its period beyond them. Used for the live rows and for the future rows alike."""
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    period = 60.0 / state.bpm if state.bpm > 0 else 0.5
    upcoming = np.asarray(state.next_beats, dtype=np.float64).reshape(-1)
    last = state.last_beat if np.isfinite(state.last_beat) else (upcoming[0] if len(upcoming) else state.time) - period
    beats = np.concatenate([[last], upcoming[upcoming > last]])
    # extend the grid by whole periods until it brackets every requested time
    back = max(0, int(np.ceil((beats[0] - times.min()) / period)))
    ahead = max(0, int(np.floor((times.max() - beats[-1]) / period)) + 1)
    beats = np.concatenate([beats[0] - period * np.arange(back, 0, -1), beats,
                            beats[-1] + period * np.arange(1, ahead + 1)])
    return beat_columns_at(times, beats, state.bar_position + np.arange(len(beats)) - back)


def row_time(state):
    """The time of the row made from the hop that ended at `state.time` (the hop's start)."""
    return state.time - HOP / ANALYSIS_RATE


def future_features(last_row, beat_state, n_frames):
    """(n_frames, FEATURE_DIM) float32 for the frames after `last_row`: its audio descriptors held, the beat
    columns extrapolated over `beat_state`'s predicted beats, so moves can be placed on beats before they sound."""
    rows = np.repeat(np.asarray(last_row, dtype=np.float32)[None, :], n_frames, axis=0)
    times = row_time(beat_state) + np.arange(1, n_frames + 1) / FEATURE_FPS
    rows[:, BEAT_COLUMNS] = beat_columns(beat_state, times)
    return rows


# --- the extractor -------------------------------------------------------------------------------------------

def _db(power):
    return 10.0 * np.log10(power + EPS)


class FeatureExtractor:
    """Feed blocks of any size at `sample_rate` (mono (n,) or (n, channels)); get the rows completed so far.

    `.states` holds the BeatState of each row returned by the latest `process`/`finish` call; `.frames` counts
    rows emitted. Non-finite samples are replaced by 0 and counted in `.bad_samples`."""

    def __init__(self, sample_rate):
        self.sample_rate = int(sample_rate)
        check_format(self.sample_rate, 1, "audio")  # the resampler's filter grows with an odd rate
        self.resampler = Resampler(self.sample_rate, ANALYSIS_RATE)
        self.tracker = BeatTracker(ANALYSIS_RATE, HOP)
        window = np.hanning(N_FFT + 1)[:-1]
        self.spectrum = SlidingSpectrum(window)   # of the last N_FFT analysis samples
        self.power_scale = 2.0 / (N_FFT * np.sum(window ** 2))   # sum of the spectrum ~ mean square
        self.mel8 = mel_filterbank(8)
        self.mel40 = mel_filterbank(40)
        self.chroma = chroma_filterbank(N_FFT)
        self.release_db = LEVEL_RELEASE_DB_PER_S / FEATURE_FPS
        self.pending = np.zeros(0)            # resampled samples not yet a whole hop
        self.level_db = QUIETEST_PEAK_DB
        self.previous_mel_db = None
        self.previous_magnitude = np.zeros(N_FFT // 2 + 1)
        self.frames = 0
        self.bad_samples = 0
        self.states = []

    def process(self, samples):
        samples = np.asarray(samples, dtype=np.float64)
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples.reshape(-1)
        bad = ~np.isfinite(mono)
        if bad.any():
            self.bad_samples += int(bad.sum())
            mono = np.where(bad, 0.0, mono)
        self.pending = np.concatenate([self.pending, self.resampler.process(mono)])
        hops = len(self.pending) // HOP
        rows = np.empty((hops, FEATURE_DIM), dtype=np.float32)
        self.states = []
        for i in range(hops):
            rows[i] = self._row(self.pending[i * HOP:(i + 1) * HOP])
        self.pending = self.pending[hops * HOP:]
        return rows

    def finish(self, total_frames):
        """Pad the stream with silence until `total_frames` rows exist; the rows (and `.states`) still missing."""
        missing = total_frames - self.frames
        if missing <= 0:
            self.states = []
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        needed = missing * HOP - len(self.pending)
        rows = self.process(np.zeros(self.resampler.input_for(needed)))
        self.states = self.states[:missing]
        return rows[:missing]

    def _row(self, hop):
        """The feature row of one hop of analysis-rate samples."""
        spectrum = self.spectrum.process(hop)
        rms_db = _db(np.mean(hop ** 2))
        self.level_db = max(self.level_db - self.release_db, rms_db, QUIETEST_PEAK_DB)
        gain = 10.0 ** ((TRACKER_LEVEL_DB - self.level_db) / 20.0)   # the beat tracker is gain-robust too
        state = self.tracker.process((hop * gain).astype(np.float32))
        self.states.append(state)
        self.frames += 1
        beats = beat_columns(state, [row_time(state)])[0]
        return np.concatenate([self._describe(rms_db, spectrum), beats])

    def _describe(self, rms_db, spectrum):
        """The audio columns (0-22) of the current frame, from its magnitude spectrum."""
        power = spectrum ** 2 * self.power_scale
        magnitude = np.sqrt(power)
        mel_db = np.maximum(_db(self.mel40 @ power), self.level_db - RANGE_DB)
        previous = mel_db if self.previous_mel_db is None else self.previous_mel_db
        onset = 1.0 - np.exp(-np.mean(np.maximum(mel_db - previous, 0.0)) / ONSET_SCALE_DB)
        flux = np.sum(np.maximum(magnitude - self.previous_magnitude, 0.0)) / (np.sum(magnitude) + EPS)
        self.previous_mel_db, self.previous_magnitude = mel_db, magnitude
        chroma = self.chroma @ power
        if rms_db < self.level_db - CHROMA_GATE_DB or chroma.max() <= EPS:
            chroma = np.zeros(12)
        else:
            chroma = chroma / chroma.max()
        return np.concatenate([[onset, self._relative(rms_db), flux], self._relative(_db(self.mel8 @ power)), chroma])

    def _relative(self, db):
        """dB -> 0..1: RANGE_DB below the running peak level .. at it."""
        return np.clip(1.0 + (db - self.level_db) / RANGE_DB, 0.0, 1.0)


def extract_file(path):
    """(features float32 (T, FEATURE_DIM), beat_times) for a whole file, by the same code as the live path:
    T = ceil(duration * 30), row i describes audio time i/30 s; the end is padded with silence."""
    samples, sample_rate = read_audio(path)
    extractor = FeatureExtractor(sample_rate)
    total = -(-len(samples) * FEATURE_FPS // sample_rate)
    rows, beats = [], []
    for start in range(0, len(samples), 1 << 16):
        rows.append(extractor.process(samples[start:start + (1 << 16)]))
        beats += [s.last_beat for s in extractor.states if s.is_beat]
    rows.append(extractor.finish(total))
    beats += [s.last_beat for s in extractor.states if s.is_beat]
    return np.concatenate(rows)[:total], np.array(beats)
