import numpy as np
import pytest

from onbeat.core.skeleton import FOOT_JOINTS, NUM_JOINTS, PARENTS, REST_OFFSETS
from onbeat.evaluation import metrics

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


def test_dance_features_keep_every_segment():
    """900 frames at 30 fps are 1800 at 60 fps (linear interpolation gave 1799, and the last third was lost): three
    whole 10 s segments, five with the 5 s hop."""
    positions, _ = swaying(seconds=30)
    assert len(metrics.at_protocol_rate(positions, FPS)) == 1800
    assert len(metrics.segments(positions, FPS, hop_seconds=10.0)) == 3
    kinetic, geometric = metrics.dance_features(positions, FPS)
    assert kinetic.shape == (5, 72) and geometric.shape == (5, 32)
    first = metrics.segments(positions, FPS)[0]
    assert np.allclose(first[0, 0], 0.0)  # each segment relative to its first root position


def test_smooth_resampling_leaves_no_pattern_in_jerk():
    """25 -> 30 fps by linear interpolation puts corners every 6 output frames (jerk by frame index mod 6 varies);
    the band-limited resampling does not."""
    t25 = np.arange(250) / 25
    positions = rest_positions(250) + (0.2 * np.sin(2 * np.pi * 0.9 * t25))[:, None, None]
    smooth = metrics.resample_positions(positions, 25, 30)[10:-10]  # the filter's edge transients left out
    t30 = np.arange(299) / 30
    linear = rest_positions(299) + np.interp(t30, t25, 0.2 * np.sin(2 * np.pi * 0.9 * t25))[:, None, None]
    exact = metrics.jerk(rest_positions(299) + (0.2 * np.sin(2 * np.pi * 0.9 * t30))[:, None, None], 30)
    spread = lambda p: np.ptp(metrics.jerk_by_phase(p, 30, 6)) / metrics.jerk(p, 30)  # noqa: E731
    assert spread(linear) > 0.5 and spread(smooth) < 0.05
    assert metrics.jerk(smooth, 30) == pytest.approx(exact, rel=0.05)


def test_beat_align_score_of_a_dance_moving_on_the_beat_beats_chance_and_its_shifted_self():
    positions, beats = swaying()
    score = metrics.beat_align_score(positions, FPS, beats)
    assert score > 0.95
    chance = np.mean([metrics.beat_align_score(positions, FPS, b)
                      for b in metrics.shifted_beats(beats, np.random.default_rng(0))])
    assert chance < 0.6 * score
    shifted = np.concatenate([positions[8:], np.repeat(positions[-1:], 8, axis=0)])  # the dance a quarter beat early
    assert metrics.beat_align_score(shifted, FPS, beats) < 0.5 * score
    assert metrics.beat_align_score(positions, FPS, []) == 0.0


def stepping(seconds=20.0, beat=0.5, offset=0.0):
    """Walking in place forward and back: each foot lands (after a 0.3 s swing of 30 cm) on every other beat,
    the feet alternating, so a foot lands on every beat (plus `offset` s)."""
    t = np.arange(int(seconds * FPS)) / FPS
    positions = rest_positions(len(t))
    for side, ankle, toe in ((0, 7, 10), (1, 8, 11)):
        cycle = (t - offset - side * beat) % (2 * beat)  # 0 at this foot's landing
        swing = cycle > 2 * beat - 0.3
        progress = np.where(swing, (cycle - (2 * beat - 0.3)) / 0.3, 0.0)
        stride = np.floor((t - offset - side * beat) / (2 * beat))
        forward = 0.3 * (stride % 2 + np.where(swing, progress, 0.0)) * np.where(stride % 2, -1, 1)
        lift = 0.08 * np.sin(np.pi * progress) * swing
        positions[:, [ankle, toe], 2] += forward[:, None]
        positions[:, [ankle, toe], 1] += lift[:, None]
    return positions, np.arange(0.0, seconds, beat)


def test_steps_land_on_the_beat_and_lock_above_other_tempos():
    positions, beats = stepping()
    steps = metrics.step_times(positions, FPS)
    assert len(steps) >= 30 and np.abs(np.diff(steps) - 0.5).max() < 2 / FPS  # one landing per beat
    locking = metrics.beat_locking(steps, beats)
    assert locking > 0.95
    other_tempo = np.arange(0.0, 20.0, 0.61)
    assert metrics.beat_locking(steps, other_tempo) < 0.5
    assert metrics.beat_locking(np.sort(np.random.default_rng(1).uniform(0, 20, 40)), beats) < 0.6


def stop_and_go(seconds=20.0, beat=0.5):
    """The whole body dashing sideways just after every beat and standing still in between (a twitch)."""
    t = np.arange(int(seconds * FPS)) / FPS
    phase = (t % beat) / beat
    step = np.clip(phase / 0.25, 0, 1)  # moves in the first quarter of each beat
    x = 0.1 * (np.floor(t / beat) + 0.5 - 0.5 * np.cos(np.pi * step))
    positions = rest_positions(len(t))
    positions[..., 0] += (x - x.mean())[:, None]
    return positions, np.arange(0.0, seconds, beat)


def test_twitch_tells_a_stop_and_go_dance_from_a_steady_one():
    twitchy, beats = stop_and_go()
    steady, _ = swaying(seconds=20, beat_interval=0.5 * 4.3)  # sways slowly, unrelated to the beat
    assert metrics.twitch(twitchy, FPS, beats) > 1.0
    assert metrics.twitch(steady, FPS, beats) < 0.5


