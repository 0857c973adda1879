"""Grounded feet for every choreographer: foot contacts, foot locking with two-bone leg IK, and the floor.

`FootGrounding` post-processes each slice a choreographer makes (the engine runs every slice through it, see
`choreographers.finishing`), carrying its state from slice to slice:
- contacts, per foot, with hysteresis: a model's predicted contact columns where the motion has them
  (`Motion.contacts`), or the foot's sole near the floor and not fast (the only source for kinds without
  predicted contacts, such as the groove);
- locking: when a foot comes down its ankle is pinned there (put on the floor) and the foot keeps the orientation
  it had (so the toe stays put too), blended in over `LOCK_IN_FRAMES`; the leg reaches the pin by analytic two-bone
  IK (`two_bone_ik`), and the pelvis comes down where a pin is out of the leg's reach;
- stepping: when the dance lifts the foot, or has moved or turned it well away from its pin (one foot at a time),
  the foot lets go and steps to where the dance has it over `STEP_FRAMES`, along an arc as high as half the way
  (at most `STEP_HEIGHT`): feet move lifted, not sliding on the floor; where the dance has it down it is pinned
  again at the end of the step;
- the floor (y = 0): the body is lifted so no joint is below it, every foot's sole is kept on or above it, a
  pinned foot stands on it.
The sole of a foot is its lowest point: the toe joint, or the heel, a point of the foot under the ankle joint by
the ankle's height above the toe in the rest pose (where the foot stands flat); `lowest_sole` is the floor
contact everything else that puts a pose on the floor uses (the key poses).

The root's ground position and heading are never changed (the model's trajectory goes on), only its height.
Numpy; the cost per 30 fps frame is printed by `onbeat bench feet`.
"""
import math

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.motion import Motion, forward_kinematics_with_matrices
from onbeat.core.skeleton import JOINT_INDEX, NUM_JOINTS, REST_OFFSETS

FLOOR = 0.0
UP = 1
_FLAT = [0, 2]
_LEG_NAMES = ("Hip", "Knee", "Ankle", "Foot")
HIP, KNEE, ANKLE, TOE = (np.array([JOINT_INDEX[f"{side}_{name}"] for side in ("Left", "Right")]) for name in _LEG_NAMES)
_LEG_JOINTS = set(np.concatenate([ANKLE, TOE]).tolist())
LEG_JOINTS = np.concatenate([HIP, KNEE, ANKLE])
ABOVE_FEET = np.array([j for j in range(NUM_JOINTS) if j not in _LEG_JOINTS])  # every joint but ankles and toes
# Motion.contacts columns (skeleton.FOOT_JOINTS order: left ankle, right ankle, left toe, right toe) of each foot.
_CONTACT_COLUMNS = ((0, 2), (1, 3))

REACH = 0.995  # share of the leg's length a pinned ankle is held within from its hip (a straight knee pops)

# A foot is down when its predicted contact says so (hysteresis on the value), or when its sole is low and not
# fast (hysteresis on both): the shipped models' contact columns are timid (a toe on the floor, moving slowly, is
# predicted in contact in 12-40% of frames), and kinds without them (the groove) are detected the same way.
CONTACT_ON, CONTACT_OFF = 0.5, 0.3
DETECT_HEIGHT_ON, DETECT_HEIGHT_OFF = 0.03, 0.05  # m above the floor
DETECT_SPEED_ON, DETECT_SPEED_OFF = 3.0, 4.0  # m/s: only a kick passing low is not down
LOCK_HEIGHT = 0.10  # m: a foot is pinned only if its sole is this close to the floor
LOCK_IN_FRAMES = 3  # a pin blends in this fast ...
STEP_FRAMES = 10  # ... and out this slowly, the foot stepping to where the dance has it along an arc:
STEP_RISE, STEP_HEIGHT = 0.5, 0.08  # as high as half the way it goes, at most 8 cm (a foot moves lifted, not sliding)
STEP_LIFT_SHARE = 0.2  # the first and last fifth of a step lift and lower the foot in place
# The dance's own ankle this far (horizontally) from its pin, or its foot turned this far from the pin's: step after
# it, one foot at a time (the other stands), unless it is twice as far.
RELEASE_DISTANCE, RELEASE_TURN = 0.2, np.radians(45.0)
# No joint the finishing turns (the legs here, every joint in a key-pose landing) turns faster than this, or than
# the dance's own does: next to a glitch in the dance (a leg turning 60+ degrees in a frame) the IK's changes
# could otherwise compose into a pop of their own.
MAX_TURN_SPEED = np.radians(45.0) * 30  # rad/s: 45 degrees per 30 fps frame (a pop is 60)
KEY_POSE_RELEASE = 0.5  # above this key-pose weight (choreographers.keyposes) the legs follow the key pose


