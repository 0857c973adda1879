import json
import pickle

import numpy as np
import pandas as pd
import pytest

from onbeat.core import importers as I
from onbeat.core import rotations as R
from onbeat.core.bvh import read_bvh, write_bvh
from onbeat.core.errors import OnbeatError
from onbeat.core.importers import ballroom, motorica, retarget
from onbeat.core.importers.common import X_AXIS, Y_AXIS, smooth_twist, turn_angles
from onbeat.core.motion import Motion
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS
from onbeat.evaluation import metrics

HEAD, PELVIS = JOINT_INDEX["Head"], JOINT_INDEX["Pelvis"]
HEAD_TOP = 0.1  # SMPL's Head joint sits about 10 cm below the top of the head


def random_motion(frames=40, fps=30.0, seed=0, spread=0.4):
    """A smooth, random dance on SMPL-24 (rotations up to about `spread` radians per joint)."""
    rng = np.random.default_rng(seed)
    keys = rng.normal(0, spread, (4, NUM_JOINTS, 3))
    time = np.linspace(0, 3, frames)
    axis_angle = np.stack([np.interp(time, np.arange(4), keys[:, j, k]) for j in range(NUM_JOINTS)
                           for k in range(3)], -1).reshape(frames, NUM_JOINTS, 3)
    root = np.stack([np.sin(time), 0.9 + 0.05 * np.cos(3 * time), time], -1)
    return Motion.from_axis_angle(fps, root, axis_angle)


def plausible(motion):
    """Problems (a list of strings) with a dance that a person could not have made."""
    pos = motion.positions()
    problems = []
    if not (np.isfinite(pos).all() and np.isclose(motion.fps, 30.0)):
        problems.append("not finite or not 30 fps")
    if (pos[:, HEAD, 1] > pos[:, PELVIS, 1]).mean() < 0.95:
        problems.append("head below the pelvis too often")
    lowest = pos[:, list(FOOT_JOINTS), 1].min(axis=1)
    if not (abs(np.percentile(lowest, 5)) < 0.02 and np.median(lowest) < 0.15):
        problems.append(f"feet off the floor (median lowest foot {np.median(lowest):.2f} m)")
    height = np.percentile(pos[:, HEAD, 1] - lowest, 95) + HEAD_TOP
    if not 1.3 <= height <= 2.1:
        problems.append(f"body height {height:.2f} m")
    return problems


# --- ballroom -------------------------------------------------------------------------------------------------
def head_points(motion):
    """Left and right head points 7 cm beside the Head joint, as the ballroom markers are."""
    pos, world = motion.positions(), motion.global_rotations()
    side = R.quat_apply(world[:, HEAD], np.broadcast_to([0.07, 0, 0], (motion.num_frames, 3)))
    return pos[:, HEAD] + side, pos[:, HEAD] - side


def known_skeleton_points(motion):
    """(targets, head left, head right) from FK of `motion` with its unobserved joints (spine 2/3, collars, feet,
    wrists, palms) at rest rotations, so a solver can reproduce every point."""
    rest_like = [JOINT_INDEX[n] for n in ("Spine2", "Spine3", "Left_Collar", "Right_Collar", "Left_Foot",
                                          "Right_Foot", "Left_Wrist", "Right_Wrist", "Left_Palm", "Right_Palm")]
    motion.rotations[:, rest_like] = R.quat_identity((motion.num_frames, len(rest_like)))
    pos = motion.positions()
    return {name: pos[:, JOINT_INDEX[name]] for name in ballroom.BALLROOM_POINTS}, *head_points(motion)


MIDDLE_POINTS = ("Left_Knee", "Right_Knee", "Left_Elbow", "Right_Elbow")


