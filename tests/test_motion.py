import numpy as np

from onbeat.core import rotations as R
from onbeat.core.motion import Motion, forward_kinematics
from onbeat.core.skeleton import PARENTS, REST_OFFSETS


def random_motion(frames=5, seed=0):
    rng = np.random.default_rng(seed)
    return Motion(30, rng.normal(size=(frames, 3)), R.quat_normalize(rng.normal(size=(frames, 24, 4))))


def test_forward_kinematics_is_the_chain_of_parent_rotations():
    motion = random_motion()
    world = motion.global_rotations()  # quaternion composition, independent of the matrices FK uses
    expected = np.empty((motion.num_frames, 24, 3))
    for j, p in enumerate(PARENTS):
        expected[:, j] = motion.root_translation + REST_OFFSETS[j] if p < 0 else (
            expected[:, p] + R.quat_apply(world[:, p], np.broadcast_to(REST_OFFSETS[j], (motion.num_frames, 3))))
    assert np.allclose(motion.positions(), expected, atol=1e-12)


def test_forward_kinematics_of_one_frame_equals_that_frame_of_the_clip():
    motion = random_motion()
    one = forward_kinematics(motion.root_translation[2], motion.rotations[2], motion.offsets)
    assert one.shape == (24, 3)
    assert np.allclose(one, motion.positions()[2], atol=1e-12)
