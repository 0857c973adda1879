"""Pieces every importer shares: the Sequence record, frame and rotation geometry, grounding, file checks."""
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.skeleton import PARENTS, REST_OFFSETS, rest_positions

TARGET_FPS = 30
X_AXIS, Y_AXIS = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


@dataclass
class Sequence:
    """One dance of a data set, as `iter_dataset` yields it."""
    name: str
    source: str  # "ballroom", "motorica", "bvh", "aist"
    style: str  # e.g. "waltz", "krump"; "" when unknown
    motion: Motion  # 30 fps
    audio_path: Path = None  # music aligned with frame 0, or None
    take: str = None  # sequences of one take (Motorica's _00/_01 phases) share it; the split keeps them together
    suspect: bool = False  # the data set flags it (ballroom: frame count does not match the song)


def unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def frame(primary, secondary):
    """(..., 3, 3) orthonormal frame whose columns are the primary direction, the secondary made perpendicular
    to it, and their cross product. A secondary parallel to the primary falls back to any perpendicular."""
    e1 = unit(primary)
    s = secondary - np.sum(secondary * e1, -1, keepdims=True) * e1
    helper = np.where(np.abs(e1[..., :1]) < 0.9, X_AXIS, Y_AXIS)
    fallback = np.cross(e1, helper)
    s = np.where(np.linalg.norm(s, axis=-1, keepdims=True) < 1e-9, fallback, s)
    e2 = unit(s)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)


def align(rest_primary, rest_secondary, primary, secondary):
    """Quaternion of the rotation that takes the rest primary direction exactly onto `primary` and turns the rest
    secondary direction into the plane of (`primary`, `secondary`): swing from one vector, twist from a plane."""
    rest = frame(np.asarray(rest_primary, float), np.asarray(rest_secondary, float))
    return R.quat_from_matrix(frame(primary, secondary) @ np.swapaxes(rest, -1, -2))


def locals_from_globals(world):
    """(T, 24, 4) local rotations from world ones."""
    local = world.copy()
    for j, p in enumerate(PARENTS):
        if p >= 0:
            local[:, j] = R.quat_multiply(R.quat_conjugate(world[:, p]), world[:, j])
    return local


def ground(motion):
    """Shift the motion up or down so the feet stand on y = 0: the lowest foot joint of each frame is at the floor
    in the typical frame (its 5th percentile over the sequence, so jumps and a few bad frames do not count)."""
    root = motion.root_translation - np.array([0.0, np.percentile(motion.lowest_foot_height(), 5), 0.0])
    return Motion(motion.fps, root, motion.rotations, motion.offsets)


def track_floor(motion, seconds=2.0):
    """Remove slow vertical drift: the floor under a dancer who always keeps a foot down (ballroom) is the low
    end (10th percentile) of the lowest foot over a few seconds, smoothed; the root follows it down or up."""
    from scipy.ndimage import gaussian_filter1d, percentile_filter
    lowest = motion.lowest_foot_height()
    window = max(3, int(seconds * motion.fps))
    floor = gaussian_filter1d(percentile_filter(lowest, 10, size=window, mode="nearest"), window / 4, mode="nearest")
    root = motion.root_translation - floor[:, None] * Y_AXIS
    return Motion(motion.fps, root, motion.rotations, motion.offsets)


def finish(motion, fps=TARGET_FPS):
    """Common last steps of every importer: continuous quaternions, grounded, resampled."""
    motion = Motion(motion.fps, motion.root_translation, R.quat_make_continuous(motion.rotations), motion.offsets)
    motion = ground(motion)
    return motion if fps is None else motion.resample(fps)


def check_finite(path, name, array):
    bad = ~np.isfinite(array)
    if bad.any():
        raise OnbeatError(f"{path}: {name} has NaN or infinite values (first at frame {np.argwhere(bad)[0][0]})")


def read_pickle(path, what):
    """A pickle's content; OnbeatError for missing, truncated or foreign files. (Unpickling runs code from the
    file: AIST++ and Motorica ship as pickles, so open only files from a source you trust.)"""
    try:
        with open(path, "rb") as f:
            if what == "pandas":
                import pandas as pd
                return pd.read_pickle(f)
            return pickle.load(f, encoding="latin1")
    except OSError as e:
        raise OnbeatError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # unpickling raises almost anything on a broken file
        raise OnbeatError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def sided(table):
    """Expand '{S}' (source side word) / '{side}' (SMPL side) templates for both sides."""
    out = {}
    for source, smpl in table.items():
        for words in (dict(S="Left", s="L", side="Left"), dict(S="Right", s="R", side="Right")):
            out[source.format(**words)] = smpl.format(**words)
    return out


SMPL_REST = rest_positions(REST_OFFSETS, PARENTS)