def test_point_ik_reproduces_points_of_a_known_skeleton():
    # Knees and elbows are hinges (as the solver makes them), bent 30-80 degrees, so their markers define the bend
    # plane; the rest of the dance is random.
    motion = random_motion()
    bends = np.radians(55 + 25 * np.sin(np.linspace(0, 6, motion.num_frames)))[:, None]
    hinges = (("Left_Knee", X_AXIS), ("Right_Knee", X_AXIS), ("Left_Elbow", -Y_AXIS), ("Right_Elbow", Y_AXIS))
    for joint, axis in hinges:
        motion.rotations[:, JOINT_INDEX[joint]] = R.quat_from_axis_angle(bends * axis)
    targets, left, right = known_skeleton_points(motion)
    solved = I.solve_points(targets, left, right, 30.0)
    errors = I.point_errors(solved, targets, left, right)
    middle = [list(targets).index(n) for n in MIDDLE_POINTS]
    assert np.delete(errors, middle, axis=1).max() < 1e-3
    # on the smoothed hinge: it lags a thigh or upper arm twisting fast by a little
    assert errors[:, middle].max() < 0.02 and errors[:, middle].mean() < 0.002
    # Limbs keep SMPL's bone directions: the solved offsets are the rest offsets (a rigid torso is fitted).
    limbs = [JOINT_INDEX[n] for n in ("Left_Knee", "Left_Ankle", "Right_Elbow", "Right_Wrist")]
    assert np.allclose(solved.offsets[limbs], random_motion().offsets[limbs], atol=1e-6)


def test_a_straight_arm_with_marker_noise_does_not_flip_its_twist():
    """The twist-flip case: an outstretched arm (the ballroom hold) whose elbow marker slips 3 cm across the
    shoulder-wrist line and back (the real elbow markers are 3-4 cm off the solved joint), so the bend plane's
    normal turns over at each crossing. The hinge must stay where it was, the arm slightly bent its own way."""
    motion = random_motion(frames=90, spread=0.2)
    elbow, wrist = JOINT_INDEX["Right_Elbow"], JOINT_INDEX["Right_Wrist"]
    straight = R.quat_between(motion.offsets[wrist], motion.offsets[elbow])  # the forearm continues the upper arm
    motion.rotations[:, elbow] = np.broadcast_to(straight, (90, 4))
    targets, left, right = known_skeleton_points(motion)
    line = targets["Right_Wrist"] - targets["Right_Shoulder"]
    across = np.cross(line, [0.0, 0.0, 1.0])
    slip = 0.03 * np.cos(2 * np.pi * np.arange(90) / 45)[:, None]  # across the line and back, twice
    targets["Right_Elbow"] = targets["Right_Elbow"] + slip * across / np.linalg.norm(across, axis=-1, keepdims=True)
    shoulder, marker, hand = (targets[f"Right_{j}"] for j in ("Shoulder", "Elbow", "Wrist"))
    normals = np.cross(marker - shoulder, hand - marker)
    turns = np.degrees(np.arccos(np.clip(np.sum(normals[1:] * normals[:-1], -1) / np.prod(
        np.linalg.norm([normals[1:], normals[:-1]], axis=-1), 0), -1, 1)))
    assert (turns > 150).sum() == 4  # the markers' bend plane really does flip, at each crossing

    solved = I.solve_points(targets, left, right, 30.0)
    arm = [JOINT_INDEX[n] for n in ("Right_Shoulder", "Right_Elbow", "Right_Wrist")]
    assert metrics.rotation_pops(solved.rotations, 30.0)[arm].max() == 0.0
    assert np.degrees(turn_angles(solved.rotations[:, arm])).max() < 15.0  # no flips, not even slow ones
    errors = I.point_errors(solved, targets, left, right)
    assert errors[:, list(targets).index("Right_Wrist")].max() < 1e-3  # the hand still goes where it was
    assert errors[:, list(targets).index("Right_Elbow")].max() < 0.07  # at most twice the marker's slip


def test_smooth_twist_follows_evidence_and_glides_without_it():
    t = np.arange(120)
    turning = np.angle(np.exp(1j * 0.08 * t))  # a steady turn, observed wrapped into (-pi, pi]
    followed = smooth_twist(turning, np.full(120, 0.5))
    np.testing.assert_allclose(followed, 0.08 * t, atol=0.02)  # unwrapped, no lag on a steady turn
    rng = np.random.default_rng(0)
    noisy = np.concatenate([np.zeros(40), rng.uniform(-np.pi, np.pi, 40), np.full(40, 1.0)])
    weight = np.concatenate([np.full(40, 0.5), np.full(40, 0.002), np.full(40, 0.5)])
    glided = smooth_twist(noisy, weight)
    assert np.abs(np.diff(glided)).max() < np.radians(3)  # from 0 to 1 rad through the noise, smoothly
    assert abs(glided[5]) < 0.02 and abs(glided[-5] - 1.0) < 0.02
    assert np.allclose(smooth_twist(np.full(10, 2.0), np.zeros(10)), 0.0)  # no evidence: the reference


