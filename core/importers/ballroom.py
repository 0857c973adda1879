"""Ballroom ("Dance with Melody", Tang et al. 2018): 23 mocap points per frame, cm, 25 fps, y up.

The file names no joints: `BALLROOM_POINTS` was inferred from the data (rigid distances, bone lengths, which way
toes and knees point). Rotations are solved from the points, parent first: each bone swings onto its child's
point and takes its twist from a plane (hips line, shoulders line, the knee or elbow bend plane, the line between
the head points). Where a plane is poorly defined (a nearly straight limb, head points that merge) its twist is
smoothed over time (`smooth_twist`) rather than followed, so no joint flips; hands and toes have no markers and
continue their bones. Offsets are per sequence (SMPL's directions for limbs, measured lengths; the rigid torso
fitted), so FK(solved) reproduces the points; `point_errors` measures how closely (`ik_error_report`: 1.9 cm mean
over all 45 sequences, most of it the knee and elbow markers sitting off the joints).
"""
import json
from pathlib import Path

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.importers.common import (
    TARGET_FPS,
    X_AXIS,
    Y_AXIS,
    Sequence,
    align,
    check_finite,
    finish,
    locals_from_globals,
    signed_angle,
    smooth_twist,
    track_floor,
    unit,
)
from onbeat.core.motion import Motion
from onbeat.core.skeleton import JOINT_INDEX as _J
from onbeat.core.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, REST_OFFSETS

# Which of the 23 points each SMPL joint is. Inferred from the data: points 7/16 are 20 cm apart at pelvis height
# and chain down through 8/17 (knees: bend forward), 9/18 (ankles), 11/20 (toes, which point forward); 10/19 are
# outer heel points. 3/12 are the shoulders (rigid with 2, the lower chest, and with the head points 0 (right)
# and 1 (left)); 4/13 the elbows; 6 and 15 the wrists (23-24 cm from the elbow); 5, 21, 22, 14 are forearm and
# hand markers the skeleton has no joint for. Character's left is +x in SMPL; 16, 17, ... are the left side.
BALLROOM_POINTS = {
    "Right_Hip": 7, "Right_Knee": 8, "Right_Ankle": 9, "Right_Foot": 11,
    "Left_Hip": 16, "Left_Knee": 17, "Left_Ankle": 18, "Left_Foot": 20,
    "Spine1": 2, "Right_Shoulder": 3, "Right_Elbow": 4, "Right_Wrist": 6,
    "Left_Shoulder": 12, "Left_Elbow": 13, "Left_Wrist": 15,
}
BALLROOM_HEAD_POINTS = (1, 0)  # left and right side of the head; their midpoint is the Head joint
BALLROOM_CM = 0.01
# Limbs: the three joints of each and the axis of the upper two joints that the bend plane's normal defines.
# A knee bends about +x (the thigh x shank normal points to the character's left for both legs); an elbow bends
# about -y for the left arm and +y for the right one (arms lie along +-x in the rest pose).
SLIGHT_BEND_DEGREES = 25.0  # below this, which side a knee or elbow marker is on is noise (marker slip)
_LIMBS = tuple(((f"{side}_Hip", f"{side}_Knee", f"{side}_Ankle"), X_AXIS) for side in ("Left", "Right")) + (
    (("Left_Shoulder", "Left_Elbow", "Left_Wrist"), -Y_AXIS),
    (("Right_Shoulder", "Right_Elbow", "Right_Wrist"), Y_AXIS))


def _chain_rest(*joints):
    """Rest vector from the parent of the first joint to the last one, summed along the chain."""
    return sum(REST_OFFSETS[_J[j]] for j in joints)


