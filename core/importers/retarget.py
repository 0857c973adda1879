"""BVH of any skeleton retargeted to SMPL-24 by joint names.

Joints are mapped by the table of a known skeleton family, else found by fuzzy names (hands, feet, head) and the
hierarchy above them. Rotations go through world space: SMPL joint j's world rotation is the source joint's world
rotation times a fixed rest alignment that turns SMPL's rest bone (and a body axis, for the twist) onto the
source's, so skeletons with other rest poses (T, A, other axes) agree. Offsets are the source's bones seen from
SMPL's frames (limbs keep SMPL's directions), so FK lands the joints where the source has them. Units (m, cm, mm)
are told from the body's size. A BVH already on SMPL-24 (what `onbeat export-bvh` writes) is read as it is.
`load_bvh` then drops a calibration pose at the start and spreads the source's own glitches (`clean_turns`).
"""
import logging
import re

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.importers.common import (
    SMPL_REST,
    align,
    finish,
    frame,
    limit_turn_speed,
    locals_from_globals,
    rest_positions,
    sided,
    turn_angles,
    unit,
)
from onbeat.core.motion import Motion
from onbeat.core.skeleton import JOINT_INDEX as _J
from onbeat.core.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, REST_OFFSETS

logger = logging.getLogger(__name__)

# Joint maps of the skeleton families in the shared data (spines are assigned by `_spine_map` for all of them).
BVH_FAMILIES = {
    "perfume": sided({"Hips": "Pelvis", "Neck": "Neck", "Head": "Head", "{S}Collar": "{side}_Collar",
                      "{S}Shoulder": "{side}_Shoulder", "{S}Elbow": "{side}_Elbow", "{S}Wrist": "{side}_Wrist",
                      "{S}Hip": "{side}_Hip", "{S}Knee": "{side}_Knee", "{S}Ankle": "{side}_Ankle",
                      "{S}Toe": "{side}_Foot"}),
    "bandai-namco": sided({"Hips": "Pelvis", "Neck": "Neck", "Head": "Head", "Shoulder_{s}": "{side}_Collar",
                           "UpperArm_{s}": "{side}_Shoulder", "LowerArm_{s}": "{side}_Elbow",
                           "Hand_{s}": "{side}_Wrist", "UpperLeg_{s}": "{side}_Hip", "LowerLeg_{s}": "{side}_Knee",
                           "Foot_{s}": "{side}_Ankle", "Toes_{s}": "{side}_Foot"}),
    "mixamo": sided({"Hips": "Pelvis", "Neck": "Neck", "Head": "Head", "{S}Shoulder": "{side}_Collar",
                     "{S}Arm": "{side}_Shoulder", "{S}ForeArm": "{side}_Elbow", "{S}Hand": "{side}_Wrist",
                     "{S}UpLeg": "{side}_Hip", "{S}Leg": "{side}_Knee", "{S}Foot": "{side}_Ankle",
                     "{S}ToeBase": "{side}_Foot"}),
}
PERFUME_FILES = ("aachan", "kashiyuka", "nocchi", "A_test", "B_test", "C_test")  # one choreography
DANCEDB_FILES = ("olivia", "vaso", "elena")
BVH_STYLES = {"perfume": "j-pop"}  # the style label of each BVH corpus that has one (the others: unknown)


def bvh_corpus(stem):
    """The collection a BVH file of the shared data belongs to, by its name: "perfume", "dancedb",
    "bandai-namco" (its files are named "dataset-N_..."), or "bvh" for any other."""
    if stem in PERFUME_FILES:
        return "perfume"
    if stem in DANCEDB_FILES:
        return "dancedb"
    return "bandai-namco" if re.match(r"dataset-\d+_", stem) else "bvh"
REQUIRED_JOINTS = ("Pelvis", "Head") + tuple(f"{side}_{part}" for side in ("Left", "Right") for part in (
    "Hip", "Knee", "Ankle", "Shoulder", "Elbow", "Wrist"))
# The joint whose direction defines each SMPL joint's bone: the first of these that is mapped.
_AIM = {"Pelvis": ("Neck", "Head"), "Spine1": ("Spine2", "Spine3", "Neck", "Head"),
        "Spine2": ("Spine3", "Neck", "Head"), "Spine3": ("Neck", "Head"), "Neck": ("Head",)}
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
    chain: list[int] = []
    j = parents[top]
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
    return min((1.0, 0.01, 0.001), key=lambda scale: abs(np.log(max(length, 1e-9) * scale / 1.4)))


def _smpl_path(ancestor, joint):
    """SMPL joints from below `ancestor` down to `joint` (inclusive), parents first."""
    path: list[int] = []
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
        for n, p in zip(JOINT_NAMES, PARENTS, strict=True))


def _from_smpl_bvh(bvh, scale):
    """A BVH on SMPL-24 itself (what `onbeat export-bvh` writes): rotations and offsets as they are."""
    order = [bvh.names.index(n) for n in JOINT_NAMES]
    offsets = bvh.offsets[order] * scale
    root = bvh.translations[:, order[0]] * scale - offsets[0]
    return Motion(bvh.fps, root, bvh.rotations[:, order], offsets)