@pytest.fixture(scope="module")
def ballroom_dir(data_dir):
    return data_dir / "ballroom"


@pytest.mark.slow
def test_ballroom_ik_error_is_small(ballroom_dir):
    """On two sequences of each style; `ik_error_report(root)` measures all 45 (for the closing note)."""
    names = I.ballroom_names(ballroom_dir)
    sample = [n for style in "CRTW" for n in [x for x in names if x.startswith(f"DANCE_{style}_")][:2]]
    report = ballroom.ik_error_report(ballroom_dir, sample)
    assert report["mean"] < 3.0, report
    assert report["p95"] < 12.0, report


@pytest.mark.slow
def test_every_ballroom_sequence_loads(ballroom_dir):
    info = json.loads((ballroom_dir / "motion.json").read_text())
    names = I.ballroom_names(ballroom_dir)
    assert len(names) == 45
    total = 0.0
    for name in names:
        seq = I.load_ballroom(ballroom_dir, name)
        assert plausible(seq.motion) == [], name
        assert seq.style == info[name]["style"] and seq.suspect == info[name]["suspect"]
        assert (seq.audio_path is not None) == info[name]["audio"]
        assert abs(seq.motion.duration - info[name]["frames"] / 25) < 0.1
        total += seq.motion.duration
    assert total > 40 * 60


def test_broken_ballroom_files_raise_clear_errors(tmp_path):
    points = np.zeros((10, 23, 3), np.float32)
    points[3, 5, 1] = np.nan
    np.savez(tmp_path / "motion.npz", DANCE_X_1=points, DANCE_X_1__center=np.zeros((10, 3)),
             DANCE_X_2=np.zeros((10, 22, 3)), DANCE_X_2__center=np.zeros((10, 3)))
    (tmp_path / "motion.json").write_text("{}")
    for name, problem in (("DANCE_X_1", "NaN"), ("DANCE_X_2", "(frames, 23, 3)"), ("DANCE_X_3", "no such")):
        with pytest.raises(OnbeatError, match="motion.npz") as error:
            I.load_ballroom(tmp_path, name)
        assert name in str(error.value) and problem in str(error.value)
    (tmp_path / "motion.npz").write_bytes(b"truncated")
    with pytest.raises(OnbeatError, match="cannot read the ballroom data"):
        I.load_ballroom(tmp_path, "DANCE_X_1")


# --- BVH ------------------------------------------------------------------------------------------------------
BVH_FAMILIES = {"aachan": "perfume", "A_test": "perfume", "dataset-1_dance-short_normal_001": "bandai-namco",
                "elena": "mixamo", "olivia": "mixamo", "vaso": "mixamo"}


@pytest.mark.parametrize("name", sorted(BVH_FAMILIES))
def test_real_bvh_files_map_and_retarget(data_dir, name):
    path = data_dir / "bvh" / f"{name}.bvh"
    bvh = read_bvh(path)
    family, found = I.bvh_joint_map(bvh, path)
    assert family == BVH_FAMILIES[name]
    assert {"Spine1", "Spine3", "Left_Collar", "Right_Foot"} <= set(found)
    # FK on SMPL-24 lands the mapped joints where the source's are (same bone lengths, rest poses aligned).
    motion = I.retarget_bvh(bvh, path)
    source = bvh.positions() * 0.01  # these files are in centimetres
    error = np.stack([np.linalg.norm(motion.positions()[:, JOINT_INDEX[j]] - source[:, s], axis=-1)
                      for j, s in found.items()])
    assert error.mean() < 0.03, error.mean()
    assert plausible(I.load_bvh(path, fps=30)) == []