class _PointSolver:
    """Local rotations and per-sequence offsets of SMPL-24 from target joint positions (T, 3), metres.

    Joints are solved parent first. Each solved joint's world position follows from its parent, so a joint whose
    child is observed aims its bone exactly at it (swing) and takes the twist from a plane; the error left is
    only bone-length variation (soft tissue, marker slip) and the rigid torso's shape."""

    def __init__(self, targets, head_left, head_right):
        self.p = targets
        self.head_left, self.head_right = head_left, head_right
        self.frames = len(next(iter(targets.values())))
        self.world = R.quat_identity((self.frames, NUM_JOINTS))
        self.pos = np.zeros((self.frames, NUM_JOINTS, 3))
        self.offsets = REST_OFFSETS.copy()
        self.root = None

    def length(self, a, b):
        return float(np.median(np.linalg.norm(self.p[a] - self.p[b], axis=-1)))

    def place(self, joint):
        """World position of `joint` from its (solved) parent."""
        j = _J[joint]
        parent = PARENTS[j]
        offset = np.broadcast_to(self.offsets[j], (self.frames, 3))
        self.pos[:, j] = self.pos[:, parent] + R.quat_apply(self.world[:, parent], offset)

    def inherit(self, joint):
        """Unobserved joint: identity local rotation, placed from its parent."""
        j = _J[joint]
        self.world[:, j] = self.world[:, PARENTS[j]]
        self.place(joint)

    def fit_offset(self, joint):
        """Offset of an observed joint = its mean position in its parent's frame (rigid torso parts)."""
        j = _J[joint]
        parent = PARENTS[j]
        local = R.quat_apply(R.quat_conjugate(self.world[:, parent]), self.p[joint] - self.pos[:, parent])
        self.offsets[j] = local.mean(axis=0)
        self.place(joint)

    def solve(self):
        self._pelvis()
        self._torso()
        self._head()
        for chain, axis in _LIMBS:
            self._limb(chain, axis)
        for joint in ("Left_Ankle", "Right_Ankle"):
            self._ankle(joint)
        for joint in ("Left_Wrist", "Right_Wrist", "Left_Foot", "Right_Foot", "Left_Palm", "Right_Palm"):
            self.inherit(joint)  # no hand or toe markers: hands and toes continue their bones
        return self.root, locals_from_globals(self.world), self.offsets

    def _pelvis(self):
        left, right, spine = self.p["Left_Hip"], self.p["Right_Hip"], self.p["Spine1"]
        rest_hips = REST_OFFSETS[_J["Left_Hip"]] - REST_OFFSETS[_J["Right_Hip"]]
        rest_up = REST_OFFSETS[_J["Spine1"]] - 0.5 * (REST_OFFSETS[_J["Left_Hip"]] + REST_OFFSETS[_J["Right_Hip"]])
        self.world[:, 0] = align(rest_hips, rest_up, left - right, spine - 0.5 * (left + right))
        # The pelvis sits where SMPL has it relative to the hip line, scaled to this dancer's hip width.
        scale = self.length("Left_Hip", "Right_Hip") / np.linalg.norm(rest_hips)
        below = 0.5 * (REST_OFFSETS[_J["Left_Hip"]] + REST_OFFSETS[_J["Right_Hip"]]) * scale
        self.root = 0.5 * (left + right) - R.quat_apply(self.world[:, 0], np.broadcast_to(below, left.shape))
        self.pos[:, 0] = self.root
        for joint in ("Left_Hip", "Right_Hip", "Spine1"):
            self.fit_offset(joint)

    def _torso(self):
        """Spine1 turns the rigid chest towards the shoulders; Spine2/3 and the collars keep identity rotations
        (the data has no points between the lower chest and the shoulders)."""
        left, right = self.p["Left_Shoulder"], self.p["Right_Shoulder"]
        s1 = _J["Spine1"]
        rest_left = _chain_rest("Spine2", "Spine3", "Left_Collar", "Left_Shoulder")
        rest_right = _chain_rest("Spine2", "Spine3", "Right_Collar", "Right_Shoulder")
        self.world[:, s1] = align(0.5 * (rest_left + rest_right), rest_left - rest_right,
                                   0.5 * (left + right) - self.pos[:, s1], left - right)
        scale = np.linalg.norm(0.5 * (left + right) - self.pos[:, s1], axis=-1).mean() \
            / np.linalg.norm(0.5 * (rest_left + rest_right))
        for joint in ("Spine2", "Spine3", "Neck", "Left_Collar", "Right_Collar"):
            self.offsets[_J[joint]] = REST_OFFSETS[_J[joint]] * scale
        for joint in ("Spine2", "Spine3", "Left_Collar", "Right_Collar"):
            self.inherit(joint)
        for joint in ("Left_Shoulder", "Right_Shoulder"):
            self.fit_offset(joint)
        self.inherit("Neck")

    def _head(self):
        """The neck aims at the head's centre (no twist: the head takes it); the head turns about that line to face
        between its two points. When the points come close together (one hidden: they merge for a few frames) the
        line between them says nothing, so the turn is smoothed with a weight that falls with their distance."""
        neck, head = _J["Neck"], _J["Head"]
        centre = 0.5 * (self.head_left + self.head_right)
        to_head = centre - self.pos[:, neck]
        self.offsets[head] = unit(REST_OFFSETS[head]) * np.median(np.linalg.norm(to_head, axis=-1))
        swing = R.quat_between(R.quat_apply(self.world[:, neck], np.broadcast_to(REST_OFFSETS[head], to_head.shape)),
                               to_head)
        self.world[:, neck] = R.quat_multiply(swing, self.world[:, neck])
        self.place("Head")
        across = self.head_left - self.head_right
        width = np.linalg.norm(across, axis=-1)
        reference = R.quat_apply(self.world[:, neck], np.broadcast_to(X_AXIS, to_head.shape))
        twist = smooth_twist(signed_angle(reference, across, to_head), np.clip(width / np.median(width), 0, 1) ** 8)
        self.world[:, head] = R.quat_multiply(R.quat_from_axis_angle(unit(to_head) * twist[:, None]),
                                              self.world[:, neck])

    def _limb(self, chain, axis):
        """Two-bone IK: the middle joint (knee, elbow) goes where the fixed bone lengths reach the end point
        (ankle, wrist), so length noise does not pile up at hands and feet; both bones aim at their points exactly
        and turn their `axis` onto one hinge axis, so the knee or elbow bends about it only.

        The hinge is the markers' bend-plane normal, measured as an angle about the reach line (top to end point)
        from a reference swung there from the parent, and followed by `smooth_twist` with the weight sin^2(bend):
        where the limb is clearly bent the hinge follows the markers; where it is nearly straight the plane is
        noise and the hinge glides, so a straight arm or leg never flips its twist (or its knee) frame to frame. A
        slight bend (under SLIGHT_BEND_DEGREES) is read as an axis: a marker slipping across the line does not turn
        the limb half round; the joint stays bent the way it was (the bone lengths decide by how much)."""
        top, middle, end = (_J[n] for n in chain)
        upper, lower = self.length(chain[0], chain[1]), self.length(chain[1], chain[2])
        self.offsets[middle] = unit(REST_OFFSETS[middle]) * upper
        self.offsets[end] = unit(REST_OFFSETS[end]) * lower
        start, target, marker = self.pos[:, top], self.p[chain[2]], self.p[chain[1]]
        reach = target - start
        bend = np.cross(unit(marker - start), unit(target - marker))  # length: sin(bend)
        parent = self.world[:, PARENTS[top]]
        rest_reach = R.quat_apply(parent, np.broadcast_to(REST_OFFSETS[middle] + REST_OFFSETS[end], reach.shape))
        swing = R.quat_multiply(R.quat_between(rest_reach, reach), parent)
        reference = R.quat_apply(swing, np.broadcast_to(axis, reach.shape))
        slight = np.sum(bend ** 2, -1) < np.sin(np.radians(SLIGHT_BEND_DEGREES)) ** 2
        twist = smooth_twist(signed_angle(reference, bend, reach), np.sum(bend ** 2, -1), axial=slight)
        hinge = R.quat_apply(R.quat_from_axis_angle(unit(reach) * twist[:, None]), reference)
        hinge = unit(hinge - np.sum(hinge * unit(reach), -1, keepdims=True) * unit(reach))
        knee = _two_bone(start, target, np.cross(reach, hinge), upper, lower)
        for joint, child, aim in ((top, middle, knee), (middle, end, target)):
            self.world[:, joint] = align(REST_OFFSETS[child], axis, aim - self.pos[:, joint], hinge)
            self.place(JOINT_NAMES[child])

    def _ankle(self, joint):
        """The ankle aims at the toe; its twist follows the shin (the data's heel points are too noisy for it)."""
        j = _J[joint]
        toe = JOINT_NAMES[j + 3]  # Left_Ankle (7) -> Left_Foot (10)
        self.offsets[_J[toe]] = unit(REST_OFFSETS[_J[toe]]) * self.length(joint, toe)
        steady = R.quat_apply(self.world[:, PARENTS[j]], np.broadcast_to(X_AXIS, (self.frames, 3)))
        self.world[:, j] = align(REST_OFFSETS[_J[toe]], X_AXIS, self.p[toe] - self.pos[:, j], steady)
        self.place(toe)


