"""The motion representation the choreographers learn: one float32 row of POSE_DIM numbers per frame.

Layout of a row (POSE_DIM = 151):

    [0:2]     root ground velocity (x, z) in m/s, expressed in the heading frame of the *previous* frame
    [2]       root height y (metres, absolute)
    [3:147]   24 x 6D local rotations (`rotations.matrix_to_6d`), joint order of `skeleton.JOINT_NAMES`;
              the root's (joint 0) rotation is expressed relative to the previous frame's heading, so its yaw
              part carries the heading's turn rate and the trajectory can be integrated without a 4th root dim
    [147:151] foot contacts (0/1) of `skeleton.FOOT_JOINTS` (left ankle, right ankle, left foot, right foot)

The heading is the yaw of the root's forward (+z) axis projected on the ground. Everything in a row is
invariant to where the dancer stands and which way they face, which is what lets a model continue a dance from
any place. `decode` integrates the root from a `RootState` (position and heading *before* the first row);
`root_state(motion)` gives the state after a motion's last frame, so slices decode one after another.

Numpy only: the live engine decodes with this module and needs no torch.
"""
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.skeleton import FOOT_JOINTS, MIRROR_INDEX, NUM_JOINTS, REST_OFFSETS, rest_positions

ROOT_DIMS = 3
ROTATION_SLICE = slice(ROOT_DIMS, ROOT_DIMS + 6 * NUM_JOINTS)
CONTACT_SLICE = slice(ROTATION_SLICE.stop, ROTATION_SLICE.stop + len(FOOT_JOINTS))
POSE_DIM = CONTACT_SLICE.stop  # 151

# A foot joint touches the floor when it is this close to its lowest height in the sequence and this slow.
CONTACT_HEIGHT = 0.05  # m
CONTACT_SPEED = 0.6  # m/s

_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])


@dataclass
class RootState:
    """Where the root is and which way it faces; `decode` starts from it."""
    position: np.ndarray  # (3,) metres; only x and z are used (the height is in every row)
    heading: float  # yaw in radians, 0 = facing +z


def heading_angles(root_rotations: np.ndarray) -> np.ndarray:
    """(T,) yaw of the root's forward axis on the ground plane, from (T, 4) root quaternions."""
    forward = R.quat_apply(root_rotations, np.broadcast_to(_FORWARD, root_rotations.shape[:-1] + (3,)))
    return np.arctan2(forward[..., 0], forward[..., 2])


def yaw_quat(angle: np.ndarray) -> np.ndarray:
    """(..., 4) rotations about the up axis by `angle` (radians, any shape): a heading as a quaternion."""
    angle = np.asarray(angle, dtype=np.float64)
    return R.quat_from_axis_angle(angle[..., None] * _UP)


def start_state(motion: Motion) -> RootState:
    """The state before frame 0 that makes `decode(encode(motion), fps, start_state(motion))` reproduce `motion`
    (frame -1 is extrapolated: the first row's velocity is the first frame-to-frame step)."""
    p = motion.root_translation
    step = p[1] - p[0] if len(p) > 1 else np.zeros(3)
    return RootState(p[0] - step, float(heading_angles(motion.rotations[0, 0])))


def root_state(motion: Motion) -> RootState:
    """The state after the motion's last frame: pass it as `start` to decode the next slice."""
    return RootState(motion.root_translation[-1].copy(), float(heading_angles(motion.rotations[-1, 0])))


def canonical(motion: Motion) -> Motion:
    """The same dance on the canonical skeleton (`skeleton.REST_OFFSETS`): rotations kept, root translation scaled
    by the ratio of rest hip heights, so a tall dancer's pelvis height and stride shrink with their legs."""
    if np.allclose(motion.offsets, REST_OFFSETS):
        return motion
    scale = _rest_hip_height(REST_OFFSETS) / _rest_hip_height(motion.offsets)
    return Motion(motion.fps, motion.root_translation * scale, motion.rotations)


