"""The running peak level that makes the ear gain-robust (a mic at -20 dB and a file at 0 dB look alike)."""
import numpy as np

from onbeat.core.music import FEATURE_FPS

QUIETEST_PEAK_DB = -50.0         # dBFS: music peaking below this is treated as quiet, not boosted to full scale
LEVEL_RELEASE_DB_PER_S = 1.0
EPS = 1e-12


def power_db(power):
    return 10.0 * np.log10(power + EPS)


class PeakLevel:
    """Peak level (dBFS) of the hop RMS: follows any rise at once, falls by `LEVEL_RELEASE_DB_PER_S`, never below
    `QUIETEST_PEAK_DB` (faint noise is not boosted to full scale). Fed one hop (1/30 s) at a time."""

    def __init__(self):
        self.db = QUIETEST_PEAK_DB
        self.release_db = LEVEL_RELEASE_DB_PER_S / FEATURE_FPS

    def update(self, rms_db: float) -> float:
        self.db = max(self.db - self.release_db, rms_db, QUIETEST_PEAK_DB)
        return self.db