def test_freeze_is_measured_on_the_body_and_travel_apart():
    frozen = rest_positions(300)
    moving, _ = swaying(seconds=10)
    reference = np.median(metrics.mean_joint_speed(metrics.root_relative(moving + 0.3 * np.sin(
        np.arange(300) / FPS)[:, None, None] * (np.arange(24) % 3)[None, :, None]), FPS))
    gliding = frozen + np.array([0.5, 0.0, 0.0]) * (np.arange(300) / FPS)[:, None, None]  # a frozen pose at 0.5 m/s
    assert metrics.freeze_ratio(frozen, FPS, reference) == 1.0
    assert metrics.freeze_ratio(gliding, FPS, reference) == 1.0
    assert metrics.travel(gliding, FPS) == pytest.approx(0.5)
    assert metrics.travel(frozen, FPS) == 0.0
    waving = frozen.copy()
    waving[:, 20:22, 1] += 0.3 * np.sin(2 * np.pi * np.arange(300) / FPS)[:, None]
    assert metrics.freeze_ratio(waving, FPS, reference) == 0.0


def test_freeze_ratio_of_real_dance_is_zero(data_dir):
    from onbeat.core.importers import load_ballroom
    positions = load_ballroom(data_dir / "ballroom", "DANCE_W_1").motion.positions()
    reference = np.median(metrics.mean_joint_speed(metrics.root_relative(positions), 30))
    assert metrics.freeze_ratio(positions, 30, reference) == 0.0
    assert metrics.freeze_ratio(np.repeat(positions[:1], len(positions), axis=0), 30, reference) == 1.0


def bobbing(feet_slide, fps=FPS):
    """Root bobbing up and down (accelerating); the feet stay put or slide along the floor at up to 0.5 m/s."""
    t = np.arange(int(3 * fps)) / fps
    positions = rest_positions(len(t))
    positions[:, 0, 1] += 0.05 * np.sin(2 * np.pi * 2 * t)
    if feet_slide:
        positions[:, list(FOOT_JOINTS), 2] += (0.5 / (2 * np.pi)) * np.sin(2 * np.pi * t)[:, None]
    return positions


def test_sliding_feet_raise_skate_and_pfc_but_not_contact():
    grounded, sliding = bobbing(feet_slide=False), bobbing(feet_slide=True)
    assert metrics.pfc(grounded) == pytest.approx(0) and metrics.pfc(sliding) > 0.1
    assert metrics.foot_skate(grounded, FPS) == 0.0
    assert metrics.foot_skate(sliding, FPS) == pytest.approx(2 / np.pi * 0.5, rel=0.05)  # mean |speed| of the slide
    faster = bobbing(feet_slide=False)
    faster[:, list(FOOT_JOINTS), 2] += (1.0 / (2 * np.pi)) * np.sin(2 * np.pi * np.arange(len(faster)) / FPS)[:, None]
    assert metrics.foot_skate(faster, FPS) > 1.8 * metrics.foot_skate(sliding, FPS)  # not saturated
    assert metrics.contact_share(sliding, FPS) == 1.0 == metrics.contact_share(grounded, FPS)


def test_contacts_use_each_foot_joints_own_height_and_ignore_a_low_glitch():
    standing = rest_positions(90)
    lifted = standing.copy()
    lifted[30:60, [7, 10], 1] += 0.15  # the left foot up for a second
    lifted[45, 8, 1] -= 0.5  # one glitch frame: the right ankle 50 cm under the floor
    contacts = metrics.foot_contacts(lifted, FPS, with_speed=False)
    assert contacts[:, [1, 3]].all()  # the right ankle (8 cm up) and toe stay in contact around the glitch
    assert not contacts[30:60, [0, 2]].any() and contacts[:30, [0, 2]].all()


def test_foot_penetration_is_the_depth_below_the_floor():
    positions = rest_positions(100)
    positions[:, list(FOOT_JOINTS), 1] -= positions[:, list(FOOT_JOINTS), 1].min()  # lowest foot joint on the floor
    assert metrics.foot_penetration(positions) == 0.0
    positions[:10] -= np.array([0.0, 0.03, 0.0])  # 10% of frames 3 cm under
    assert metrics.foot_penetration(positions) == pytest.approx(0.03)
    assert metrics.foot_penetration(positions, 85) == 0.0


def test_pfc_is_guarded_against_root_glitches_still_roots_and_frame_rates():
    sliding = bobbing(feet_slide=True)
    glitched = sliding.copy()
    glitched[40, 0, 0] += 0.1  # the root (pelvis) 10 cm off in one frame
    assert metrics.pfc(glitched, FPS) > metrics.pfc(sliding, FPS)  # guarded: worse
    assert metrics.pfc(glitched, FPS, published=True) < metrics.pfc(sliding, FPS, published=True)  # EDGE: better
    still = rest_positions(90)
    still[:, list(FOOT_JOINTS), 2] += np.linspace(0, 1, 90)[:, None]
    assert metrics.pfc(still, FPS) == 0.0  # no root acceleration: 0, not 0/0
    assert metrics.pfc(bobbing(True, fps=60), 60) == pytest.approx(metrics.pfc(sliding, FPS), rel=0.05)


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