class FootGrounding:
    """See the module docstring. `apply` each slice in order; `reset` when the dance jumps (a new choreographer,
    a re-anchored slice), so no pin is carried over a jump."""

    def __init__(self, fps: float):
        self.fps = fps
        self.reset()

    def reset(self) -> None:
        # Per foot (left, right), as plain floats: the per-frame logic runs on 2 feet x 8 frames, where numpy's
        # per-call overhead would cost more than the arithmetic.
        self.down = [False, False]  # contact state (after hysteresis)
        self.locked = [False, False]  # a pin is held
        self.weight = [0.0, 0.0]  # how much of the pin shows: rises while pinned, falls while stepping away
        self.pin = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # ankle position of the pin
        self.pin_rotation = [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]  # foot world orientation of the pin
        self.arc = [0.0, 0.0]  # height of the step away from the last pin let go
        self.let_go = [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]  # the dance's foot orientation then
        self.last_sole = None  # (2, 3) the dance's own sole points in the previous frame (speed for detection)
        # (the legs' rotations shown, the dance's own) in the previous frame
        self.last_legs: tuple[np.ndarray, np.ndarray] | None = None

    def apply(self, motion: Motion, key_weight: np.ndarray | None = None) -> Motion:
        """The slice with grounded feet. `key_weight` (T,) 0..1: how much of a key pose the frames show; the legs
        follow it instead of the pins as it comes in (`KEY_POSE_RELEASE`)."""
        count = motion.num_frames
        key_weight = np.zeros(count) if key_weight is None else np.asarray(key_weight, dtype=np.float64)
        root, rotations = motion.root_translation.copy(), motion.rotations.copy()
        legs = _Legs(motion.offsets)
        positions, world = forward_kinematics_with_matrices(root, rotations, motion.offsets)
        # The body above the floor: lift the root where any joint but the feet dips below it.
        body_lift = np.maximum(FLOOR - positions[:, ABOVE_FEET, UP].min(axis=1), 0.0)
        root[:, UP] += body_lift
        positions[..., UP] += body_lift[:, None]
        room = positions[:, ABOVE_FEET, UP].min(axis=1) - FLOOR  # how far the root may still drop

        foot_world = R.quat_from_matrix(world[:, ANKLE])  # (T, 2, 4)
        sole = legs.sole(positions[:, ANKLE], positions[:, TOE], world[:, ANKLE][..., UP])
        down = self._contacts(motion.contacts, sole)
        weight, lift, pins, turn = self._lock(positions[:, ANKLE], foot_world, sole, down, key_weight)

        # Drop the root where a pinned ankle is out of the leg's reach.
        hip = positions[:, HIP]
        drop = (weight * legs.drop_to_reach(hip, pins)).max(axis=1)
        drop = np.minimum(drop, room)
        root[:, UP] -= drop
        positions[..., UP] -= drop[:, None]

        # Targets: the dance's own ankle with its sole kept above the floor, blended into the pin.
        ankle = positions[:, ANKLE] + _up(np.maximum(FLOOR - (sole[..., UP] - drop[:, None]), 0.0))
        ankle += weight[..., None] * (pins - ankle) + _up(lift)
        foot = R.quat_multiply(turn, foot_world)
        toe = ankle + R.quat_apply(foot, np.broadcast_to(legs.offsets[TOE], ankle.shape))
        foot_up = R.quat_apply(foot, _up(np.ones(ankle.shape[:-1])))
        ankle += _up(np.maximum(FLOOR - legs.sole(ankle, toe, foot_up)[..., UP], 0.0))  # a blend of two grounded feet
        knee = self._set_legs(rotations, positions, world[:, HIP][..., 0], ankle, foot, legs)  # may dip: lift it
        self._limit_turns(rotations, motion.rotations)

        # A knee the legs could not keep off the floor (a deep crouch): lift the whole body.
        root[:, UP] += FLOOR - np.minimum(knee[..., UP].min(axis=1), FLOOR)
        return Motion(motion.fps, root, rotations, motion.offsets, motion.contacts)

    # --- contacts and pins ------------------------------------------------------------------------------------
    def _contacts(self, predicted, sole):
        """(T, 2) whether each foot is down, frame by frame (hysteresis state carried across slices)."""
        previous = sole[:1] if self.last_sole is None else self.last_sole[None]
        self.last_sole = sole[-1]
        speed = np.linalg.norm(np.diff(np.concatenate([previous, sole]), axis=0)[..., _FLAT], axis=-1) * self.fps
        height = sole[..., UP] - FLOOR
        low_on = (height < DETECT_HEIGHT_ON) & (speed < DETECT_SPEED_ON)
        low_stays = (height < DETECT_HEIGHT_OFF) & (speed < DETECT_SPEED_OFF)
        if predicted is not None:
            value = np.stack([predicted[:, list(columns)].max(axis=1) for columns in _CONTACT_COLUMNS], axis=1)
            low_on |= value > CONTACT_ON
            low_stays |= value > CONTACT_OFF
        down = np.empty(height.shape, bool)
        for t in range(len(down)):
            self.down = [bool(low_stays[t, f] if self.down[f] else low_on[t, f]) for f in (0, 1)]
            down[t] = self.down
        return down

    def _lock(self, ankle, foot_world, sole, down, key_weight):
        """Frame by frame: (T, 2) how much each foot is at its pin, (T, 2) how high a foot stepping away from its
        pin is lifted, the pins (T, 2, 3), and (T, 2, 4) the world turn that takes the dance's own foot to the
        orientation shown: towards the pin's by the weight; a stepping foot's turn fades from the one it had when
        it let go, so a foot the dance spins on is never interpolated the long way round."""
        count = len(ankle)
        weights, lifts, pins = np.zeros((count, 2)), np.zeros((count, 2)), np.empty((count, 2, 3))
        pin_turned, own_turned = np.empty((count, 2, 4)), np.empty((count, 2, 4))  # turn = pin_turned * own^-1
        ankle_rows, feet_rows, soles = ankle.tolist(), foot_world.tolist(), sole[..., UP].tolist()
        for t in range(count):
            wanted = [bool(down[t, f]) and key_weight[t] <= KEY_POSE_RELEASE for f in (0, 1)]
            away = [0.0, 0.0]
            for f in (0, 1):
                x, _, z = ankle_rows[t][f]
                dot = abs(sum(a * b for a, b in zip(feet_rows[t][f], self.pin_rotation[f], strict=True)))
                distance = math.hypot(x - self.pin[f][0], z - self.pin[f][2])
                away[f] = max(distance / RELEASE_DISTANCE, 2 * math.acos(min(dot, 1.0)) / RELEASE_TURN)
            strayed = [self.locked[f] and wanted[f] and away[f] > 1.0 for f in (0, 1)]
            for f, other in ((0, 1), (1, 0)):
                standing = self.locked[other] and wanted[other] and not strayed[other]
                further = away[f] > away[other] or (away[f] == away[other] and f == 0)
                steps = strayed[f] and (standing or (strayed[other] and further) or away[f] > 2.0)
                if self.locked[f] and (not wanted[f] or steps):  # let go: step to where the dance has the foot
                    x, _, z = ankle_rows[t][f]
                    self.arc[f] = min(STEP_RISE * math.hypot(x - self.pin[f][0], z - self.pin[f][2]), STEP_HEIGHT)
                    self.let_go[f] = feet_rows[t][f]
                    self.locked[f] = False
            for f in (0, 1):
                step = 1.0 / LOCK_IN_FRAMES if self.locked[f] else -1.0 / STEP_FRAMES
                self.weight[f] = min(max(self.weight[f] + step, 0.0), 1.0)
                if wanted[f] and not self.locked[f] and self.weight[f] < 1e-9 and soles[t][f] - FLOOR < LOCK_HEIGHT:
                    x, y, z = ankle_rows[t][f]  # a new pin: the foot as it is now (a step ends there), on the floor
                    self.pin[f] = [x, y + FLOOR - soles[t][f], z]
                    self.pin_rotation[f] = feet_rows[t][f]
                    self.locked[f], self.weight[f] = True, 1.0 / LOCK_IN_FRAMES
                share = 1.0 - key_weight[t]
                if self.locked[f]:
                    weights[t, f] = _smoothstep(self.weight[f]) * share
                else:  # stepping: the foot rises in place, moves while it is up, and comes down in place
                    moved = min(max((self.weight[f] - STEP_LIFT_SHARE) / (1 - 2 * STEP_LIFT_SHARE), 0.0), 1.0)
                    weights[t, f] = _smoothstep(moved) * share
                    lifts[t, f] = self.arc[f] * math.sin(math.pi * self.weight[f]) ** 2 * share
                pin_turned[t, f] = self.pin_rotation[f]
                own_turned[t, f] = feet_rows[t][f] if self.locked[f] else self.let_go[f]
                pins[t, f] = self.pin[f]
        turns = R.quat_multiply(pin_turned, R.quat_conjugate(own_turned))
        return weights, lifts, pins, R.quat_slerp(R.quat_identity((count, 2)), turns, weights)

    def _limit_turns(self, rotations, own):
        """In place: each leg joint's local rotation turns from frame to frame at most as fast as the dance's own
        does, or `MAX_TURN_SPEED` if that is more (carried across slices)."""
        shown, own = rotations[:, LEG_JOINTS], own[:, LEG_JOINTS]
        rotations[:, LEG_JOINTS] = R.quat_limit_steps(shown, own, MAX_TURN_SPEED / self.fps, *(self.last_legs or ()))
        self.last_legs = (rotations[-1, LEG_JOINTS], own[-1])

    # --- inverse kinematics -----------------------------------------------------------------------------------
    @staticmethod
    def _set_legs(rotations, positions, hinge, ankle_target, foot_target, legs):
        """Two-bone IK of both legs of every frame, in place: hips and knees turned so each ankle reaches its
        target, ankles turned so each foot has the target world orientation. Returns the knees' new positions."""
        pelvis = rotations[:, :1]  # (T, 1, 4): both hips' parent
        hip_world = R.quat_multiply(pelvis, rotations[:, HIP])
        knee_world = R.quat_multiply(hip_world, rotations[:, KNEE])
        hip_new, knee_new = two_bone_ik(positions[:, HIP], positions[:, KNEE], positions[:, ANKLE], ankle_target, hinge,
                                        hip_world, knee_world)
        rotations[:, HIP] = R.quat_multiply(R.quat_conjugate(pelvis), hip_new)
        rotations[:, KNEE] = R.quat_multiply(R.quat_conjugate(hip_new), knee_new)
        rotations[:, ANKLE] = R.quat_multiply(R.quat_conjugate(knee_new), foot_target)
        return positions[:, HIP] + R.quat_apply(hip_new, np.broadcast_to(legs.offsets[KNEE], ankle_target.shape))


