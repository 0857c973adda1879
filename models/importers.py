"""Importers: every real data set as `Motion` on the SMPL-24 skeleton, at 30 fps, in metres, grounded.

- Ballroom ("Dance with Melody", Tang et al. 2018): 23 mocap points per frame. The file names no joints; the map
  below was inferred from the data (rigid distances, bone lengths, which way toes and knees point; see
  `BALLROOM_POINTS`). Rotations are solved from the points: swing from bone directions, twist from planes.
  Offsets are per sequence (SMPL directions, lengths measured), so FK(solved) reproduces the points.
- BVH, any skeleton: joints are mapped to SMPL-24 by name (known families, else fuzzy names) and rotations
  transferred through world space with per-bone rest alignments, so different rest poses (T, A, axes) agree.
  A BVH that already has SMPL-24 joint names (what `onbeat export-bvh` writes) is read back as it is.
- Motorica (KTH dance) expmap pickles: local exponential maps of 19 joints, the hips height and the root's
  heading-relative deltas (pymo `RootTransformer('pos_rot_deltas')`), which are integrated back into a path.
- AIST++ pickles: SMPL axis-angle poses, translation divided by `smpl_scaling`, 60 fps.

`load_motion(path_or_name)` reads any one of these; `iter_dataset(root)` walks the data sets for training.
"""
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.models import rotations as R
from onbeat.models.errors import OnbeatError
from onbeat.models.motion import Motion
from onbeat.models.skeleton import FOOT_JOINTS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, REST_OFFSETS

TARGET_FPS = 30
_X, _Y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
_J = JOINT_INDEX


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


# --- shared geometry ------------------------------------------------------------------------------------------
def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _frame(primary, secondary):
    """(..., 3, 3) orthonormal frame whose columns are the primary direction, the secondary made perpendicular
    to it, and their cross product. A secondary parallel to the primary falls back to any perpendicular."""
    e1 = _unit(primary)
    s = secondary - np.sum(secondary * e1, -1, keepdims=True) * e1
    helper = np.where(np.abs(e1[..., :1]) < 0.9, _X, _Y)
    fallback = np.cross(e1, helper)
    s = np.where(np.linalg.norm(s, axis=-1, keepdims=True) < 1e-9, fallback, s)
    e2 = _unit(s)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)


def _align(rest_primary, rest_secondary, primary, secondary):
    """Quaternion of the rotation that takes the rest primary direction exactly onto `primary` and turns the rest
    secondary direction into the plane of (`primary`, `secondary`): swing from one vector, twist from a plane."""
    rest = _frame(np.asarray(rest_primary, float), np.asarray(rest_secondary, float))
    return R.quat_from_matrix(_frame(primary, secondary) @ np.swapaxes(rest, -1, -2))


def _locals_from_globals(world):
    """(T, 24, 4) local rotations from world ones."""
    local = world.copy()
    for j, p in enumerate(PARENTS):
        if p >= 0:
            local[:, j] = R.quat_multiply(R.quat_conjugate(world[:, p]), world[:, j])
    return local


def ground(motion):
    """Shift the motion up or down so the feet stand on y = 0: the lowest foot joint of each frame is at the floor
    in the typical frame (its 5th percentile over the sequence, so jumps and a few bad frames do not count)."""
    lowest = motion.positions()[:, list(FOOT_JOINTS), 1].min(axis=1)
    root = motion.root_translation - np.array([0.0, np.percentile(lowest, 5), 0.0])
    return Motion(motion.fps, root, motion.rotations, motion.offsets)


def track_floor(motion, seconds=2.0):
    """Remove slow vertical drift: the floor under a dancer who always keeps a foot down (ballroom) is the low
    end (10th percentile) of the lowest foot over a few seconds, smoothed; the root follows it down or up."""
    from scipy.ndimage import gaussian_filter1d, percentile_filter
    lowest = motion.positions()[:, list(FOOT_JOINTS), 1].min(axis=1)
    window = max(3, int(seconds * motion.fps))
    floor = gaussian_filter1d(percentile_filter(lowest, 10, size=window, mode="nearest"), window / 4, mode="nearest")
    root = motion.root_translation - floor[:, None] * _Y
    return Motion(motion.fps, root, motion.rotations, motion.offsets)


