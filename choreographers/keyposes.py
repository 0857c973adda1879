"""Key poses: the named poses `/onbeat/keypose NAME` strikes, how close a dancer is to one (`reach_cm`), and the
landing that makes every choreographer hit the pose on its downbeat (`KeyPoseLanding`).

A key pose is a whole body: every joint's local rotation (SMPL-24, y up, +z forward, +x to the dancer's left),
the ones not named in `KEY_POSES` at the rest pose (SMPL's rest is a T-pose with straight legs), the pelvis
upright. Where the dancer stands and which way they face are not part of it: a pose is compared in the pelvis
frame (root translation and root heading removed), so it can be struck anywhere, facing anywhere.

Reach is defined once, here (`reach_cm`): the largest distance between the dancer's wrists and ankles and the key
pose's, both by forward kinematics in the pelvis frame. A pose is reached within `REACHED_CM`.
"""
import functools

import numpy as np

from onbeat.choreographers.feet import MAX_TURN_SPEED, lowest_sole
from onbeat.core import rotations as R
from onbeat.core.motion import Motion, forward_kinematics
from onbeat.core.representation import heading_angles, yaw_quat
from onbeat.core.skeleton import JOINT_INDEX, NUM_JOINTS

_X, _Y, _Z = np.eye(3)

# name -> {joint: rotations about the parent's axes (axis, degrees), applied first to last as intrinsic turns}.
KEY_POSES: dict[str, dict[str, tuple[tuple[np.ndarray, float], ...]]] = {
    "arms_up": {  # both arms raised in a V above the head, chin up
        "Left_Collar": ((_Z, 10.0),), "Right_Collar": ((_Z, -10.0),),
        "Left_Shoulder": ((_Z, 60.0),), "Right_Shoulder": ((_Z, -60.0),),
        "Head": ((_X, -10.0),),
    },
    "t_pose": {},  # the rest pose: arms out to the sides, legs straight
    "point": {  # the right arm points forward and up, the head follows it, the left arm hangs
        "Right_Shoulder": ((_Y, 60.0), (_Z, -30.0)), "Left_Shoulder": ((_Z, -75.0),),
        "Left_Elbow": ((_Y, -15.0),),
        "Spine3": ((_Y, -10.0),), "Head": ((_Y, -20.0), (_X, -5.0)),
    },
    "crouch": {  # a deep squat, feet flat and apart, back leaning forward, arms reaching forward for balance
        "Left_Hip": ((_Z, 10.0), (_X, -60.0)), "Right_Hip": ((_Z, -10.0), (_X, -60.0)),
        "Left_Knee": ((_X, 100.0),), "Right_Knee": ((_X, 100.0),),
        "Left_Ankle": ((_X, -40.0),), "Right_Ankle": ((_X, -40.0),),
        "Spine1": ((_X, 20.0),), "Spine3": ((_X, 10.0),), "Head": ((_X, -20.0),),
        "Left_Shoulder": ((_Y, -80.0), (_Z, -30.0)), "Right_Shoulder": ((_Y, 80.0), (_Z, 30.0)),
    },
}

KEY_POSE_JOINTS = tuple(JOINT_INDEX[n] for n in ("Left_Wrist", "Right_Wrist", "Left_Ankle", "Right_Ankle"))
REACHED_CM = 5.0  # a key pose counts as reached when every wrist and ankle is this close


@functools.cache
def key_pose_rotations(name: str) -> np.ndarray:
    """(24, 4) local rotations of the named key pose (the pelvis upright, facing +z). Read-only."""
    rotations = R.quat_identity((NUM_JOINTS,))
    for joint, turns in KEY_POSES[name].items():
        for axis, degrees in turns:
            j = JOINT_INDEX[joint]
            rotations[j] = R.quat_multiply(rotations[j], R.quat_from_axis_angle(np.radians(degrees) * axis))
    rotations.flags.writeable = False
    return rotations


def pelvis_frame_positions(rotations: np.ndarray) -> np.ndarray:
    """(..., 24, 3) joint positions of (..., 24, 4) local rotations in the pelvis frame: the pelvis at the origin,
    its heading (yaw) turned to +z; its tilt kept."""
    rotations = np.array(rotations, dtype=np.float64)
    rotations[..., 0, :] = R.quat_multiply(R.quat_conjugate(yaw_quat(heading_angles(rotations[..., 0, :]))),
                                           rotations[..., 0, :])
    return forward_kinematics(np.zeros(rotations.shape[:-2] + (3,)), rotations)


@functools.cache
def _key_pose_positions(name: str) -> np.ndarray:
    return pelvis_frame_positions(key_pose_rotations(name))


def reach_cm(rotations: np.ndarray, name: str) -> np.ndarray | float:
    """How far (cm) a dancer's pose is from the named key pose: the largest distance of a wrist or ankle from
    the key pose's, both in the pelvis frame (`pelvis_frame_positions`). `rotations` (..., 24, 4) local."""
    shown = pelvis_frame_positions(rotations)[..., KEY_POSE_JOINTS, :]
    distance = 100.0 * np.linalg.norm(shown - _key_pose_positions(name)[list(KEY_POSE_JOINTS)], axis=-1).max(-1)
    return float(distance) if np.ndim(distance) == 0 else distance


