import numpy as np
import pytest

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.representation import (
    CONTACT_SLICE,
    POSE_DIM,
    RootState,
    decode,
    encode,
    heading_angles,
    mirror,
    normalizer,
    root_state,
    start_state,
)
from onbeat.core.skeleton import FOOT_JOINTS, NUM_JOINTS


def turning_dance(frames=90, fps=30.0, seed=0):
    """A dancer walking a curve while turning, with every joint wiggling."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    speed, phase = rng.uniform(1, 4, (1, NUM_JOINTS, 3)), rng.uniform(0, 6, (1, NUM_JOINTS, 3))
    axis_angle = 0.3 * np.sin(t[:, None, None] * speed + phase)
    axis_angle[:, 0] = [0.1, 0.0, 0.05] * np.ones((frames, 3)) + np.outer(1.5 * t, [0, 1, 0])  # turning root
    root = np.stack([np.sin(t), 0.9 + 0.05 * np.sin(5 * t), 0.5 * t], axis=1) + [2.0, 0.0, -1.0]
    return Motion.from_axis_angle(fps, root, axis_angle)


def test_round_trip_reproduces_positions_within_a_millimetre():
    motion = turning_dance()
    rows = encode(motion)
    assert rows.shape == (motion.num_frames, POSE_DIM) and rows.dtype == np.float32
    back = decode(rows, motion.fps, start_state(motion))
    assert np.abs(back.positions() - motion.positions()).max() < 1e-3


def test_rows_do_not_depend_on_where_the_dancer_stands_or_faces():
    motion = turning_dance()
    turn = R.quat_from_axis_angle(np.array([0.0, 2.0, 0.0]))
    moved = Motion(motion.fps, R.quat_apply(turn, motion.root_translation) + [5.0, 0.0, 3.0], motion.rotations.copy())
    moved.rotations[:, 0] = R.quat_multiply(turn, motion.rotations[:, 0])
    assert np.abs(encode(moved) - encode(motion)).max() < 1e-4


def test_slices_decode_one_after_another_like_the_whole():
    motion = turning_dance()
    rows = encode(motion)
    whole = decode(rows, motion.fps).positions()
    first = decode(rows[:40], motion.fps)
    second = decode(rows[40:], motion.fps, root_state(first))
    assert np.abs(np.concatenate([first.positions(), second.positions()]) - whole).max() < 1e-6


def test_the_start_state_moves_and_turns_the_whole_dance_and_headings_add_up():
    motion = turning_dance(frames=300)  # the root turns 15 rad: the heading wraps around +-pi several times
    rows = encode(motion)
    here = decode(rows, motion.fps)
    there = decode(rows, motion.fps, RootState(np.array([3.0, 0.0, -2.0]), 2.8))
    turn = R.quat_from_axis_angle(np.array([0.0, 2.8, 0.0]))
    assert np.abs(there.positions() - (R.quat_apply(turn, here.positions()) + [3.0, 0.0, -2.0])).max() < 1e-9
    # Each frame turns by the yaw of its own row's root rotation.
    turns = np.diff(np.concatenate([[0.0], heading_angles(here.rotations[:, 0])]))
    row_yaws = heading_angles(R.quat_from_6d(rows[:, 3:9].astype(np.float64)))
    assert np.abs(np.angle(np.exp(1j * (turns - row_yaws)))).max() < 1e-5


def test_contacts_mark_the_standing_foot_only():
    frames = 60
    axis_angle = np.zeros((frames, NUM_JOINTS, 3))
    axis_angle[:, 2, 0] = -np.linspace(0, 1.2, frames)  # right hip lifts the right leg forward
    motion = Motion.from_axis_angle(30.0, np.tile([0, 0.95, 0], (frames, 1)), axis_angle)
    contacts = encode(motion)[:, CONTACT_SLICE]
    assert contacts[:, 0].all() and contacts[:, 2].all()  # left ankle and foot stand still
    assert not contacts[frames // 2:, 1].any() and not contacts[frames // 2:, 3].any()  # right leg is in the air
    assert FOOT_JOINTS and contacts.shape == (frames, 4)


def test_mirror_matches_reflecting_the_joint_positions():
    motion = turning_dance()
    mirrored = decode(mirror(encode(motion)), motion.fps).positions()
    original = decode(encode(motion), motion.fps).positions()
    from onbeat.core.skeleton import MIRROR_INDEX
    reflected = original[:, list(MIRROR_INDEX)] * [-1, 1, 1]
    # Bone offsets are not exactly symmetric in SMPL, so compare with a few centimetres' tolerance.
    assert np.abs(mirrored - reflected).max() < 0.05
    assert np.abs(mirror(mirror(encode(motion))) - encode(motion)).max() == 0


def test_normalizer_and_bad_shapes():
    rows = [encode(turning_dance(seed=s)) for s in range(2)]
    mean, std = normalizer(rows)
    assert mean.shape == std.shape == (POSE_DIM,) and (std >= 1e-2).all()
    normalized = (np.concatenate(rows) - mean) / std
    assert np.abs(normalized.mean(0)).max() < 1e-3
    with pytest.raises(OnbeatError, match="151"):
        decode(np.zeros((4, 10)), 30.0)


def test_a_taller_skeleton_is_scaled_onto_the_canonical_one():
    motion = turning_dance()
    tall = Motion(motion.fps, motion.root_translation * 1.25, motion.rotations, motion.offsets * 1.25)
    np.testing.assert_allclose(encode(tall), encode(motion), atol=1e-5)
