import json
import pickle

import numpy as np
import pandas as pd
import pytest

from onbeat.core.bvh import write_bvh
from onbeat.core import importers as I
from onbeat.core.importers import ballroom, motorica, retarget
from onbeat.core import rotations as R
from onbeat.core.bvh import read_bvh
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS

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


def test_point_ik_reproduces_points_of_a_known_skeleton():
    # Points from FK of a dance whose unobserved joints (spine 2/3, collars, feet, palms) keep rest rotations:
    # the solver must find rotations that reproduce every point.
    motion = random_motion()
    rest_like = [JOINT_INDEX[n] for n in ("Spine2", "Spine3", "Left_Collar", "Right_Collar", "Left_Foot",
                                          "Right_Foot", "Left_Wrist", "Right_Wrist", "Left_Palm", "Right_Palm")]
    motion.rotations[:, rest_like] = R.quat_identity((motion.num_frames, len(rest_like)))
    pos = motion.positions()
    targets = {name: pos[:, JOINT_INDEX[name]] for name in ballroom.BALLROOM_POINTS}
    left, right = head_points(motion)
    solved = I.solve_points(targets, left, right, motion.fps)
    assert I.point_errors(solved, targets, left, right).max() < 1e-3
    # Limbs keep SMPL's bone directions: the solved offsets are the rest offsets (a rigid torso is fitted).
    limbs = [JOINT_INDEX[n] for n in ("Left_Knee", "Left_Ankle", "Right_Elbow", "Right_Wrist")]
    assert np.allclose(solved.offsets[limbs], motion.offsets[limbs], atol=1e-6)


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


def test_unknown_family_maps_by_fuzzy_names(tmp_path):
    motion = random_motion()
    rename = {"Pelvis": "mixamorig:Hips", "Spine1": "mixamorig:Spine", "Spine2": "mixamorig:Spine1",
              "Spine3": "mixamorig:Spine2", "Neck": "mixamorig:Neck", "Head": "mixamorig:Head"}
    for side, s in (("Left", "L"), ("Right", "R")):
        rename.update({f"{side}_Hip": f"{s}_Thigh", f"{side}_Knee": f"{s}_Calf", f"{side}_Ankle": f"{s}_Foot",
                       f"{side}_Foot": f"{s}_Toe0", f"{side}_Collar": f"{s}_Clavicle",
                       f"{side}_Shoulder": f"{s}_UpperArm", f"{side}_Elbow": f"{s}_Forearm",
                       f"{side}_Wrist": f"{s}_Hand", f"{side}_Palm": f"{s}_Finger0"})
    path = renamed_bvh(tmp_path, motion, rename)
    family, found = I.bvh_joint_map(read_bvh(path), path)
    assert family == "generic"
    by_name = {n: i for i, n in enumerate(read_bvh(path).names)}
    assert all(found[smpl] == by_name[source] for smpl, source in rename.items() if "Palm" not in smpl)
    # SMPL's own rest pose: every joint lands where it was.
    again = I.retarget_bvh(read_bvh(path), path)
    assert np.abs(again.positions()[:, :22] - motion.positions()[:, :22]).max() < 1e-3


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
    assert retarget._unit_scale(1.5) == 1.0 and retarget._unit_scale(150.0) == 0.01 and retarget._unit_scale(1500.0) == 0.001


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
    columns = [f"{j}_{c}" for j in motorica.MOTORICA_JOINTS for c in ("alpha", "beta", "gamma")] + list(motorica.MOTORICA_ROOT)
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
