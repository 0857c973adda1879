"""Grounded feet (choreographers.feet): two-bone leg IK, foot locking and stepping, the floor, state across slices."""
import numpy as np
import pytest

from onbeat.choreographers.feet import ANKLE, HIP, KNEE, STEP_HEIGHT, FootGrounding, lowest_sole, two_bone_ik
from onbeat.core import rotations as R
from onbeat.core.motion import Motion, forward_kinematics_with_matrices
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX, NUM_JOINTS
from onbeat.evaluation.metrics import rotation_pops

FPS = 30
_X, _Y, _Z = np.eye(3)


def turn(axis, degrees):
    return R.quat_from_axis_angle(np.radians(np.asarray(degrees, dtype=np.float64))[..., None] * axis)


def standing(frames, knee=20.0):
    """(T, 24, 4) a stance with the knees bent `knee` degrees (feet flat; negative: overstretched backwards);
    `knee` a number, or one per frame, or per frame and side."""
    rotations = R.quat_identity((frames, NUM_JOINTS))
    bend = np.broadcast_to(knee, (frames, 2))
    for side, degrees in zip(("Left", "Right"), bend.T, strict=True):
        rotations[:, JOINT_INDEX[f"{side}_Hip"]] = turn(_X, -degrees / 2)
        rotations[:, JOINT_INDEX[f"{side}_Knee"]] = turn(_X, degrees)
        rotations[:, JOINT_INDEX[f"{side}_Ankle"]] = turn(_X, -degrees / 2)
    return rotations


def grounded(rotations, root_xz=None):
    """A Motion of `rotations` standing on the floor (lowest sole at y = 0), its root moved along `root_xz`."""
    frames = len(rotations)
    root = np.zeros((frames, 3))
    if root_xz is not None:
        root[:, [0, 2]] = root_xz
    root[:, 1] = -lowest_sole(np.zeros((frames, 3)), rotations)
    return Motion(FPS, root, rotations)


def finish_in_slices(motion, grounding=None, size=8):
    grounding = grounding or FootGrounding(FPS)
    parts = [grounding.apply(motion.frames(i, i + size)) for i in range(0, motion.num_frames, size)]
    return Motion(FPS, np.concatenate([p.root_translation for p in parts]),
                  np.concatenate([p.rotations for p in parts]))


def horizontal_speed(positions):
    return np.linalg.norm(np.diff(positions[..., [0, 2]], axis=0), axis=-1) * FPS


def test_two_bone_ik_reaches_every_reachable_target_and_keeps_knees_bent_forward():
    rng = np.random.default_rng(0)
    frames = 200
    rotations = standing(frames, knee=rng.uniform(-10, 90, (frames, 2)))  # some overstretched
    rotations[:, 0] = turn(_Y, rng.uniform(-180, 180, frames))  # facing anywhere
    rotations[:, [JOINT_INDEX["Left_Hip"], JOINT_INDEX["Right_Hip"]]] = R.quat_multiply(
        rotations[:, [JOINT_INDEX["Left_Hip"], JOINT_INDEX["Right_Hip"]]], turn(_Z, rng.uniform(-20, 20, (frames, 2))))
    positions, world = forward_kinematics_with_matrices(np.zeros((frames, 3)), rotations)
    hip_world = R.quat_from_matrix(world[:, HIP])
    knee_world = R.quat_from_matrix(world[:, KNEE])
    target = positions[:, ANKLE] + rng.normal(0.0, 0.08, (frames, 2, 3))
    hip_new, knee_new = two_bone_ik(positions[:, HIP], positions[:, KNEE], positions[:, ANKLE], target,
                                    world[:, HIP][..., 0], hip_world, knee_world)
    thigh_bone = R.quat_apply(R.quat_conjugate(hip_world), positions[:, KNEE] - positions[:, HIP])  # in its frame
    shin_bone = R.quat_apply(R.quat_conjugate(knee_world), positions[:, ANKLE] - positions[:, KNEE])
    knee = positions[:, HIP] + R.quat_apply(hip_new, thigh_bone)
    ankle = knee + R.quat_apply(knee_new, shin_bone)
    thigh = np.linalg.norm(positions[:, KNEE] - positions[:, HIP], axis=-1)
    shin = np.linalg.norm(positions[:, ANKLE] - positions[:, KNEE], axis=-1)
    reachable = np.linalg.norm(target - positions[:, HIP], axis=-1) < 0.99 * (thigh + shin)
    assert reachable.mean() > 0.5
    assert np.abs(np.linalg.norm(ankle - target, axis=-1)[reachable]).max() < 1e-3
    # the knee bends forward (the shin turns from the thigh about the hip's +x axis), never backwards
    hinge = R.quat_apply(hip_new, np.broadcast_to(_X, hip_new.shape[:-1] + (3,)))
    bend = np.sum(R.cross(knee - positions[:, HIP], ankle - knee) * hinge, axis=-1)
    assert (bend > -1e-9).all()


