import json

import numpy as np
import pytest

from onbeat.evaluation import metrics
from onbeat.core.skeleton import FOOT_JOINTS, NUM_JOINTS, REST_OFFSETS, PARENTS

FPS = 30


def rest_positions(frames):
    """(frames, 24, 3) the rest pose standing on the floor."""
    pose = np.zeros((NUM_JOINTS, 3))
    for j, p in enumerate(PARENTS):
        pose[j] = REST_OFFSETS[j] + (pose[p] if p >= 0 else 0)
    pose[:, 1] -= pose[:, 1].min()
    return np.repeat(pose[None], frames, axis=0)


def swaying(seconds=20, beat_interval=0.5, amplitude=0.2, phase=0.013):
    """Whole body swaying left-right, turning (speed minimum) exactly at every beat."""
    t = np.arange(int(seconds * FPS)) / FPS
    positions = rest_positions(len(t))
    positions[..., 0] += amplitude * np.cos(np.pi * (t - phase) / beat_interval)[:, None]
    beats = np.arange(phase + beat_interval, seconds - beat_interval, beat_interval)  # minima at the ends do not count
    return positions, beats


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 8))
    assert abs(metrics.fid(features, features)) < 1e-6
    assert metrics.fid(features, features + 0.5) > 8 * 0.25 * 0.9
    assert metrics.fid(features, features * 2) > metrics.fid(features, features * 1.1) > 0


def test_diversity_is_mean_pairwise_distance():
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert metrics.diversity(points) == pytest.approx((5 + 0 + 5) / 3)


def test_normalize_uses_reference_statistics():
    rng = np.random.default_rng(1)
    reference = rng.normal(3, 2, size=(500, 4))
    ref_n, other_n = metrics.normalize(reference, reference + 2)
    assert np.allclose(ref_n.mean(0), 0, atol=1e-9) and np.allclose(ref_n.std(0), 1)
    assert np.allclose(other_n - ref_n, 2 / reference.std(0))
    reference[:, 1] = 7.0  # constant in the reference: dropped
    ref_n, other_n = metrics.normalize(reference, rng.normal(size=(10, 4)))
    assert ref_n.shape == (500, 3) and other_n.shape == (10, 3)


def test_kinetic_features_of_constant_velocity():
    positions = rest_positions(60)
    positions[..., 0] += np.arange(60)[:, None] * 0.01  # 0.6 m/s horizontally at 60 fps
    features = metrics.kinetic_features(positions).reshape(NUM_JOINTS, 3)
    assert np.allclose(features[:, 0], 0.6 ** 2)  # horizontal kinetic energy
    assert np.allclose(features[:, 1], 0)  # vertical
    assert np.allclose(features[:, 2], 0, atol=1e-6)  # no acceleration


def test_geometric_features_are_shares_and_tell_poses_apart():
    standing = metrics.geometric_features(rest_positions(30))
    assert standing.shape == (32,) and ((standing >= 0) & (standing <= 1)).all()
    raised = rest_positions(30)
    raised[:, [20, 21], 1] += 1.0  # wrists far above the head
    assert not np.array_equal(metrics.geometric_features(raised), standing)


def test_dance_features_cut_segments():
    positions, _ = swaying(seconds=25)
    kinetic, geometric = metrics.dance_features(positions, FPS)
    assert kinetic.shape == (2, 72) and geometric.shape == (2, 32)


def test_beat_align_score_is_one_on_beat_and_lower_when_shifted():
    positions, beats = swaying()
    assert metrics.beat_align_score(positions, FPS, beats) > 0.99
    assert metrics.beat_align_score(positions, FPS, beats + 0.125) < 0.3
    assert metrics.beat_align_score(positions, FPS, []) == 0.0


def test_freeze_ratio_of_frozen_and_moving_motion():
    frozen = rest_positions(300)
    moving, _ = swaying(seconds=10)
    reference = np.median(metrics.mean_joint_speed(moving, FPS))
    assert metrics.freeze_ratio(frozen, FPS, reference) == 1.0
    assert metrics.freeze_ratio(moving, FPS, reference) == 0.0
    half = np.concatenate([moving[:150], np.repeat(moving[149:150], 150, axis=0)])
    assert metrics.freeze_ratio(half, FPS, reference) == pytest.approx(0.5, abs=0.11)


def test_freeze_ratio_of_real_dance_is_zero(data_dir):
    with np.load(data_dir / "ballroom" / "motion.npz") as data:
        name = sorted(k for k in data.files if not k.endswith("__center"))[0]
        positions = (data[name] + data[name + "__center"][:, None]) / 100  # root-centred cm -> world metres
    fps = json.loads((data_dir / "ballroom" / "motion.json").read_text())[name]["fps"]
    reference = np.median(metrics.mean_joint_speed(positions, fps))
    assert metrics.freeze_ratio(positions, fps, reference) == 0.0
    assert metrics.freeze_ratio(np.repeat(positions[:1], len(positions), axis=0), fps, reference) == 1.0


def bobbing(feet_slide):
    """Root bobbing up and down (accelerating); the feet stay put or slide along with the body."""
    t = np.arange(90) / FPS
    positions = rest_positions(len(t))
    positions[:, 0, 1] += 0.05 * np.sin(2 * np.pi * 2 * t)
    if feet_slide:
        positions[:, list(FOOT_JOINTS), 2] += 0.5 * np.sin(2 * np.pi * t)[:, None]
    return positions


def test_pfc_and_foot_skating_are_lower_for_grounded_feet():
    grounded, sliding = bobbing(feet_slide=False), bobbing(feet_slide=True)
    assert metrics.pfc(grounded) < metrics.pfc(sliding)
    assert metrics.pfc(grounded) == pytest.approx(0)
    assert metrics.foot_skating(grounded, FPS) == 0.0
    assert metrics.foot_skating(sliding, FPS) > 0.5


def test_jerk_is_zero_for_constant_acceleration_and_grows_with_shaking():
    t = np.arange(60) / FPS
    smooth = rest_positions(60)
    smooth[..., 1] += (0.5 * t ** 2)[:, None]
    shaky = smooth.copy()
    shaky[::2, :, 0] += 0.01
    assert metrics.jerk(smooth, FPS) == pytest.approx(0, abs=1e-6)
    assert metrics.jerk(shaky, FPS) > 100


def test_a_twist_flip_is_a_pop_and_a_steady_turn_is_not():
    from onbeat.core import rotations as R
    fps, frames = 30, 61
    steady = np.zeros((frames, NUM_JOINTS, 3))
    steady[:, 5, 1] = np.radians(np.arange(frames) * 55.0)  # 55 degrees a frame: under 60 (= 30 per 1/60 s)
    flipped = steady.copy()
    flipped[30:, 7, 0] = np.pi  # one 180-degree flip of the left ankle at frame 30
    assert metrics.rotation_pops(R.quat_from_axis_angle(steady), fps).max() == 0.0
    pops = metrics.rotation_pops(R.quat_from_axis_angle(flipped), fps)
    assert pops[7] == pytest.approx(1 / (frames - 1)) and pops.sum() == pops[7]
    # the same 55-degree steps at 60 fps are 55 degrees per 1/60 s: every frame of joint 5 pops
    assert metrics.rotation_pops(R.quat_from_axis_angle(steady), 60)[5] == 1.0