@pytest.mark.slow
def test_every_collection_pops_no_more_than_the_perfume_takes(data_dir):
    """The Perfume takes as written (retargeted, no cleaning) are the reference; every collection the importers
    give (ballroom IK, Motorica, Perfume, DanceDB and Bandai-Namco retargets) pops no more, with FK still < 3 cm."""
    from onbeat.evaluation import data_check
    reference = data_check.perfume_reference(data_dir)
    assert reference.share > 0  # the reference is not trivially clean
    counts = data_check.collection_pops(data_dir)
    assert set(counts) == {"ballroom", "motorica", "perfume", "dancedb", "bandai-namco"}
    assert {name: count.share for name, count in counts.items() if count.share > reference.share} == {}
    errors = data_check.fk_errors(data_dir)
    assert {what: r["mean"] for what, r in errors.items() if r["mean"] >= 3.0} == {}


@pytest.mark.slow
def test_every_bvh_file_loads_at_30_fps(data_dir):
    seqs = list(I.iter_dataset(data_dir, sources=("bvh",)))
    assert len(seqs) == 10 and all(s.motion.fps == 30 for s in seqs)
    assert {s.take for s in seqs if s.name in retarget.PERFUME_FILES} == {"perfume"}
    assert all(plausible(s.motion) == [] for s in seqs), [(s.name, plausible(s.motion)) for s in seqs]


def renamed_bvh(tmp_path, motion, rename):
    """`motion` written as BVH with its joints renamed: another skeleton family with SMPL's rest pose."""
    write_bvh(motion, tmp_path / "smpl.bvh")
    text = (tmp_path / "smpl.bvh").read_text()
    for old, new in rename.items():
        text = text.replace(f"JOINT {old}\n", f"JOINT {new}\n").replace(f"ROOT {old}\n", f"ROOT {new}\n")
    (tmp_path / "renamed.bvh").write_text(text)
    return tmp_path / "renamed.bvh"


FUZZY_RENAME = {"Pelvis": "mixamorig:Hips", "Spine1": "mixamorig:Spine", "Spine2": "mixamorig:Spine1",
                "Spine3": "mixamorig:Spine2", "Neck": "mixamorig:Neck", "Head": "mixamorig:Head"}
for _side, _s in (("Left", "L"), ("Right", "R")):
    FUZZY_RENAME.update({f"{_side}_Hip": f"{_s}_Thigh", f"{_side}_Knee": f"{_s}_Calf", f"{_side}_Ankle": f"{_s}_Foot",
                         f"{_side}_Foot": f"{_s}_Toe0", f"{_side}_Collar": f"{_s}_Clavicle",
                         f"{_side}_Shoulder": f"{_s}_UpperArm", f"{_side}_Elbow": f"{_s}_Forearm",
                         f"{_side}_Wrist": f"{_s}_Hand", f"{_side}_Palm": f"{_s}_Finger0"})


def test_unknown_family_maps_by_fuzzy_names(tmp_path):
    motion = random_motion()
    path = renamed_bvh(tmp_path, motion, FUZZY_RENAME)
    family, found = I.bvh_joint_map(read_bvh(path), path)
    assert family == "generic"
    by_name = {n: i for i, n in enumerate(read_bvh(path).names)}
    assert all(found[smpl] == by_name[source] for smpl, source in FUZZY_RENAME.items() if "Palm" not in smpl)
    # SMPL's own rest pose: every joint lands where it was.
    again = I.retarget_bvh(read_bvh(path), path)
    assert np.abs(again.positions()[:, :22] - motion.positions()[:, :22]).max() < 1e-3