def _two_bone(top, end, pole, upper, lower):
    """Position of the middle joint with |middle - top| = upper and |end - middle| = lower (as near as the
    distance allows), bent towards `pole` (a direction perpendicular to the reach)."""
    reach = end - top
    distance = np.linalg.norm(reach, axis=-1, keepdims=True)
    along = unit(reach)
    clamped = np.clip(distance, abs(upper - lower) + 1e-6, upper + lower - 1e-6)
    a = (upper ** 2 - lower ** 2 + clamped ** 2) / (2 * clamped)
    return top + a * along + np.sqrt(np.maximum(upper ** 2 - a ** 2, 0.0)) * unit(pole)


def ballroom_targets(points, center):
    """Target joint positions (metres, world) from one sequence's (T, 23, 3) points and (T, 3) centre (cm)."""
    world = (points + center[:, None, :]) * BALLROOM_CM
    targets = {joint: world[:, i] for joint, i in BALLROOM_POINTS.items()}
    return targets, world[:, BALLROOM_HEAD_POINTS[0]], world[:, BALLROOM_HEAD_POINTS[1]]


def solve_points(targets, head_left, head_right, fps):
    """IK: the Motion (at `fps`, not grounded or resampled) whose FK reproduces the target joint positions."""
    root, rotations, offsets = _PointSolver(targets, head_left, head_right).solve()
    return Motion(fps, root, rotations, offsets)