def retarget_bvh(bvh, path="BVH"):
    """The BVH's dance on SMPL-24 (at the file's frame rate, in metres, not grounded)."""
    rest = rest_positions(bvh.offsets, bvh.parents)
    if _is_smpl_skeleton(bvh):
        head, ankle = bvh.names.index("Head"), bvh.names.index("Left_Ankle")
        return _from_smpl_bvh(bvh, _unit_scale(np.linalg.norm(rest[head] - rest[ankle])))
    _, found = bvh_joint_map(bvh, path)
    scale = _unit_scale(np.linalg.norm(rest[found["Head"]] - rest[found["Left_Ankle"]]))
    rest *= scale
    world = bvh.global_rotations()
    positions = bvh.positions(world) * scale

    # Body axes of both rest poses: a bone's rest alignment keeps its twist relative to the body.
    smpl_rest = SMPL_REST
    top = found.get("Neck", found["Head"])
    src_axes = frame(rest[found["Left_Hip"]] - rest[found["Right_Hip"]], rest[top] - rest[found["Pelvis"]])
    smpl_axes = frame(smpl_rest[_J["Left_Hip"]] - smpl_rest[_J["Right_Hip"]],
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
            assert start is not None  # a leaf is never the pelvis, which is always mapped
            smpl_dir, src_dir = smpl_rest[j] - smpl_rest[start], rest[found[name]] - rest[found[JOINT_NAMES[start]]]
        else:
            smpl_dir, src_dir = smpl_rest[aim] - smpl_rest[j], rest[found[JOINT_NAMES[aim]]] - rest[found[name]]
        # Twist reference: the body axis (in SMPL's frame: x left, y up, z forward) least aligned with the bone.
        axis = int(np.argmin(np.abs(smpl_axes.T @ unit(smpl_dir))))
        alignments[j] = align(smpl_dir, smpl_axes[:, axis], src_dir, src_axes[:, axis])
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
    return Motion(bvh.fps, root, locals_from_globals(target_world), offsets)


def _ancestors(j):
    out = []
    while PARENTS[j] >= 0:
        j = PARENTS[j]
        out.append(j)
    return out


# Mocap solves glitch: in DanceDB a neck swings 60 degrees within one frame and back, a forearm's twist flips
# 136 degrees and unwinds. Steps faster than the pop metric's threshold (30 degrees per 1/60 s, where an avatar
# visibly spins the joint) are spread over the fewest frames that bring them under it (`limit_turn_speed`).
TURN_LIMIT = 1800.0  # degrees per second
CALIBRATION_JOINTS = 3  # a first frame from which this many joints jump is a calibration pose


def clean_turns(motion, path="BVH"):
    """The motion without a leading calibration pose (Perfume's files start with one T-pose frame) and with its
    glitches spread (see `TURN_LIMIT`); logs what it changed."""
    step_limit = np.radians(TURN_LIMIT) / motion.fps
    start = 0
    while start < min(3, motion.num_frames - 2) and \
            np.sum(turn_angles(motion.rotations[start:start + 2])[0] > step_limit) >= CALIBRATION_JOINTS:
        start += 1
    rotations, repaired = limit_turn_speed(motion.rotations[start:], motion.fps, TURN_LIMIT)
    if start or repaired:
        logger.debug("%s: %d calibration frame(s) dropped, %d joint steps faster than %g degrees/s spread",
                     path, start, repaired, TURN_LIMIT)
    return Motion(motion.fps, motion.root_translation[start:], rotations, motion.offsets), start


def load_bvh(path, fps=None, with_error=False):
    """A BVH file of any skeleton as an SMPL-24 Motion, grounded, glitches spread; `fps=None` keeps the file's
    frame rate. A file on SMPL-24 itself is returned as written (not grounded), so onbeat's own exports round-trip.
    `with_error` also returns (T, K) distances (metres, at the file's rate) between FK of the retargeted motion and
    the file's own joint positions, for the K joints mapped (see `retarget_error_report`)."""
    from onbeat.core.bvh import read_bvh
    bvh = read_bvh(path)
    motion = retarget_bvh(bvh, path)
    if _is_smpl_skeleton(bvh):
        motion = motion if fps is None else motion.resample(fps)
        return (motion, np.zeros((motion.num_frames, 0))) if with_error else motion
    motion, start = clean_turns(motion, path)
    result = finish(motion, fps)
    return (result, retarget_errors(bvh, motion, path, start)) if with_error else result


def retarget_errors(bvh, motion, path="BVH", start=0):
    """(T, K) distance (metres) between FK(motion) and the BVH's positions of the K mapped joints from frame
    `start` on (where the motion begins)."""
    _, found = bvh_joint_map(bvh, path)
    rest = rest_positions(bvh.offsets, bvh.parents)
    scale = _unit_scale(np.linalg.norm(rest[found["Head"]] - rest[found["Left_Ankle"]]))
    source = bvh.positions()[start:] * scale
    mapped = [n for n in JOINT_NAMES if n in found]
    ours = motion.positions()[:, [_J[n] for n in mapped]]
    return np.linalg.norm(ours - source[:, [found[n] for n in mapped]], axis=-1)


def retarget_error_report(paths):
    """FK error of the retargeted motion against the files' own joint positions, over every frame and mapped joint
    of `paths`: mean, 95th percentile and maximum in centimetres."""
    errors = np.concatenate([load_bvh(path, with_error=True)[1].ravel() for path in paths]) * 100
    return dict(mean=float(errors.mean()), p95=float(np.percentile(errors, 95)), max=float(errors.max()))
