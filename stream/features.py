"""Music features at the motion frame rate (30 fps), the same numbers online (hop by hop) and offline.

Placeholder layout, to be completed by the ear's implementation.
"""
FEATURE_FPS = 30
ANALYSIS_RATE = 22050  # Hz; every source is resampled to this before analysis
HOP = ANALYSIS_RATE // FEATURE_FPS  # 735 samples = one motion frame

FEATURE_NAMES = (
    "onset_strength", "rms_energy", "spectral_flux",
    *(f"mel_{i}" for i in range(8)),
    *(f"chroma_{i}" for i in range(12)),
    "beat_phase_sin", "beat_phase_cos", "beat_distance",
    "bar_phase_sin", "bar_phase_cos",
)
FEATURE_DIM = len(FEATURE_NAMES)