def test_bvh_glitches_are_spread_and_a_calibration_frame_dropped(tmp_path):
    """A mocap solve's twist flip (the forearm turned 150 degrees about itself for two frames, as in DanceDB) and a
    calibration pose before the dance (Perfume's files start with one): the retarget keeps neither."""
    motion = random_motion(frames=60)
    turned = R.quat_from_axis_angle(np.broadcast_to([np.pi / 2, 0, 0], (NUM_JOINTS, 3)))
    motion.rotations[0] = R.quat_multiply(motion.rotations[1], turned)  # every joint 90 degrees away
    elbow, wrist = JOINT_INDEX["Left_Elbow"], JOINT_INDEX["Left_Wrist"]
    flip = R.quat_from_axis_angle(np.radians(150) * motion.offsets[wrist] / np.linalg.norm(motion.offsets[wrist]))
    motion.rotations[30:32, elbow] = R.quat_multiply(motion.rotations[30:32, elbow], flip)
    path = renamed_bvh(tmp_path, motion, FUZZY_RENAME)
    assert metrics.rotation_pops(I.retarget_bvh(read_bvh(path), path).rotations, 30)[elbow] > 0  # pops as written

    loaded, errors = retarget.load_bvh(path, with_error=True)
    assert loaded.num_frames == 59  # the calibration frame is gone
    assert metrics.rotation_pops(loaded.rotations, loaded.fps).max() == 0.0
    # the glitch is spread over the fewest frames (slerp across it): the rest of the dance is the file's
    assert errors[:26].max() < 1e-3 and errors[33:].max() < 1e-3
    assert retarget.retarget_error_report([path])["mean"] < 1.0  # centimetres


def test_smpl_bvh_maps_to_identity(tmp_path):
    motion = random_motion(fps=25.0)
    write_bvh(motion, tmp_path / "dance.bvh")
    again = I.load_bvh(tmp_path / "dance.bvh")
    assert again.fps == 25.0 and np.abs(again.positions() - motion.positions()).max() < 1e-3
    assert I.load_motion(tmp_path / "dance.bvh", fps=30).fps == 30


def test_bvh_with_unknown_joints_names_the_missing_ones(tmp_path):
    motion = random_motion(frames=3)
    path = renamed_bvh(tmp_path, motion, {n: f"bone{i}" for i, n in enumerate(JOINT_NAMES)})
    with pytest.raises(OnbeatError, match="renamed.bvh") as error:
        I.load_bvh(path)
    assert "Left_Knee" in str(error.value) and "bone0" in str(error.value)


def test_unit_scale_detection():
    assert [retarget._unit_scale(size) for size in (1.5, 150.0, 1500.0)] == [1.0, 0.01, 0.001]


# --- Motorica -------------------------------------------------------------------------------------------------
def test_heading_integration_follows_pymo():
    # Walking forward (+z in the heading frame) one unit per frame, turning left by 90 degrees at frame 2:
    # then the steps go along +x (a +y rotation takes +z to +x).
    d_yaw = np.array([0.0, 0.0, np.pi / 2, 0.0])
    yaw, path = motorica._integrate_heading(d_yaw, np.zeros(4), np.ones(4))
    assert np.allclose(yaw, [0, 0, np.pi / 2, np.pi / 2])
    assert np.allclose(path, [[0, 0, 0], [0, 0, 1], [1, 0, 1], [2, 0, 1]])


@pytest.mark.slow
def test_every_motorica_file_loads_with_its_take(data_dir):
    seqs = list(I.iter_dataset(data_dir, sources=("motorica",)))
    assert len(seqs) == 10
    takes = {}
    for seq in seqs:
        assert plausible(seq.motion) == [], (seq.name, plausible(seq.motion))
        assert seq.style in ("krump", "hiphop", "locking", "popping") and seq.audio_path is None
        takes.setdefault(seq.take, []).append(seq.name)
    assert len(takes) == 5 and all(len(names) == 2 for names in takes.values())
    assert sum(s.motion.duration for s in seqs) / 2 > 10 * 60


def motorica_table(frames=5):
    columns = ([f"{j}_{c}" for j in motorica.MOTORICA_JOINTS for c in ("alpha", "beta", "gamma")]
               + list(motorica.MOTORICA_ROOT))
    table = pd.DataFrame(np.zeros((frames, len(columns))), columns=columns)
    table["Hips_Yposition"] = 90.0
    return table