@functools.cache
def standing_height(name: str) -> float:
    """Pelvis height (m) that puts the key pose's lowest sole on the floor (y = 0, see `feet.lowest_sole`)."""
    return float(-lowest_sole(np.zeros((1, 3)), key_pose_rotations(name)[None])[0])


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class KeyPoseLanding:
    """Lands scheduled key poses on any choreographer's slices: turns every joint into the pose (the dancer's
    heading kept, the pelvis height to the pose's standing height) over `EASE_IN_S`, holds it exactly for the frames
    within `HOLD_S` of the hit time, and eases back into the dance over `EASE_OUT_S`, with smoothstep weights.

    Each joint turns the short way from the dance's rotation towards the pose's, and no joint turns from frame to
    frame faster than the dance's own does or `MAX_TURN_SPEED` (carried across slices): where the dance spins a
    joint through 180 degrees away from the pose (a wrist twisting) the short way flips sides, and the joint
    follows at that speed instead of popping. Near the hit the two sides are close, so the pose is still exact.

    Times are output seconds; a slice of `motion.num_frames` frames starting at `start` has frame i at
    start + i / fps. A hit must be scheduled at least `lead_seconds` after the start of the next slice this landing
    sees, so the whole ease-in is still ahead (the engine picks the downbeat that way)."""

    EASE_IN_S = 0.4
    HOLD_S = 1.0 / 30  # the frames of the hit +-1 show the pose exactly: any 60 Hz output sample near it does
    EASE_OUT_S = 0.5

    def __init__(self, fps: float):
        self.fps = fps
        self.scheduled: list[tuple[float, str]] = []  # (hit time, name)
        self._last: dict[tuple[float, str], tuple] = {}  # each scheduled pose's last frame: (shown, the dance's)

    @property
    def lead_seconds(self) -> float:
        return self.EASE_IN_S + self.HOLD_S

    def schedule(self, name: str, hit_time: float) -> list[tuple[float, str]]:
        """Land the named pose at `hit_time`, instead of any pose scheduled to land during its ease-in or later (the
        same downbeat predicted a few ms apart: the performer changed their mind before that one showed); returns
        those it replaced, as (hit time, name)."""
        if name not in KEY_POSES:
            raise KeyError(name)
        replaced = [pose for pose in self.scheduled if pose[0] >= hit_time - self.EASE_IN_S]
        self.scheduled = [pose for pose in self.scheduled if pose not in replaced] + [(float(hit_time), name)]
        return replaced

    def landing_between(self, start: float, end: float) -> str | None:
        """The name of a scheduled pose hit within [start, end), else None."""
        return next((name for hit, name in self.scheduled if start <= hit < end), None)

    def weights(self, times: np.ndarray, hit_time: float) -> np.ndarray:
        """(T,) 0..1: how much of the pose hit at `hit_time` shows at `times`."""
        offset = np.asarray(times, dtype=np.float64) - hit_time
        before = _smoothstep(1.0 + (offset + self.HOLD_S) / self.EASE_IN_S)
        after = _smoothstep(1.0 - (offset - self.HOLD_S) / self.EASE_OUT_S)
        return np.where(np.abs(offset) <= self.HOLD_S + 1e-9, 1.0, np.where(offset < 0, before, after))

    def apply(self, motion: Motion, start: float) -> tuple[Motion, np.ndarray]:
        """(the slice with the scheduled poses eased in, (T,) weight of the key pose in each frame)."""
        times = start + np.arange(motion.num_frames) / self.fps
        self.scheduled = [(hit, n) for hit, n in self.scheduled if hit + self.HOLD_S + self.EASE_OUT_S > times[0]]
        self._last = {pose: last for pose, last in self._last.items() if pose in self.scheduled}
        weight = np.zeros(motion.num_frames)
        if not self.scheduled:
            return motion, weight
        root, rotations = motion.root_translation.copy(), motion.rotations.copy()
        for pose in self.scheduled:  # a later request overrides an earlier one where both show
            hit, name = pose
            w = self.weights(times, hit)
            if not (w > 0).any():
                continue
            target = np.broadcast_to(key_pose_rotations(name), rotations.shape).copy()
            target[:, 0] = yaw_quat(heading_angles(rotations[:, 0]))  # the pose, facing where the dancer faces
            shown = R.quat_slerp(rotations, target, w[:, None])
            shown = R.quat_limit_steps(shown, rotations, MAX_TURN_SPEED / self.fps, *self._last.get(pose, ()))
            self._last[pose] = (shown[-1], rotations[-1])
            rotations = shown
            root[:, 1] += w * (standing_height(name) - root[:, 1])
            weight = np.maximum(weight, w)
        return Motion(motion.fps, root, rotations, motion.offsets, motion.contacts), weight
