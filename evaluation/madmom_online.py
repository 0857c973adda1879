"""Run madmom's online beat tracker over audio files; executed by a separate Python that has madmom installed
(`onbeat bench beats --madmom PYTHON`), never imported by onbeat (madmom's models are CC BY-NC-SA).

    PYTHON madmom_online.py FILE... > beats.json

Prints one JSON object: {file: {"beats": [...], "cpu_s": seconds, "seconds": duration}}. The tracker is
RNNBeatProcessor(online=True) (unidirectional LSTMs on causal frames) + DBNBeatTrackingProcessor(online=True)
(forward algorithm), both madmom's own, run over each whole file.
"""
import json
import sys
import time

import numpy as np
import soundfile
from scipy.signal import resample_poly


def main(paths):
    from madmom.audio.signal import Signal
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    result = {}
    for path in paths:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        if rate != 44100:
            mono = resample_poly(mono, 44100, rate).astype(np.float32)
        began = time.process_time()
        activation = RNNBeatProcessor(online=True, origin="online")(Signal(mono, sample_rate=44100))
        beats = DBNBeatTrackingProcessor(fps=100, online=True).process_online(activation, reset=True)
        result[path] = {"beats": [float(b) for b in beats], "cpu_s": time.process_time() - began,
                        "seconds": len(mono) / 44100}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