def two_bone_ik(hip, knee, ankle, target, hinge, hip_world, knee_world):
    """(hip world, knee world) quaternions (..., 4) that put the ankle at `target` (as near as the leg reaches):
    the knee turns about its hinge (the hip frame's x axis, about which a knee flexes forward) to the flexion that
    makes the hip-ankle distance right, then the hip swings the leg onto the target along the shortest arc. The
    knee always ends bent forward, even where the dance had it straight or slightly overstretched backwards (the
    plane it bends in is then undefined: following it would flip the knee). Positions (..., 3), world rotations
    (..., 4). After D. Holden's "Simple two joint IK", with a signed flexion instead of the bend plane."""
    thigh, shin = knee - hip, ankle - knee
    length = np.linalg.norm(thigh, axis=-1) + np.linalg.norm(shin, axis=-1)
    reach = np.minimum(np.linalg.norm(target - hip, axis=-1), length * (1 - 1e-6))
    # Turning the shin about the hinge changes only the angle between the bones' parts across the hinge.
    thigh_along, shin_along = np.sum(thigh * hinge, axis=-1), np.sum(shin * hinge, axis=-1)
    thigh_across, shin_across = thigh - thigh_along[..., None] * hinge, shin - shin_along[..., None] * hinge
    flexion = np.arctan2(np.sum(R.cross(thigh_across, shin_across) * hinge, axis=-1),
                         np.sum(thigh_across * shin_across, axis=-1))
    cosine = ((reach ** 2 - np.sum(thigh ** 2, axis=-1) - np.sum(shin ** 2, axis=-1) - 2 * thigh_along * shin_along)
              / np.maximum(2 * np.linalg.norm(thigh_across, axis=-1) * np.linalg.norm(shin_across, axis=-1), 1e-12))
    wanted = np.arccos(np.clip(cosine, -1.0, 1.0))  # the forward flexion of the two that reach
    flex = _axis_angle(hinge, wanted - flexion)
    bent_ankle = knee + R.quat_apply(flex, shin)
    swing = R.quat_between(bent_ankle - hip, target - hip)
    return R.quat_multiply(swing, hip_world), R.quat_multiply(swing, R.quat_multiply(flex, knee_world))