def test_motorica_table_rest_pose_stands_on_the_floor(tmp_path):
    motorica_table().to_pickle(tmp_path / "take_00.expmap_30fps.pkl")
    seq = I.load_motorica(tmp_path / "take_00.expmap_30fps.pkl")
    assert seq.take == "take" and seq.motion.num_frames == 5
    pos = seq.motion.positions()
    assert np.allclose(pos[:, list(FOOT_JOINTS), 1].min(axis=1), 0.0, atol=1e-9)
    assert np.allclose(R.quat_to_axis_angle(seq.motion.rotations), 0.0, atol=1e-9)


@pytest.mark.parametrize("change, problem", [
    (lambda t: t.drop(columns=["Neck_beta"]), "missing columns Neck_beta"),
    (lambda t: t.assign(LeftLeg_alpha=np.nan), "NaN"),
    (lambda t: t.iloc[:1], "at least 2 frames"),
])
def test_broken_motorica_tables_raise_clear_errors(tmp_path, change, problem):
    path = tmp_path / "bad.expmap_30fps.pkl"
    change(motorica_table()).to_pickle(path)
    with pytest.raises(OnbeatError, match="bad.expmap_30fps.pkl") as error:
        I.load_motion(path)
    assert problem in str(error.value)


# --- AIST++ ---------------------------------------------------------------------------------------------------
def aist_pickle(path, frames=61, scaling=93.0, seed=1):
    reference = random_motion(frames, fps=60.0, seed=seed)
    data = {"smpl_poses": reference.axis_angle().reshape(frames, 72), "smpl_scaling": np.array([scaling]),
            "smpl_trans": reference.root_translation * scaling}
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return reference


def test_aist_round_trip(tmp_path):
    reference = aist_pickle(tmp_path / "gBR_sBM_cAll_d04_mBR0_ch01.pkl")
    motion = I.load_motion(tmp_path / "gBR_sBM_cAll_d04_mBR0_ch01.pkl")
    assert motion.fps == 30 and motion.num_frames == 31
    # Every other 60 fps frame, the translation back in metres; only the height moves (grounding).
    assert np.allclose(R.quat_to_matrix(motion.rotations), R.quat_to_matrix(reference.rotations[::2]), atol=1e-9)
    shift = motion.root_translation - reference.root_translation[::2]
    assert np.allclose(shift[:, [0, 2]], 0.0) and np.allclose(shift[:, 1], shift[0, 1])


@pytest.mark.parametrize("data, problem", [
    ({"smpl_poses": np.zeros((5, 70)), "smpl_trans": np.zeros((5, 3)), "smpl_scaling": [1.0]}, "(T, 72)"),
    ({"smpl_poses": np.full((5, 72), np.nan), "smpl_trans": np.zeros((5, 3)), "smpl_scaling": [1.0]}, "NaN"),
    ({"smpl_poses": np.zeros((5, 72)), "smpl_trans": np.zeros((5, 3)), "smpl_scaling": [0.0]}, "positive"),
    ({"poses": np.zeros((5, 72))}, "not an AIST++ motion pickle"),
    ([1, 2, 3], "not a Motorica expmap table"),
])
def test_broken_pickles_raise_clear_errors(tmp_path, data, problem):
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(OnbeatError, match="bad.pkl") as error:
        I.load_motion(tmp_path / "bad.pkl")
    assert problem in str(error.value)


def test_truncated_pickle_and_unknown_inputs(tmp_path):
    aist_pickle(tmp_path / "good.pkl")
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "good.pkl").read_bytes()[:200])
    with pytest.raises(OnbeatError, match="cut.pkl.*not a readable pickle"):
        I.load_motion(tmp_path / "cut.pkl")
    (tmp_path / "dance.txt").write_text("hello")
    with pytest.raises(OnbeatError, match="dance.txt.*unknown motion file type"):
        I.load_motion(tmp_path / "dance.txt")
    with pytest.raises(OnbeatError, match="no_such_dance"):
        I.load_motion(tmp_path / "no_such_dance")
    with pytest.raises(OnbeatError, match="unknown data set"):
        next(I.iter_dataset(tmp_path, sources=("mocap",)))


def test_sequences_load_by_name(data_dir):
    assert I.load_motion("DANCE_C_2").fps == 30
    assert I.load_motion("ballroom/DANCE_W_1").num_frames > 1000
