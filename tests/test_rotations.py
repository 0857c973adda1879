"""The rotation helpers against scipy.spatial.transform.Rotation (a third party's conventions): quaternions
are (w, x, y, z) here and (x, y, z, w) in scipy; Euler angles here are intrinsic, scipy's upper-case orders."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from onbeat.core import rotations as R

ORDERS = ["zxy", "xyz", "yzx", "zyx", "xzy", "yxz"]


def random_quats(count=200, seed=0):
    return R.quat_normalize(np.random.default_rng(seed).standard_normal((count, 4)))


def scipy_of(q):
    return Rotation.from_quat(np.roll(q, -1, axis=-1))  # (w, x, y, z) → scipy's (x, y, z, w)


def same_rotation(a, b):
    """Equal as rotations: q and -q are the same one."""
    return np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1)).max() < 1e-12


def test_matrices_agree_with_scipy_both_ways():
    q = random_quats()
    np.testing.assert_allclose(R.quat_to_matrix(q), scipy_of(q).as_matrix(), atol=1e-12)
    assert same_rotation(R.quat_from_matrix(scipy_of(q).as_matrix()), q)


def test_axis_angle_agrees_with_scipy_rotvec_including_tiny_and_half_turns():
    rng = np.random.default_rng(1)
    axes = rng.standard_normal((300, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, 280), np.full(10, 1e-10), np.full(10, np.pi - 1e-9)])
    rotvec = axes * angles[:, None]
    assert same_rotation(R.quat_from_axis_angle(rotvec), np.roll(Rotation.from_rotvec(rotvec).as_quat(), 1, -1))
    back = R.quat_to_axis_angle(R.quat_from_axis_angle(rotvec))
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), Rotation.from_rotvec(rotvec).as_matrix(),
                               atol=1e-9)


def test_multiply_and_apply_agree_with_scipy_composition():
    a, b = random_quats(seed=2), random_quats(seed=3)
    assert same_rotation(R.quat_multiply(a, b), np.roll((scipy_of(a) * scipy_of(b)).as_quat(), 1, -1))
    v = np.random.default_rng(4).standard_normal((200, 3))
    np.testing.assert_allclose(R.quat_apply(a, v), scipy_of(a).apply(v), atol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
def test_intrinsic_euler_agrees_with_scipy_both_ways(order):
    rng = np.random.default_rng(5)
    angles = rng.uniform(-180, 180, (200, 3))
    angles[:, 1] = rng.uniform(-85, 85, 200)  # away from gimbal lock, where the angles are not unique
    q = R.quat_from_euler(angles, order)
    assert same_rotation(q, np.roll(Rotation.from_euler(order.upper(), angles, degrees=True).as_quat(), 1, -1))
    np.testing.assert_allclose(R.quat_to_euler(q, order),
                               Rotation.from_quat(np.roll(q, -1, -1)).as_euler(order.upper(), degrees=True), atol=1e-9)


def test_slerp_agrees_with_scipy_slerp():
    a, b = random_quats(50, seed=6), random_quats(50, seed=7)
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        ours = R.quat_slerp(a, b, t)
        theirs = np.stack([np.roll(Slerp([0, 1], scipy_of(np.stack([x, y])))(t).as_quat(), 1)
                           for x, y in zip(a, b, strict=True)])
        assert same_rotation(ours, theirs)


def test_six_d_round_trip_and_shortest_arc_against_scipy():
    q = random_quats(seed=8)
    assert same_rotation(R.quat_from_6d(R.quat_to_6d(q)), q)
    u, v = np.random.default_rng(9).standard_normal((2, 100, 3))
    turned = R.quat_apply(R.quat_between(u, v), u)
    np.testing.assert_allclose(turned / np.linalg.norm(turned, axis=-1, keepdims=True),
                               v / np.linalg.norm(v, axis=-1, keepdims=True), atol=1e-12)
    # shortest arc: its angle is the angle between u and v, which scipy measures as the rotation's magnitude
    cosine = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    np.testing.assert_allclose(scipy_of(R.quat_between(u, v)).magnitude(), np.arccos(cosine), atol=1e-9)