class _Legs:
    """The leg bones of a skeleton (`Motion.offsets`), both sides at once."""

    def __init__(self, offsets):
        self.offsets = offsets
        self.heel = float(-offsets[TOE, UP].mean())  # the ankle's height above a flat foot's sole (~6 cm)
        self.reach = REACH * (np.linalg.norm(offsets[KNEE], axis=-1) + np.linalg.norm(offsets[ANKLE], axis=-1))

    def sole(self, ankle, toe, foot_up):
        """(..., 2, 3) the lowest point of each foot, its toe joint or its heel; ankles, toes and the feet's up
        axes (..., 2, 3) in the world."""
        heel = ankle - self.heel * foot_up
        return np.where((toe[..., UP] < heel[..., UP])[..., None], toe, heel)

    def drop_to_reach(self, hip, pins):
        """(T, 2) how far each hip must come down for its pinned ankle to be within reach (0 when it is)."""
        across = np.linalg.norm(pins[..., _FLAT] - hip[..., _FLAT], axis=-1)
        allowed = np.sqrt(np.maximum(self.reach ** 2 - across ** 2, 0.0))
        return np.maximum(hip[..., UP] - pins[..., UP] - allowed, 0.0)


def lowest_sole(root_translation: np.ndarray, rotations: np.ndarray, offsets: np.ndarray = REST_OFFSETS) -> np.ndarray:
    """(T,) height of the lowest sole (toe or heel of either foot) of (T, 3) root positions and (T, 24, 4) local
    rotations."""
    positions, world = forward_kinematics_with_matrices(root_translation, rotations, offsets)
    return _Legs(offsets).sole(positions[:, ANKLE], positions[:, TOE], world[:, ANKLE][..., UP])[..., UP].min(axis=-1)


def _up(height):
    """(..., 3) vectors straight up of the given (...) heights."""
    height = np.asarray(height, dtype=np.float64)
    out = np.zeros(height.shape + (3,))
    out[..., UP] = height
    return out


def _smoothstep(x):
    return x * x * (3.0 - 2.0 * x)


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _angle(a, b):
    return np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0))


def _axis_angle(axis, angle):
    return R.quat_from_axis_angle(axis * np.asarray(angle)[..., None])