def _finish(motion, fps=TARGET_FPS):
    """Common last steps of every importer: continuous quaternions, grounded, resampled."""
    motion = Motion(motion.fps, motion.root_translation, R.quat_make_continuous(motion.rotations), motion.offsets)
    motion = ground(motion)
    return motion if fps is None else motion.resample(fps)


def _check_finite(path, name, array):
    bad = ~np.isfinite(array)
    if bad.any():
        raise OnbeatError(f"{path}: {name} has NaN or infinite values (first at frame {np.argwhere(bad)[0][0]})")


# --- ballroom -------------------------------------------------------------------------------------------------
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
_LIMBS = tuple(((f"{side}_Hip", f"{side}_Knee", f"{side}_Ankle"), _X) for side in ("Left", "Right")) + (
    (("Left_Shoulder", "Left_Elbow", "Left_Wrist"), -_Y), (("Right_Shoulder", "Right_Elbow", "Right_Wrist"), _Y))
_STRAIGHT_WEIGHT = 0.2  # how much the parent's frame steers the twist of a limb that is (nearly) straight


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
        for joint in ("Left_Foot", "Right_Foot", "Left_Palm", "Right_Palm"):
            self.inherit(joint)
        return self.root, _locals_from_globals(self.world), self.offsets

    def _pelvis(self):
        left, right, spine = self.p["Left_Hip"], self.p["Right_Hip"], self.p["Spine1"]
        rest_hips = REST_OFFSETS[_J["Left_Hip"]] - REST_OFFSETS[_J["Right_Hip"]]
        rest_up = REST_OFFSETS[_J["Spine1"]] - 0.5 * (REST_OFFSETS[_J["Left_Hip"]] + REST_OFFSETS[_J["Right_Hip"]])
        self.world[:, 0] = _align(rest_hips, rest_up, left - right, spine - 0.5 * (left + right))
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
        self.world[:, s1] = _align(0.5 * (rest_left + rest_right), rest_left - rest_right,
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
        """The neck aims at the head's centre (no twist: the head takes it), the head faces between its points."""
        neck, head = _J["Neck"], _J["Head"]
        centre = 0.5 * (self.head_left + self.head_right)
        to_head = centre - self.pos[:, neck]
        self.offsets[head] = _unit(REST_OFFSETS[head]) * np.median(np.linalg.norm(to_head, axis=-1))
        swing = R.quat_between(R.quat_apply(self.world[:, neck], np.broadcast_to(REST_OFFSETS[head], to_head.shape)),
                               to_head)
        self.world[:, neck] = R.quat_multiply(swing, self.world[:, neck])
        self.place("Head")
        self.world[:, head] = _align(REST_OFFSETS[head], _X, to_head, self.head_left - self.head_right)

    def _limb(self, chain, axis):
        """Two-bone IK: the middle joint (knee, elbow) goes where the fixed bone lengths reach the end point
        (ankle, wrist) in the plane of the observed three, so length noise does not pile up at hands and feet.
        Each bone swings onto its point and twists so `axis` follows the bend plane's normal, or the parent's
        frame when the limb is straight and the plane is undefined."""
        top, middle, end = (_J[n] for n in chain)
        upper, lower = self.length(chain[0], chain[1]), self.length(chain[1], chain[2])
        self.offsets[middle] = _unit(REST_OFFSETS[middle]) * upper
        self.offsets[end] = _unit(REST_OFFSETS[end]) * lower
        knee = _two_bone(self.pos[:, top], self.p[chain[1]], self.p[chain[2]], upper, lower)
        normal = np.cross(_unit(knee - self.pos[:, top]), _unit(self.p[chain[2]] - knee))  # length: sin(bend)
        for joint, child, target in ((top, middle, knee), (middle, end, self.p[chain[2]])):
            steady = R.quat_apply(self.world[:, PARENTS[joint]], np.broadcast_to(axis, normal.shape))
            self.world[:, joint] = _align(REST_OFFSETS[child], axis, target - self.pos[:, joint],
                                          normal + _STRAIGHT_WEIGHT * steady)
            self.place(JOINT_NAMES[child])

    def _ankle(self, joint):
        """The ankle aims at the toe; its twist follows the shin (the data's heel points are too noisy for it)."""
        j = _J[joint]
        toe = JOINT_NAMES[j + 3]  # Left_Ankle (7) -> Left_Foot (10)
        self.offsets[_J[toe]] = _unit(REST_OFFSETS[_J[toe]]) * self.length(joint, toe)
        steady = R.quat_apply(self.world[:, PARENTS[j]], np.broadcast_to(_X, (self.frames, 3)))
        self.world[:, j] = _align(REST_OFFSETS[_J[toe]], _X, self.p[toe] - self.pos[:, j], steady)
        self.place(toe)


def _two_bone(top, middle, end, upper, lower):
    """Position of the middle joint with |middle - top| = upper and |end - middle| = lower (as near as the
    distance allows), on the side of the observed middle point."""
    reach = end - top
    distance = np.linalg.norm(reach, axis=-1, keepdims=True)
    along = _unit(reach)
    clamped = np.clip(distance, abs(upper - lower) + 1e-6, upper + lower - 1e-6)
    pole = middle - top
    pole = _unit(pole - np.sum(pole * along, -1, keepdims=True) * along)
    a = (upper ** 2 - lower ** 2 + clamped ** 2) / (2 * clamped)
    return top + a * along + np.sqrt(np.maximum(upper ** 2 - a ** 2, 0.0)) * pole


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
    _check_finite(where, "points", points)
    _check_finite(where, "centre", center)
    meta = info.get(name, {})
    targets, head_left, head_right = ballroom_targets(points, center)
    motion = solve_points(targets, head_left, head_right, float(meta.get("fps", 25)))
    audio = root / "audio" / f"{name}.ogg"
    # The recordings' vertical drifts by up to 40 cm over a dance; ballroom dancers never leave the floor.
    seq = Sequence(name, "ballroom", meta.get("style", ""), _finish(track_floor(motion), fps),
                   audio if meta.get("audio") and audio.is_file() else None, name, bool(meta.get("suspect", False)))
    return (seq, point_errors(motion, targets, head_left, head_right)) if with_error else seq


# --- BVH ------------------------------------------------------------------------------------------------------
def _sided(table):
    """Expand '{S}' (source side word) / '{side}' (SMPL side) templates for both sides."""
    out = {}
    for source, smpl in table.items():
        for words in (dict(S="Left", s="L", side="Left"), dict(S="Right", s="R", side="Right")):
            out[source.format(**words)] = smpl.format(**words)
    return out


# Joint maps of the skeleton families in the shared data (spines are assigned by `_spine_map` for all of them).
BVH_FAMILIES = {
    "perfume": _sided({"Hips": "Pelvis", "Neck": "Neck", "Head": "Head", "{S}Collar": "{side}_Collar",
                       "{S}Shoulder": "{side}_Shoulder", "{S}Elbow": "{side}_Elbow", "{S}Wrist": "{side}_Wrist",
                       "{S}Hip": "{side}_Hip", "{S}Knee": "{side}_Knee", "{S}Ankle": "{side}_Ankle",
                       "{S}Toe": "{side}_Foot"}),
    "bandai-namco": _sided({"Hips": "Pelvis", "Neck": "Neck", "Head": "Head", "Shoulder_{s}": "{side}_Collar",
                            "UpperArm_{s}": "{side}_Shoulder", "LowerArm_{s}": "{side}_Elbow",
                            "Hand_{s}": "{side}_Wrist", "UpperLeg_{s}": "{side}_Hip", "LowerLeg_{s}": "{side}_Knee",
                            "Foot_{s}": "{side}_Ankle", "Toes_{s}": "{side}_Foot"}),
    "mixamo": _sided({"Hips": "Pelvis", "Neck": "Neck", "Head": "Head", "{S}Shoulder": "{side}_Collar",
                      "{S}Arm": "{side}_Shoulder", "{S}ForeArm": "{side}_Elbow", "{S}Hand": "{side}_Wrist",
                      "{S}UpLeg": "{side}_Hip", "{S}Leg": "{side}_Knee", "{S}Foot": "{side}_Ankle",
                      "{S}ToeBase": "{side}_Foot"}),
}
PERFUME_FILES = ("aachan", "kashiyuka", "nocchi", "A_test", "B_test", "C_test")  # one choreography
REQUIRED_JOINTS = ("Pelvis", "Head") + tuple(f"{side}_{part}" for side in ("Left", "Right") for part in (
    "Hip", "Knee", "Ankle", "Shoulder", "Elbow", "Wrist"))
_SPINE = ("Spine1", "Spine2", "Spine3")
# The joint whose direction defines each SMPL joint's bone: the first of these that is mapped.
_AIM = {"Pelvis": ("Neck", "Head"), "Spine1": ("Spine2", "Spine3", "Neck", "Head"), "Spine2": ("Spine3", "Neck", "Head"),
        "Spine3": ("Neck", "Head"), "Neck": ("Head",)}
for _side in ("Left", "Right"):
    _AIM.update({f"{_side}_{a}": (f"{_side}_{b}",) for a, b in (
        ("Collar", "Shoulder"), ("Shoulder", "Elbow"), ("Elbow", "Wrist"), ("Wrist", "Palm"), ("Hip", "Knee"),
        ("Knee", "Ankle"), ("Ankle", "Foot"))})
_FINGERS = ("thumb", "index", "middle", "ring", "pinky", "little", "finger")


def _fuzzy_map(names, parents):
    """SMPL joint -> source joint index for an unknown skeleton: find hands, feet and head by name, then walk up
    the hierarchy (elbow = the hand's parent, shoulder = the elbow's, collar = the shoulder's when it is sided)."""
    keys = [re.sub(r"[^a-z]", "", n.split(":")[-1].lower()) for n in names]
    depth = [0] * len(names)
    for j, p in enumerate(parents):
        depth[j] = 0 if p < 0 else depth[p] + 1

    def side_of(key, name):
        if key.startswith("left") or re.search(r"(^|[^a-z])l([^a-z]|$)", name.lower()) or key.endswith("left"):
            return "Left"
        if key.startswith("right") or re.search(r"(^|[^a-z])r([^a-z]|$)", name.lower()) or key.endswith("right"):
            return "Right"
        return None

    def find(words, side=None, exclude=()):
        hits = [j for j, k in enumerate(keys) if any(w in k for w in words) and not any(x in k for x in exclude)
                and side_of(k, names[j]) == side]
        return min(hits, key=lambda j: depth[j]) if hits else None

    found = {}
    head = find(("head",), exclude=("end", "top", "site"))
    if head is not None:
        found["Head"] = head
        if "neck" in keys[parents[head]]:
            found["Neck"] = parents[head]
    for side in ("Left", "Right"):
        wrist = find(("hand", "wrist"), side, _FINGERS)
        if wrist is not None and parents[wrist] >= 0 and parents[parents[wrist]] >= 0:
            found[f"{side}_Wrist"], found[f"{side}_Elbow"] = wrist, parents[wrist]
            found[f"{side}_Shoulder"] = parents[parents[wrist]]
            collar = parents[found[f"{side}_Shoulder"]]
            if collar >= 0 and side_of(keys[collar], names[collar]) == side:
                found[f"{side}_Collar"] = collar
        ankle = find(("foot", "ankle"), side, ("toe",))
        if ankle is not None and parents[ankle] >= 0 and parents[parents[ankle]] >= 0:
            found[f"{side}_Ankle"], found[f"{side}_Knee"] = ankle, parents[ankle]
            found[f"{side}_Hip"] = parents[parents[ankle]]
            toes = [c for c, p in enumerate(parents) if p == ankle]
            if toes:
                found[f"{side}_Foot"] = toes[0]
    if "Left_Hip" in found and parents[found["Left_Hip"]] >= 0:
        found["Pelvis"] = parents[found["Left_Hip"]]
    return found


def _spine_map(found, parents):
    """Spread the source joints between the pelvis and the neck (or head) over Spine1..3."""
    top = found.get("Neck", found.get("Head"))
    if top is None or "Pelvis" not in found:
        return {}
    chain, j = [], parents[top]
    while j >= 0 and j != found["Pelvis"]:
        chain.insert(0, j)
        j = parents[j]
    if j != found["Pelvis"] or not chain:
        return {}
    if len(chain) == 1:
        return {"Spine3": chain[0]}
    picks = {"Spine1": chain[0], "Spine3": chain[-1]}
    if len(chain) > 2:
        picks["Spine2"] = chain[len(chain) // 2]
    return picks


def bvh_joint_map(bvh, path="BVH"):
    """(family name, {SMPL joint: source joint index}); OnbeatError naming the missing joints if it cannot map."""
    index = {n: i for i, n in enumerate(bvh.names)}
    family, found = "generic", None
    for name, table in BVH_FAMILIES.items():
        if all(source in index for source in table):
            family, found = name, {smpl: index[source] for source, smpl in table.items()}
            break
    if found is None:
        found = _fuzzy_map(bvh.names, list(bvh.parents))
    found.update(_spine_map(found, list(bvh.parents)))
    missing = [j for j in REQUIRED_JOINTS if j not in found]
    if missing:
        raise OnbeatError(f"{path}: cannot map the skeleton to SMPL-24: no joint found for {', '.join(missing)} "
                          f"(joints in the file: {', '.join(bvh.names[:12])}{', ...' if len(bvh.names) > 12 else ''})")
    return family, found


def _unit_scale(length):
    """Metres per file unit: the one of m, cm, mm that makes a head-to-ankle length most human (about 1.4 m)."""
    return min((1.0, 0.01, 0.001), key=lambda unit: abs(np.log(max(length, 1e-9) * unit / 1.4)))


def _rest_positions(offsets, parents):
    """Joint positions of a skeleton with every rotation at identity."""
    rest = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        rest[j] = offsets[j] if p < 0 else rest[p] + offsets[j]
    return rest


SMPL_REST = _rest_positions(REST_OFFSETS, PARENTS)


def _bvh_world_rotations(bvh):
    world = np.empty_like(bvh.rotations)
    for j, p in enumerate(bvh.parents):
        world[:, j] = bvh.rotations[:, j] if p < 0 else R.quat_multiply(world[:, p], bvh.rotations[:, j])
    return world


def _smpl_path(ancestor, joint):
    """SMPL joints from below `ancestor` down to `joint` (inclusive), parents first."""
    path = []
    while joint != ancestor:
        path.insert(0, joint)
        joint = PARENTS[joint]
        if joint < 0:
            raise ValueError("not an ancestor")
    return path


def _is_smpl_skeleton(bvh):
    index = {n: i for i, n in enumerate(bvh.names)}
    return all(n in index for n in JOINT_NAMES) and all(
        (p < 0 and bvh.parents[index[n]] < 0) or (p >= 0 and bvh.parents[index[n]] == index[JOINT_NAMES[p]])
        for n, p in zip(JOINT_NAMES, PARENTS))


def _from_smpl_bvh(bvh, unit):
    """A BVH on SMPL-24 itself (what `onbeat export-bvh` writes): rotations and offsets as they are."""
    order = [bvh.names.index(n) for n in JOINT_NAMES]
    offsets = bvh.offsets[order] * unit
    root = bvh.translations[:, order[0]] * unit - offsets[0]
    return Motion(bvh.fps, root, bvh.rotations[:, order], offsets)


def retarget_bvh(bvh, path="BVH"):
    """The BVH's dance on SMPL-24 (at the file's frame rate, in metres, not grounded)."""
    rest = _rest_positions(bvh.offsets, bvh.parents)
    if _is_smpl_skeleton(bvh):
        head, ankle = bvh.names.index("Head"), bvh.names.index("Left_Ankle")
        return _from_smpl_bvh(bvh, _unit_scale(np.linalg.norm(rest[head] - rest[ankle])))
    _, found = bvh_joint_map(bvh, path)
    unit = _unit_scale(np.linalg.norm(rest[found["Head"]] - rest[found["Left_Ankle"]]))
    rest *= unit
    world = _bvh_world_rotations(bvh)
    positions = bvh.positions() * unit

    # Body axes of both rest poses: a bone's rest alignment keeps its twist relative to the body.
    smpl_rest = SMPL_REST
    top = found.get("Neck", found["Head"])
    src_axes = _frame(rest[found["Left_Hip"]] - rest[found["Right_Hip"]], rest[top] - rest[found["Pelvis"]])
    smpl_axes = _frame(smpl_rest[_J["Left_Hip"]] - smpl_rest[_J["Right_Hip"]],
                       smpl_rest[_J["Neck" if "Neck" in found else "Head"]] - smpl_rest[0])

    target_world = np.empty((bvh.num_frames, NUM_JOINTS, 4))
    alignments = R.quat_identity((NUM_JOINTS,))
    offsets = REST_OFFSETS.copy()
    scaled = np.zeros(NUM_JOINTS, bool)
    for j, name in enumerate(JOINT_NAMES):
        if name not in found:
            target_world[:, j] = target_world[:, PARENTS[j]]
            continue
        start = next((a for a in _ancestors(j) if JOINT_NAMES[a] in found), None)  # nearest mapped ancestor
        aim = next((_J[a] for a in _AIM.get(name, ()) if a in found), None)
        if aim is None:  # a leaf: its bone continues the incoming one
            smpl_dir, src_dir = smpl_rest[j] - smpl_rest[start], rest[found[name]] - rest[found[JOINT_NAMES[start]]]
        else:
            smpl_dir, src_dir = smpl_rest[aim] - smpl_rest[j], rest[found[JOINT_NAMES[aim]]] - rest[found[name]]
        # Twist reference: the body axis (in SMPL's frame: x left, y up, z forward) least aligned with the bone.
        axis = int(np.argmin(np.abs(smpl_axes.T @ _unit(smpl_dir))))
        alignments[j] = _align(smpl_dir, smpl_axes[:, axis], src_dir, src_axes[:, axis])
        target_world[:, j] = R.quat_multiply(world[:, found[name]], alignments[j])
        if start is None:
            continue
        source_bone = rest[found[name]] - rest[found[JOINT_NAMES[start]]]
        chain = _smpl_path(start, j)
        if len(chain) == 1:  # the source bone seen from the parent's SMPL frame: limbs keep SMPL's direction
            offsets[j] = R.quat_apply(R.quat_conjugate(alignments[start]), source_bone)
        else:  # unmapped SMPL joints in between (e.g. Spine2): SMPL's shape, the source's length
            offsets[chain] = REST_OFFSETS[chain] * np.linalg.norm(source_bone) \
                / np.linalg.norm(smpl_rest[j] - smpl_rest[start])
        scaled[chain] = True
    # Unmapped leaves (palms, toes): the body's size relative to SMPL, from the legs and spine.
    body = np.linalg.norm(rest[found["Head"]] - rest[found["Left_Ankle"]]) \
        / np.linalg.norm(smpl_rest[_J["Head"]] - smpl_rest[_J["Left_Ankle"]])
    offsets[~scaled] = REST_OFFSETS[~scaled] * body
    root = positions[:, found["Pelvis"]]
    return Motion(bvh.fps, root, _locals_from_globals(target_world), offsets)


def _ancestors(j):
    out = []
    while PARENTS[j] >= 0:
        j = PARENTS[j]
        out.append(j)
    return out


def load_bvh(path, fps=None):
    """A BVH file of any skeleton as an SMPL-24 Motion, grounded; `fps=None` keeps the file's frame rate.
    A file on SMPL-24 itself is returned as written (not grounded), so onbeat's own exports round-trip."""
    from onbeat.models.bvh import read_bvh
    bvh = read_bvh(path)
    motion = retarget_bvh(bvh, path)
    if _is_smpl_skeleton(bvh):
        return motion if fps is None else motion.resample(fps)
    return _finish(motion, fps)


# --- Motorica -------------------------------------------------------------------------------------------------
# Motorica's joints and their SMPL-24 counterparts. The pickles carry no skeleton; their rotations are local to a
# T-pose rest with SMPL's axes (x = the character's left, y up, z forward): knees bend about +x and the left and
# right elbows about -y and +y, as in SMPL (checked on the data), so the local rotations transfer as they are.
MOTORICA_JOINTS = _sided({"{S}UpLeg": "{side}_Hip", "{S}Leg": "{side}_Knee", "{S}Foot": "{side}_Ankle",
                          "{S}Shoulder": "{side}_Collar", "{S}Arm": "{side}_Shoulder",
                          "{S}ForeArm": "{side}_Elbow", "{S}Hand": "{side}_Wrist"})
MOTORICA_JOINTS.update({"Hips": "Pelvis", "Spine": "Spine1", "Spine1": "Spine3", "Neck": "Neck", "Head": "Head"})
MOTORICA_ROOT = ("Hips_Yposition", "reference_dXposition", "reference_dZposition", "reference_dYrotation")
MOTORICA_STYLES = {"gKR": "krump", "gLH": "hiphop", "gLO": "locking", "gPO": "popping", "gJZ": "jazz",
                   "gCH": "charleston", "gTP": "tap", "gCA": "casual"}
MOTORICA_FPS = 30
MOTORICA_CM = 0.01


def motorica_take(path):
    """The take a Motorica file belongs to: its name without the `_00`/`_01` sub-sampling phase."""
    stem = Path(path).name.split(".")[0]
    return re.sub(r"_\d\d$", "", stem)


def _read_pickle(path, what):
    """A pickle's content; OnbeatError for missing, truncated or foreign files."""
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


def _integrate_heading(d_yaw, dx, dz):
    """pymo's inverse of RootTransformer('pos_rot_deltas'): yaw_t = yaw_{t-1} + dyaw_t, and the ground velocity
    (dx, dz) of frame t is in the frame of yaw_t. Frame 0 starts at the origin facing +z."""
    yaw = np.concatenate([[0.0], np.cumsum(d_yaw[1:])])
    step = np.stack([dx * np.cos(yaw) + dz * np.sin(yaw), np.zeros_like(dx), -dx * np.sin(yaw) + dz * np.cos(yaw)], -1)
    step[0] = 0.0
    return yaw, np.cumsum(step, axis=0)


def motorica_motion(frame, path="Motorica"):
    """A Motorica expmap table (pandas DataFrame) as a Motion at 30 fps (metres, not grounded)."""
    columns = [f"{joint}_{c}" for joint in MOTORICA_JOINTS for c in ("alpha", "beta", "gamma")] + list(MOTORICA_ROOT)
    missing = [c for c in columns if c not in getattr(frame, "columns", ())]
    if missing:
        raise OnbeatError(f"{path}: not a Motorica expmap table (missing columns {', '.join(missing[:6])}"
                          f"{', ...' if len(missing) > 6 else ''})")
    values = np.asarray(frame[columns].to_numpy(), dtype=np.float64)
    if len(values) < 2:
        raise OnbeatError(f"{path}: needs at least 2 frames, has {len(values)}")
    _check_finite(path, "the table", values)
    joints = len(MOTORICA_JOINTS)
    expmaps = values[:, :3 * joints].reshape(-1, joints, 3)
    height, dx, dz, d_yaw = (values[:, 3 * joints + i] for i in range(4))
    yaw, ground_path = _integrate_heading(d_yaw, dx * MOTORICA_CM, dz * MOTORICA_CM)

    rotations = R.quat_identity((len(values), NUM_JOINTS))
    for k, smpl in enumerate(MOTORICA_JOINTS.values()):
        rotations[:, _J[smpl]] = R.quat_from_axis_angle(expmaps[:, k])
    # The hips rotation is stored relative to the heading; put the heading back.
    heading = R.quat_from_axis_angle(yaw[:, None] * _Y)
    rotations[:, 0] = R.quat_multiply(heading, rotations[:, 0])
    root = ground_path + height[:, None] * MOTORICA_CM * _Y
    # Bone lengths: SMPL's, scaled so the standing hip height (95th percentile) matches the dancer's.
    scale = np.percentile(height * MOTORICA_CM, 95) / (SMPL_REST[0, 1] - SMPL_REST[_J["Left_Ankle"], 1] + 0.08)
    return Motion(MOTORICA_FPS, root, rotations, REST_OFFSETS * scale)


def load_motorica(path, fps=TARGET_FPS):
    """One Motorica `*.expmap_30fps.pkl` file as a Sequence (take = the file without its `_00`/`_01` phase)."""
    path = Path(path)
    motion = _finish(motorica_motion(_read_pickle(path, "pandas"), path), fps)
    style = next((s for code, s in MOTORICA_STYLES.items() if f"_{code}_" in path.name), "")
    return Sequence(path.name.split(".")[0], "motorica", style, motion, None, motorica_take(path), False)


# --- AIST++ ---------------------------------------------------------------------------------------------------
AIST_FPS = 60


def aist_motion(data, path="AIST++"):
    """An AIST++ motion dict (smpl_poses (T, 72), smpl_trans (T, 3), smpl_scaling (1,)) as a Motion at 60 fps.
    AIST++ stores the translation of a body scaled by smpl_scaling (in cm-like units); dividing gives metres."""
    if not isinstance(data, dict) or not {"smpl_poses", "smpl_trans", "smpl_scaling"} <= set(data):
        raise OnbeatError(f"{path}: not an AIST++ motion pickle (needs smpl_poses, smpl_trans, smpl_scaling)")
    try:
        poses = np.asarray(data["smpl_poses"], dtype=np.float64)
        trans = np.asarray(data["smpl_trans"], dtype=np.float64)
        scaling = float(np.asarray(data["smpl_scaling"], dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError) as e:
        raise OnbeatError(f"{path}: AIST++ arrays have the wrong type or shape ({e})") from None
    if poses.ndim != 2 or poses.shape[1] != 72 or poses.shape[0] < 2 or trans.shape != (len(poses), 3):
        raise OnbeatError(f"{path}: expected smpl_poses (T, 72) and smpl_trans (T, 3) with T >= 2, "
                          f"got {poses.shape} and {trans.shape}")
    for name, array in (("smpl_poses", poses), ("smpl_trans", trans)):
        _check_finite(path, name, array)
    if not np.isfinite(scaling) or scaling <= 0:
        raise OnbeatError(f"{path}: smpl_scaling must be positive, got {scaling}")
    return Motion.from_axis_angle(AIST_FPS, trans / scaling, poses)


def load_aist(path, fps=TARGET_FPS):
    path = Path(path)
    return _finish(aist_motion(_read_pickle(path, "pickle"), path), fps)


# --- entry points ---------------------------------------------------------------------------------------------
def load_pickle_motion(path, fps=TARGET_FPS):
    """A Motorica expmap table or an AIST++ motion dict, told apart by content."""
    content = _read_pickle(path, "pandas")
    if isinstance(content, dict):
        return _finish(aist_motion(content, path), fps)
    return _finish(motorica_motion(content, path), fps)


def load_motion(path_or_name, fps=None):
    """Any motion a user can name, as an SMPL-24 Motion: an onbeat `.npz`, a `.bvh` (both at their own frame
    rate unless `fps` is given), an AIST++ or Motorica `.pkl`, or a sequence of the shared data by name
    (`DANCE_C_2`, a Motorica file stem, a BVH stem; these come at 30 fps)."""
    path = Path(path_or_name)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            motion = Motion.load(path)
            return motion if fps is None else motion.resample(fps)
        if suffix == ".bvh":
            return load_bvh(path, fps)
        if suffix == ".pkl":
            return load_pickle_motion(path, fps or TARGET_FPS)
        raise OnbeatError(f"{path}: unknown motion file type '{path.suffix}' (expected .npz, .bvh or .pkl)")
    sequence = _find_sequence(str(path_or_name))
    return sequence.motion if fps is None else sequence.motion.resample(fps)


def _find_sequence(name):
    from onbeat.models.paths import data_root
    root = data_root()
    if root is None:
        raise OnbeatError(f"{name}: no such file (and the shared data, where a sequence name would be looked up, "
                          "is not here)")
    name = name.split("/")[-1]
    if (root / "ballroom" / "motion.npz").is_file() and name in ballroom_names(root / "ballroom"):
        return load_ballroom(root / "ballroom", name)
    for path in sorted((root / "motorica").glob(f"{name}*.expmap_30fps.pkl"))[:1]:
        return load_motorica(path)
    if (root / "bvh" / f"{name}.bvh").is_file():
        return _bvh_sequence(root / "bvh" / f"{name}.bvh")
    raise OnbeatError(f"{name}: no such file, and no sequence of that name in {root}")


def _bvh_sequence(path):
    motion = load_bvh(path, TARGET_FPS)
    # Perfume's files are three dancers (and test clips) of one choreography: one take, so no split separates them.
    take = "perfume" if path.stem in PERFUME_FILES else path.stem
    return Sequence(path.stem, "bvh", "", motion, None, take, False)


SOURCES = ("ballroom", "motorica", "bvh", "aist")


def iter_dataset(data_root, sources=("ballroom", "motorica", "bvh")):
    """Every sequence of the chosen data sets under `data_root`, as Sequence values at 30 fps."""
    root = Path(data_root)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise OnbeatError(f"unknown data set(s) {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    for source in sources:
        folder = root / source
        if not folder.is_dir():
            raise OnbeatError(f"{folder}: data set folder not found")
        if source == "ballroom":
            for name in ballroom_names(folder):
                yield load_ballroom(folder, name)
        elif source == "motorica":
            for path in sorted(folder.glob("*.expmap_30fps.pkl")):
                yield load_motorica(path)
        elif source == "bvh":
            for path in sorted(folder.glob("*.bvh")):
                yield _bvh_sequence(path)
        else:
            for path in sorted(folder.rglob("*.pkl")):
                yield Sequence(path.stem, "aist", "", load_aist(path), None, path.stem, False)