def _rest_hip_height(offsets):
    """Height of the pelvis above the lowest foot joint in the rest pose."""
    heights = rest_positions(offsets)[:, 1]
    return heights[0] - heights[list(FOOT_JOINTS)].min()


def encode(motion: Motion, contacts: np.ndarray | None = None) -> np.ndarray:
    """(T, POSE_DIM) float32 rows of `motion` (at its own fps; the datasets resample to 30 fps first), taken
    onto the canonical skeleton first (see `canonical`). `contacts` (T, 4) replaces the detected foot contacts."""
    motion = canonical(motion)
    velocity, root_local = _root_rows(motion.root_translation, motion.rotations[:, 0], motion.fps,
                                      start_state(motion))
    local = motion.rotations.copy()
    local[:, 0] = root_local
    out = np.concatenate([
        velocity, motion.root_translation[:, 1:2],
        R.quat_to_6d(local).reshape(len(local), -1),
        foot_contacts(motion) if contacts is None else contacts,
    ], axis=1)
    return out.astype(np.float32)


def _root_rows(root_translation, root_q, fps, start):
    """The root's part of the rows: ground velocity (T, 2) in each previous heading frame and the root rotation
    (T, 4) relative to that heading, for world root positions and rotations after `start`."""
    heading = heading_angles(root_q)
    previous_heading = np.concatenate([[start.heading], heading[:-1]])
    to_previous = R.quat_conjugate(yaw_quat(previous_heading))  # world -> previous heading frame
    positions = np.concatenate([np.asarray(start.position, np.float64)[None], root_translation])
    step = np.diff(positions, axis=0) * np.array([1.0, 0.0, 1.0])
    velocity = R.quat_apply(to_previous, step) * fps
    return velocity[:, [0, 2]], R.quat_multiply(to_previous, root_q)


def _root_world(array, root_local, fps, start):
    """Inverse of `_root_rows`: world root positions (T, 3) (height from the rows) and rotations (T, 4)."""
    # Each row's root rotation is relative to the previous frame's heading, and turning by a yaw adds to the
    # heading, so the headings are a running sum of the rows' own yaws.
    heading = start.heading + np.cumsum(heading_angles(root_local))
    previous = np.concatenate([[start.heading], heading[:-1]])
    to_world = yaw_quat(previous)  # each previous heading frame -> world
    velocity = np.stack([array[:, 0], np.zeros(len(array)), array[:, 1]], axis=1) / fps
    root = np.asarray(start.position, dtype=np.float64) + np.cumsum(R.quat_apply(to_world, velocity), axis=0)
    root[:, 1] = array[:, 2]
    return root, R.quat_multiply(to_world, root_local)


