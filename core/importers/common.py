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
    audio_path: Path | None = None  # music aligned with frame 0, or None
    take: str | None = None  # sequences of one take (Motorica's _00/_01 phases) share it; the split keeps them together
    suspect: bool = False  # the data set flags it (ballroom: frame count does not match the song)
    corpus: str = ""  # the collection within the source ("perfume", "dancedb", "bandai-namco" for BVH); "" = source
    beats: object = None  # a `BeatGrid` of the music when the data set annotates one (Motorica), else None

    @property
    def collection(self):
        """The corpus, or the source when it is one collection (ballroom, motorica, aist)."""
        return self.corpus or self.source


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


def signed_angle(reference, direction, axis):
    """(...,) angle (radians) that turns `reference` towards `direction` about `axis` (both seen perpendicular to
    the axis): positive counter-clockwise looking down the axis."""
    axis = unit(axis)
    return np.arctan2(np.sum(np.cross(reference, direction) * axis, -1), np.sum(reference * direction, -1)
                      - np.sum(reference * axis, -1) * np.sum(direction * axis, -1))


# The twist smoother's penalties: on the twist's speed (small: a slow turn is free, but a long stretch without evidence
# drifts nowhere) and on its acceleration (a twist that follows the evidence turns smoothly, and follows a steady
# turn without lag). With no evidence at all (weight 0 throughout) the twist stays at its reference (TWIST_PRIOR).
TWIST_SPEED_COST = 0.1
TWIST_ACCELERATION_COST = 10.0
TWIST_PRIOR = 1e-4
TWIST_TRUST = 0.05  # weight at which an observation moves the running estimate halfway (for unwrapping)


def smooth_twist(angle, weight, axial=None):
    """(T,) twist angles (radians) that follow the observed `angle` where its `weight` (0..1, how well the frame
    defines it) is high and glide smoothly where it is low, without flips. `axial` (T,) bools mark observations
    that are an axis rather than a direction (angle and angle + pi say the same): they are read whichever way is
    nearer the twist so far.

    The observations are first unwrapped against a running estimate that only confident frames move (so noise
    while a limb is straight cannot add a turn of 2 pi), then smoothed by a weighted Whittaker smoother: minimise
    sum w (x - angle)^2 + TWIST_SPEED_COST |D x|^2 + TWIST_ACCELERATION_COST |D^2 x|^2 + TWIST_PRIOR |x|^2, one
    sparse (banded) solve."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve
    angle, weight = np.asarray(angle, np.float64), np.clip(np.asarray(weight, np.float64), 0.0, 1.0)
    period = np.where(np.zeros(len(angle), bool) if axial is None else axial, np.pi, 2 * np.pi)
    unwrapped, estimate = np.empty_like(angle), 0.0
    for t, (a, w) in enumerate(zip(angle, weight, strict=True)):
        unwrapped[t] = a + period[t] * np.round((estimate - a) / period[t])
        estimate += w / (w + TWIST_TRUST) * (unwrapped[t] - estimate)
    count = len(angle)
    system = sparse.diags(weight + TWIST_PRIOR)
    for order, cost in ((1, TWIST_SPEED_COST), (2, TWIST_ACCELERATION_COST)):
        if count > order:
            coefficients = np.diff(np.eye(order + 1), order, axis=0)[0]  # [-1, 1], [1, -2, 1]
            difference = sparse.diags([np.full(count - order, c) for c in coefficients], list(range(order + 1)),
                                      shape=(count - order, count))
            system = system + cost * (difference.T @ difference)
    return np.atleast_1d(spsolve(system.tocsc(), weight * unwrapped))


def locals_from_globals(world):
    """(T, 24, 4) local rotations from world ones."""
    local = world.copy()
    for j, p in enumerate(PARENTS):
        if p >= 0:
            local[:, j] = R.quat_multiply(R.quat_conjugate(world[:, p]), world[:, j])
    return local


def turn_angles(rotations):
    """(T-1, ...) angle (radians) each joint turns from one frame to the next, from (T, ..., 4) quaternions."""
    dot = np.abs(np.sum(rotations[1:] * rotations[:-1], axis=-1))
    return 2.0 * np.arccos(np.clip(dot, 0.0, 1.0))


def limit_turn_speed(rotations, fps, degrees_per_second, longest=0.25):
    """(T, J, 4) local rotations in which no joint turns faster than `degrees_per_second`: each faster step is
    spread over the fewest frames around it (slerp between the frames just outside) that bring it under the limit,
    at most `longest` seconds. A mocap solve's glitches (a twist flipping for a frame or two and back, a joint
    jumping away and returning) become a smooth turn, or vanish when it comes back; steps that cannot be spread
    within `longest` are left. Returns (rotations, number of steps spread)."""
    q = R.quat_make_continuous(rotations)
    step_limit = np.radians(degrees_per_second) / fps
    reach = max(1, int(round(longest * fps / 2)))
    repaired = 0
    for joint in range(q.shape[1]):
        track = q[:, joint]
        for step in np.flatnonzero(turn_angles(track) > step_limit):
            if turn_angles(track[step:step + 2])[0] <= step_limit:
                continue  # already spread by an earlier repair's window
            for half in range(1, reach + 1):
                first, last = max(step - half, 0), min(step + 1 + half, len(track) - 1)
                if turn_angles(track[[first, last]])[0] / (last - first) <= step_limit:
                    share = (np.arange(first + 1, last) - first) / (last - first)
                    track[first + 1:last] = R.quat_slerp(track[first], track[last], share)
                    repaired += 1
                    break
    return R.quat_make_continuous(q), repaired


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
    except Exception as e:  # noqa: BLE001 - unpickling raises almost anything on a broken file
        raise OnbeatError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def sided(table):
    """Expand '{S}' (source side word) / '{side}' (SMPL side) templates for both sides."""
    out = {}
    for source, smpl in table.items():
        for words in (dict(S="Left", s="L", side="Left"), dict(S="Right", s="R", side="Right")):
            out[source.format(**words)] = smpl.format(**words)
    return out


SMPL_REST = rest_positions(REST_OFFSETS, PARENTS)
