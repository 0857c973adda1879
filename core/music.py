"""The music-feature schema every layer shares: one row per motion frame at 30 fps, 28 columns.

The ear (`onbeat.ear.features`) computes the rows, online hop by hop or offline over a file; the models are
trained on them and the exported graphs store `FEATURE_NAMES` in their metadata, so a change here is a new
format (retrain and re-export). Row i describes the hop of audio [i/30, (i+1)/30) s at `ANALYSIS_RATE`.

| index | name | range | meaning |
|---|---|---|---|
| 0 | onset_strength | 0..1 | mean rise of 40 log-mel bands since the previous hop, 1 - exp(-dB / 6) |
| 1 | rms_energy | 0..1 | hop RMS in dB relative to the running peak level, 60 dB range (0 = 60 dB below, 1 = at peak) |
| 2 | spectral_flux | 0..1 | positive magnitude-spectrum change / total magnitude (new energy fraction) |
| 3-10 | mel_0..mel_7 | 0..1 | 8 mel bands 30 Hz - 11 kHz, dB relative to the running peak level, 60 dB range |
| 11-22 | chroma_0..chroma_11 | 0..1 | pitch-class energy (C, ..., B), 55 Hz - 5 kHz, divided by its max; 0 when quiet |
| 23 | beat_phase_sin | -1..1 | sin(2 pi phase), phase = fraction of the current beat interval elapsed at the row time |
| 24 | beat_phase_cos | -1..1 | cos(2 pi phase); (0, 1) on a beat |
| 25 | beat_distance | 0..1 | time to the nearest beat (past or ahead) / half a beat (Beat-It's): 0 on it, 1 half-way |
| 26 | bar_phase_sin | -1..1 | sin(2 pi (beat-in-bar + phase) / 4) |
| 27 | bar_phase_cos | -1..1 | cos of the same; (0, 1) on the guessed downbeat |

Columns 23-27 (`BEAT_COLUMNS`) come from the beat tracker; the rest (`AUDIO_COLUMNS`) describe the sound itself.

**The music mask.** Not every dance has both: Motorica ships beat annotations but no audio, the BVH dances have
neither (their beats are estimated from the motion). So beside each row goes a mask of `MASK_GROUPS`, one 0/1 value
per group, (..., 2) float32: `[audio, beat]`. A group's columns are only meaningful where its mask is 1; where it
is 0 they are zeros. Live, both are 1 while music plays and 0 in silence (`presence_mask`); all-zero music rows
with an all-zero mask mean "no music" as before. `column_mask(mask)` spreads it to the 28 columns.
"""
import numpy as np

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
AUDIO_COLUMNS = slice(0, FEATURE_NAMES.index("beat_phase_sin"))   # the descriptors of the sound itself
BEAT_COLUMNS = slice(AUDIO_COLUMNS.stop, FEATURE_DIM)              # the beat clock's columns
BEATS_PER_BAR = 4
MASK_GROUPS = ("audio", "beat")  # the music mask's columns: which feature groups a row really has
MASK_COLUMN_GROUP = np.array([0] * AUDIO_COLUMNS.stop + [1] * (FEATURE_DIM - BEAT_COLUMNS.start))  # each column's group


def column_mask(mask: np.ndarray) -> np.ndarray:
    """(..., FEATURE_DIM) 0/1 per feature column from a (..., len(MASK_GROUPS)) music mask."""
    return np.asarray(mask)[..., MASK_COLUMN_GROUP]


def presence_mask(music: np.ndarray) -> np.ndarray:
    """(..., len(MASK_GROUPS)) float32 mask of live feature rows: every group present where a row is not all zero."""
    present = (np.abs(np.asarray(music)).sum(-1, keepdims=True) > 0).astype(np.float32)
    return np.repeat(present, len(MASK_GROUPS), axis=-1)


def synthetic_music(seconds: float, bpm: float = 120.0, seed: int = 0) -> np.ndarray:
    """(frames, FEATURE_DIM) float32 feature rows: random audio descriptors on a steady beat grid (4/4), for
    checks and benchmarks of the models that need music of a known beat and no audio."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * FEATURE_FPS))
    music = rng.random((frames, FEATURE_DIM)).astype(np.float32)
    beats = np.arange(frames) / FEATURE_FPS * bpm / 60.0
    phase, bar_phase = beats % 1.0, (beats / BEATS_PER_BAR) % 1.0
    columns = {"beat_phase_sin": np.sin(2 * np.pi * phase), "beat_phase_cos": np.cos(2 * np.pi * phase),
               "beat_distance": 2 * np.minimum(phase, 1 - phase),
               "bar_phase_sin": np.sin(2 * np.pi * bar_phase), "bar_phase_cos": np.cos(2 * np.pi * bar_phase)}
    for name, values in columns.items():
        music[:, FEATURE_NAMES.index(name)] = values
    return music