def test_a_gliding_dancer_plants_the_feet_and_steps_instead_of_sliding():
    frames = 150
    glide = np.stack([0.4 * np.arange(frames) / FPS, np.zeros(frames)], axis=1)  # 0.4 m/s sideways, feet never move
    before = grounded(standing(frames), glide)
    after = finish_in_slices(before)
    feet_before, feet_after = before.positions()[:, list(FOOT_JOINTS)], after.positions()[:, list(FOOT_JOINTS)]
    on_floor = feet_after[1:, :, 1] < 0.02 + feet_after[..., 1].min(axis=0)
    sliding_before = horizontal_speed(feet_before).mean()
    sliding_after = horizontal_speed(feet_after)[on_floor].mean()
    assert sliding_before == pytest.approx(0.4, abs=1e-6)
    assert sliding_after < 0.25 * sliding_before  # feet on the floor stay where they are ...
    lifted = feet_after[..., 1].max(axis=0) - feet_after[..., 1].min(axis=0)
    assert lifted[:2].min() > 0.5 * STEP_HEIGHT  # ... and move only in steps, lifted off it
    assert np.linalg.norm(after.root_translation[:, [0, 2]] - before.root_translation[:, [0, 2]], axis=-1).max() < 1e-9
    assert lowest_sole(after.root_translation, after.rotations).min() > -1e-6
    assert (rotation_pops(after.rotations, FPS) == 0).all()


def test_a_pinned_foot_stands_on_the_floor_and_nothing_goes_below_it():
    frames = 60
    rotations = standing(frames)
    rotations[:, JOINT_INDEX["Spine1"]] = turn(_X, 110.0)  # bent far forward: the hands reach below the floor
    rotations[:, JOINT_INDEX["Left_Shoulder"]] = turn(_Z, -80.0)
    sunk = grounded(rotations)
    sunk.root_translation[:, 1] -= 0.05 + 0.03 * np.sin(np.arange(frames) / 5)  # and the whole body sinks
    after = finish_in_slices(sunk)
    positions = after.positions()
    assert positions[..., 1].min() > -1e-6  # no joint below the floor
    soles = lowest_sole(after.root_translation, after.rotations)
    assert soles.max() < 0.01  # the feet stand on it (+-1 cm)


def test_predicted_contacts_pin_a_foot_the_dance_drags():
    frames = 64
    rotations = standing(frames)
    drag = np.zeros((frames, 2))
    drag[:, 0] = 0.1 * np.sin(np.arange(frames) / 10)  # the body sways 10 cm over planted feet
    swaying = grounded(rotations, drag)
    contacts = np.ones((frames, len(FOOT_JOINTS)))
    predicted = Motion(FPS, swaying.root_translation, rotations, contacts=contacts)
    grounding = FootGrounding(FPS)
    grounding.down = [False, False]
    after = finish_in_slices(predicted, grounding)
    feet = after.positions()[:, list(FOOT_JOINTS)]
    assert horizontal_speed(feet[3:]).max() < 1e-3  # pinned (after the 3 frames blending in)
    assert np.abs(after.root_translation[:, [0, 2]] - swaying.root_translation[:, [0, 2]]).max() < 1e-9


def test_slices_continue_one_another_as_one_piece():
    rng = np.random.default_rng(1)
    frames = 96
    glide = np.cumsum(rng.normal(0.0, 0.01, (frames, 2)), axis=0)
    rotations = standing(frames, knee=20 + 10 * np.sin(np.arange(frames) / 7)[:, None])
    motion = grounded(rotations, glide)
    in_slices = finish_in_slices(motion, size=8)
    at_once = finish_in_slices(motion, size=frames)
    assert np.allclose(in_slices.rotations, at_once.rotations, atol=1e-9)
    assert np.allclose(in_slices.root_translation, at_once.root_translation, atol=1e-9)


def test_real_dances_keep_their_rotations_smooth(data_dir):
    """Grounding real dancers' motion (ballroom, which glides a lot) adds no rotation pops and puts no joint under
    the floor."""
    from onbeat.core.importers import ballroom_names, load_ballroom
    root = data_dir / "ballroom"
    names = ballroom_names(root)[:2]
    for name in names:
        motion = load_ballroom(root, name).motion.frames(0, 600)
        after = finish_in_slices(motion)
        assert (rotation_pops(after.rotations, FPS) <= rotation_pops(motion.rotations, FPS) + 1e-9).all(), name
        assert after.positions()[..., 1].min() > -1e-6