def point_errors(motion, targets, head_left, head_right):
    """(T, K) distance (metres) between FK(motion) and each target joint (the head: its points' midpoint)."""
    pos = motion.positions()
    names = list(targets)
    errors = [np.linalg.norm(pos[:, _J[n]] - targets[n], axis=-1) for n in names]
    errors.append(np.linalg.norm(pos[:, _J["Head"]] - 0.5 * (head_left + head_right), axis=-1))
    return np.stack(errors, axis=1)


def _ballroom_files(root):
    root = Path(root)
    npz, meta = root / "motion.npz", root / "motion.json"
    try:
        info = json.loads(meta.read_text())
        data = np.load(npz)
    except (OSError, ValueError, EOFError) as e:
        raise OnbeatError(f"{root}: cannot read the ballroom data (motion.npz, motion.json): {e}") from None
    return data, info


def ballroom_names(root):
    """Sequence names of the ballroom set, in the file's order."""
    data, _ = _ballroom_files(root)
    return [k for k in data.files if not k.endswith("__center")]


def load_ballroom(root, name, fps=TARGET_FPS, with_error=False):
    """One ballroom sequence as a Sequence; `with_error` also returns the IK error (T, K) in metres, at 25 fps."""
    root = Path(root)
    data, info = _ballroom_files(root)
    where = f"{root / 'motion.npz'}: {name}"
    if name not in data.files or name + "__center" not in data.files:
        raise OnbeatError(f"{where}: no such sequence (or its __center trajectory is missing)")
    try:
        points, center = data[name].astype(np.float64), data[name + "__center"].astype(np.float64)
    except (OSError, ValueError, EOFError) as e:
        raise OnbeatError(f"{where}: cannot read ({e})") from None
    if points.ndim != 3 or points.shape[1:] != (23, 3) or center.shape != (len(points), 3) or len(points) < 2:
        raise OnbeatError(f"{where}: expected (frames, 23, 3) points and (frames, 3) centre, "
                          f"got {points.shape} and {center.shape}")
    check_finite(where, "points", points)
    check_finite(where, "centre", center)
    meta = info.get(name, {})
    targets, head_left, head_right = ballroom_targets(points, center)
    motion = solve_points(targets, head_left, head_right, float(meta.get("fps", 25)))
    audio = root / "audio" / f"{name}.ogg"
    # The recordings' vertical drifts by up to 40 cm over a dance; ballroom dancers never leave the floor.
    seq = Sequence(name, "ballroom", meta.get("style", ""), finish(track_floor(motion), fps),
                   audio if meta.get("audio") and audio.is_file() else None, name, bool(meta.get("suspect", False)))
    return (seq, point_errors(motion, targets, head_left, head_right)) if with_error else seq


def ik_error_report(root, names=None):
    """IK error of FK(solved) against the points over `names` (default: every sequence): mean, 95th percentile
    and maximum in centimetres, over all frames and mapped joints (the 15 of `BALLROOM_POINTS` and the head)."""
    errors = np.concatenate([load_ballroom(root, name, with_error=True)[1].ravel()
                             for name in (names or ballroom_names(root))]) * 100
    return dict(mean=float(errors.mean()), p95=float(np.percentile(errors, 95)), max=float(errors.max()))
