"""The beat tracker's ears: a causal spectral front end and a small recurrent network that says, for every
11 ms frame, how likely a beat and a downbeat sound there.

`SpectralFrontEnd` turns each 735-sample hop into `SUB_HOPS` frames of `FRONT_END_DIM` numbers: log-mel
spectra from a 1024- and a 2048-sample window ending at each sub-hop (46 and 93 ms: onsets and bass/harmony)
and their positive change since `DIFF_LAG` frames before (max-filtered over neighbouring bands, as superflux,
so vibrato is not an onset). The input is normalised to its running peak level (`onbeat.ear.level`), so
the network hears a quiet microphone and a loud file alike.

`BeatActivation` runs the exported network (`beat_activation.onnx`, trained by `onbeat.models.beat_net` on
synthesized songs with exact labels; MIT like the rest of onbeat) in onnxruntime, one hop per call, carrying
its recurrent state from call to call. The network is causal: a frame's output depends on the past alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import ANALYSIS_RATE, HOP
from onbeat.ear.filterbanks import mel_filterbank
from onbeat.ear.level import PeakLevel, power_db

SUB_HOPS = 3                       # frames per hop: 735 / 3 = 245 samples = 11.1 ms (90 frames/s)
SUB_HOP = HOP // SUB_HOPS
FPS = ANALYSIS_RATE / SUB_HOP
WINDOWS = (1024, 2048)
BANDS = 48
DIFF_LAG = 2                       # frames between the spectra whose rise is the onset feature
FRONT_END_DIM = 2 * BANDS * len(WINDOWS)
LEVEL_DB = -20.0                   # the running peak level the front end scales its input to
COMPRESSION = 1000.0
# A beat's frame is the first whose window ends at least one frame after the beat: the network is trained to
# fire there, so a frame's beat sounded on average 1.5 frames before the frame's end.
DETECTION_DELAY_S = 1.5 * SUB_HOP / ANALYSIS_RATE
MODEL_PATH = Path(__file__).with_name("beat_activation.onnx")


def label_frames(times: np.ndarray) -> np.ndarray:
    """The frame index (0 = the frame ending after the first sub-hop) each event time (s) is taught at."""
    return np.ceil(np.asarray(times) * FPS).astype(int)


def frame_time(index: int | np.ndarray) -> np.ndarray:
    """Audio time (s) of the beat a frame fires for: the inverse of `label_frames`, on average."""
    return (np.asarray(index) + 1) / FPS - DETECTION_DELAY_S


class SpectralFrontEnd:
    """Causal log-mel frames for the activation network; `process(hop)` -> (SUB_HOPS, FRONT_END_DIM) float32."""

    def __init__(self):
        self.level = PeakLevel()
        self.buffer = np.zeros(max(WINDOWS) + HOP - SUB_HOP, dtype=np.float32)
        self.windows = [np.hanning(size + 1)[:-1].astype(np.float32) for size in WINDOWS]
        self.filters = [mel_filterbank(BANDS, n_fft=size).T.astype(np.float32) for size in WINDOWS]
        self.history = np.zeros((DIFF_LAG, 2 * BANDS), dtype=np.float32)   # the last log-mel frames
        # frame k of a hop ends at buffer position len - (SUB_HOPS - 1 - k) * SUB_HOP
        ends = len(self.buffer) - SUB_HOP * np.arange(SUB_HOPS - 1, -1, -1)
        self.indices = [ends[:, None] - size + np.arange(size)[None, :] for size in WINDOWS]

    def process(self, hop: np.ndarray) -> np.ndarray:
        hop = np.asarray(hop, dtype=np.float32)
        gain = 10.0 ** ((LEVEL_DB - self.level.update(power_db(np.mean(hop.astype(np.float64) ** 2)))) / 20.0)
        self.buffer = np.concatenate([self.buffer[HOP:], hop * np.float32(gain)])
        spectra = []
        for indices, window, filters in zip(self.indices, self.windows, self.filters, strict=True):
            power = np.abs(np.fft.rfft(self.buffer[indices] * window, axis=1)) ** 2
            spectra.append(np.log1p(COMPRESSION * (power @ filters) / len(window)))
        log_mel = np.concatenate(spectra, axis=1)                              # (SUB_HOPS, 2 * BANDS)
        frames = np.concatenate([self.history, log_mel])
        previous = frames[:SUB_HOPS]                                           # DIFF_LAG frames before each
        widened = np.maximum(previous, np.maximum(np.roll(previous, 1, axis=1), np.roll(previous, -1, axis=1)))
        rise = np.maximum(log_mel - widened, 0.0)
        self.history = frames[-DIFF_LAG:]
        return np.concatenate([log_mel, rise], axis=1).astype(np.float32)


class BeatActivation:
    """The exported activation network, stateful: `process(features)` -> (frames, 2) beat and downbeat
    probabilities for consecutive frames."""

    def __init__(self, path: Path = MODEL_PATH):
        try:
            import onnxruntime
        except ImportError:
            raise OnbeatError("the beat tracker needs onnxruntime: pip install 'onbeat[cpu]'") from None
        if not Path(path).is_file():
            raise OnbeatError(f"{path}: beat activation model missing (reinstall onbeat)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1   # one small step per hop: threads would cost more than they save
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        state = self.session.get_inputs()[1]
        self.state = np.zeros([int(d) for d in state.shape], dtype=np.float32)
        self.trained_on = self.session.get_modelmeta().custom_metadata_map.get("trained_on", "not recorded")

    def process(self, features: np.ndarray) -> np.ndarray:
        probabilities, self.state = self.session.run(None, {"features": features[None], "state": self.state})
        return probabilities[0]