def decode(array: np.ndarray, fps: float, start: RootState | None = None) -> Motion:
    """A `Motion` from (T, POSE_DIM) rows, integrating the root from `start` (default: origin, facing +z); the
    rows' foot contacts come with it (`Motion.contacts`)."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != POSE_DIM:
        raise OnbeatError(f"motion rows must have shape (frames, {POSE_DIM}), got {array.shape}")
    start = start or RootState(np.zeros(3), 0.0)
    count = len(array)
    rotations = R.quat_from_6d(array[:, ROTATION_SLICE].reshape(count, NUM_JOINTS, 6))
    root, rotations[:, 0] = _root_world(array, rotations[:, 0], fps, start)
    return Motion(fps, root, R.quat_make_continuous(rotations), contacts=array[:, CONTACT_SLICE])


def foot_contacts(motion: Motion) -> np.ndarray:
    """(T, 4) 0/1: each foot joint is near its lowest height in the sequence and moving slowly."""
    feet = motion.positions()[:, list(FOOT_JOINTS)]
    height = feet[..., 1] - feet[..., 1].min(axis=0)
    speed = np.zeros(height.shape)
    if len(feet) > 1:
        step = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * motion.fps
        speed[1:] = step
        speed[0] = step[0]
    return ((height < CONTACT_HEIGHT) & (speed < CONTACT_SPEED)).astype(np.float32)


def retime(array: np.ndarray, positions: np.ndarray, fps: float) -> np.ndarray:
    """(len(positions), POSE_DIM) rows of the dance in `array` (T, POSE_DIM) sampled at fractional frame
    `positions` (increasing, within 0..T-1) and played at `fps`: positions 1/f frames apart stretch the dance f
    times (slower for f > 1), a data augmentation. The root is decoded to the world, its path interpolated and its
    rotation slerped, and encoded again, so velocities and the heading's turn rate change with the tempo; the
    joints' 6D rotations are interpolated and re-orthonormalised (adjacent frames: as good as slerp); contacts
    take the nearest frame."""
    array = np.asarray(array, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    step = positions[1] - positions[0] if len(positions) > 1 else 1.0
    lead = positions[0] - step >= 0  # one sample before: the first row's velocity and turn come out exact
    sampled = np.concatenate([[positions[0] - step], positions]) if lead else positions
    i0 = np.clip(np.floor(sampled).astype(int), 0, len(array) - 1)
    i1 = np.minimum(i0 + 1, len(array) - 1)
    alpha = (sampled - i0)[:, None]
    origin = RootState(np.zeros(3), 0.0)
    root, root_q = _root_world(array, R.quat_from_6d(array[:, ROTATION_SLICE.start:ROTATION_SLICE.start + 6]), fps,
                               origin)
    root = (1 - alpha) * root[i0] + alpha * root[i1]
    root_q = R.quat_slerp(root_q[i0], root_q[i1], alpha[:, 0])
    six_d = ((1 - alpha) * array[i0, ROTATION_SLICE] + alpha * array[i1, ROTATION_SLICE]).reshape(-1, NUM_JOINTS, 6)
    six_d = R.matrix_to_6d(R.matrix_from_6d(six_d))
    start = RootState(2 * root[0] - root[1] if len(root) > 1 else root[0], float(heading_angles(root_q[0])))
    velocity, root_local = _root_rows(root, root_q, fps, start)  # frame -1 extrapolated, as `start_state` does
    six_d[:, 0] = R.quat_to_6d(root_local)
    out = np.concatenate([velocity, root[:, 1:2], six_d.reshape(len(sampled), -1),
                          array[np.round(sampled).astype(int).clip(0, len(array) - 1), CONTACT_SLICE]], axis=1)
    return out[int(lead):].astype(np.float32)


# Contacts swap sides too: (left ankle, right ankle, left foot, right foot) -> (right, left, right, left).
_CONTACT_MIRROR = np.array([1, 0, 3, 2])
# Reflecting x (P = diag(-1, 1, 1)) maps a rotation M to P M P; on its two 6D columns that is a sign pattern.
_SIX_D_MIRROR = np.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])


def mirror(array: np.ndarray) -> np.ndarray:
    """The same dance reflected left <-> right (x -> -x), directly on (T, POSE_DIM) rows: a data augmentation."""
    array = np.asarray(array)
    out = array.copy()
    out[:, 0] = -array[:, 0]
    six_d = array[:, ROTATION_SLICE].reshape(len(array), NUM_JOINTS, 6)
    out[:, ROTATION_SLICE] = (six_d[:, list(MIRROR_INDEX)] * _SIX_D_MIRROR).reshape(len(array), -1)
    out[:, CONTACT_SLICE] = array[:, CONTACT_SLICE][:, _CONTACT_MIRROR]
    return out


def normalizer(arrays: Iterable[np.ndarray], min_std: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (mean, std) float32 over a list of (T, POSE_DIM) arrays; tiny stds are floored so constant
    dimensions do not blow up."""
    stacked = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
    return stacked.mean(0).astype(np.float32), np.maximum(stacked.std(0), min_std).astype(np.float32)
