"""Key poses (choreographers.keyposes): the poses, reach, the landing over slices, and striking them on the live
engine's downbeats with every choreographer."""
import numpy as np
import pytest

from onbeat.choreographers.feet import lowest_sole
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.keyposes import (
    KEY_POSES,
    REACHED_CM,
    KeyPoseLanding,
    key_pose_rotations,
    reach_cm,
    standing_height,
)
from onbeat.core import rotations as R
from onbeat.core.motion import Motion
from onbeat.core.skeleton import JOINT_INDEX, NUM_JOINTS
from onbeat.ear.sources import SyntheticSource
from onbeat.evaluation.metrics import rotation_pops
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import Sink

FPS = 30
_Y = np.array([0.0, 1.0, 0.0])


def spinning_wrists(frames, degrees_per_frame=25.0, start=0):
    """(T, 24, 4) the rest pose with both wrists twisting on and on: far from any key pose half of the time."""
    rotations = R.quat_identity((frames, NUM_JOINTS))
    angle = np.radians(degrees_per_frame) * (start + np.arange(frames))
    for wrist in ("Left_Wrist", "Right_Wrist"):
        rotations[:, JOINT_INDEX[wrist]] = R.quat_from_axis_angle(angle[:, None] * np.array([1.0, 0.0, 0.0]))
    return rotations


def test_reach_is_zero_for_the_pose_anywhere_and_tells_the_poses_apart():
    rng = np.random.default_rng(0)
    for name in KEY_POSES:
        pose = np.repeat(key_pose_rotations(name)[None], 5, axis=0)
        pose[:, 0] = R.quat_from_axis_angle(rng.uniform(-np.pi, np.pi, (5, 1)) * _Y)  # facing anywhere
        assert np.allclose(reach_cm(pose, name), 0.0, atol=1e-9)
        assert np.allclose(np.linalg.norm(key_pose_rotations(name), axis=-1), 1.0)
        assert lowest_sole(np.array([[0.0, standing_height(name), 0.0]]), pose[:1])[0] == pytest.approx(0.0, abs=1e-9)
        for other in KEY_POSES:
            if other != name:
                assert reach_cm(key_pose_rotations(other), name) > 3 * REACHED_CM
    tilted = key_pose_rotations("t_pose").copy()
    tilted[0] = R.quat_from_axis_angle(np.radians(20.0) * np.array([1.0, 0.0, 0.0]))  # a tilt is part of the pose
    assert reach_cm(tilted, "t_pose") > REACHED_CM


def test_landing_eases_in_hits_the_pose_exactly_and_eases_out_without_pops():
    landing = KeyPoseLanding(FPS)
    hit = 2.0
    landing.schedule("arms_up", hit)
    assert landing.landing_between(hit - 0.1, hit + 0.1) == "arms_up" and landing.landing_between(0, 1) is None
    slices, weights = [], []
    for index in range(20):  # 0 .. 5.3 s in slices of 8 frames
        start = index * 8 / FPS
        motion = Motion(FPS, np.tile([0.0, 0.9, 0.0], (8, 1)), spinning_wrists(8, start=index * 8))
        finished, weight = landing.apply(motion, start)
        slices.append(finished)
        weights.append(weight)
    rotations, weight = np.concatenate([m.rotations for m in slices]), np.concatenate(weights)
    times = np.arange(len(weight)) / FPS
    at_hit = np.abs(times - hit) <= landing.HOLD_S + 1e-9
    assert at_hit.sum() == 3 and (weight[at_hit] == 1.0).all()
    assert np.allclose(reach_cm(rotations[at_hit], "arms_up"), 0.0, atol=1e-9)
    before, after = hit - landing.HOLD_S - landing.EASE_IN_S, hit + landing.HOLD_S + landing.EASE_OUT_S
    untouched = (times < before) | (times > after)
    assert (weight[untouched] == 0).all()
    assert np.allclose(rotations[untouched], spinning_wrists(len(times))[untouched])
    assert (rotation_pops(rotations, FPS) == 0).all()  # the wrists spin 25 degrees a frame, and no faster


def test_a_later_request_replaces_the_poses_asked_for_the_same_downbeat_or_later():
    landing = KeyPoseLanding(FPS)
    for name, hit in (("arms_up", 2.0), ("crouch", 4.0), ("t_pose", 6.0)):
        assert landing.schedule(name, hit) == []
    assert landing.schedule("point", 4.0 - 0.005) == [(4.0, "crouch"), (6.0, "t_pose")]  # the same downbeat
    assert landing.scheduled == [(2.0, "arms_up"), (3.995, "point")]


class KeepFrames(Sink):
    """Keeps the shown frames and asks for the key poses in turn, one every `every` seconds from `first`."""

    def __init__(self, engine_box, first, every):
        self.engine_box, self.next_request, self.every = engine_box, first, every
        self.frames, self.downbeats, self.asked = [], [], 0

    def send(self, frame):
        self.frames.append(frame)
        if frame.time >= self.next_request:
            self.engine_box[0].controls.key_pose = list(KEY_POSES)[self.asked % len(KEY_POSES)]
            self.asked += 1
            self.next_request += self.every

    def send_beat(self, state):
        if state.is_downbeat:
            self.downbeats.append(state.time)


def strike_key_poses(choreographer, seconds=16.0, first=4.6, every=2.0):
    """Run the live engine (real clock, the synthetic drums at 120 BPM) asking for key poses; returns (the reach in
    cm of each pose at its hit, its distance (s) to the nearest downbeat the engine announced, rotations shown)."""
    box = []
    sink = KeepFrames(box, first, every)
    engine = Engine(SyntheticSource(bpm=120), {"default": choreographer}, [sink])
    box.append(engine)
    engine.run(seconds)
    times = np.array([f.time for f in sink.frames])
    rotations = np.array([f.rotations for f in sink.frames])
    reach, off_beat = [], []
    for hit, name in engine.stats.key_poses:
        if hit > times[-1] - 0.1:
            continue
        shown = int(np.argmin(np.abs(times - hit)))
        reach.append(reach_cm(rotations[shown], name))
        off_beat.append(np.abs(np.array(sink.downbeats) - hit).min() if sink.downbeats else np.inf)
    return np.array(reach), np.array(off_beat), rotations, times, engine.stats.key_poses


class SpinningWrists(GrooveChoreographer):
    """The groove with both wrists twisting 25 degrees a frame: the landing must not pop on the way in or out."""

    def next_slice(self, music, energy=1.0, key_pose=None):
        motion = super().next_slice(music, energy, key_pose)
        wrists = [JOINT_INDEX["Left_Wrist"], JOINT_INDEX["Right_Wrist"]]
        twist = spinning_wrists(motion.num_frames, start=self._frame - motion.num_frames)
        motion.rotations[:, wrists] = twist[:, wrists]
        return motion


@pytest.mark.slow
@pytest.mark.parametrize("choreographer", [GrooveChoreographer, SpinningWrists])
def test_key_poses_land_on_the_downbeats_smoothly(choreographer):
    reach, off_beat, rotations, times, hits = strike_key_poses(choreographer())
    print("reach (cm):", np.round(reach, 1), "from the announced downbeat (ms):", np.round(1000 * off_beat))
    assert len(reach) >= 5 and {name for _, name in hits} == set(KEY_POSES)
    assert np.mean(reach <= REACHED_CM) >= 0.9
    assert np.mean(off_beat <= 1.0 / 60) >= 0.9  # on a downbeat the engine announced to the sinks
    around = np.zeros(len(times), bool)
    for hit, _ in hits:
        around |= np.abs(times - hit) < 1.0
    around = around[1:] & around[:-1]
    steps = np.degrees(2 * np.arccos(np.clip(np.abs(np.sum(rotations[1:] * rotations[:-1], -1)), 0, 1)))
    periods = np.round(np.diff(times) * 60)[:, None]  # a busy machine drops output frames: a gap spans several
    assert (steps / periods)[around].max() < 30.0  # no pop (30 degrees per 1/60 s) on the way in or out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["badm", "codes"])
def test_key_poses_land_with_the_shipped_models(model):
    pytest.importorskip("onnxruntime")
    from onbeat.choreographers.library import Library
    reach, off_beat, *_ = strike_key_poses(Library(seed=0).load(model))
    print(model, "reach (cm):", np.round(reach, 1))
    assert len(reach) >= 5 and np.mean(reach <= REACHED_CM) >= 0.9


def test_an_unknown_key_pose_is_ignored_with_a_warning(logs):
    box = []
    sink = KeepFrames(box, first=10.0, every=10.0)
    engine = Engine(SyntheticSource(bpm=120, seconds=1.5), {"default": GrooveChoreographer()}, [sink])
    engine.controls.key_pose = "moonwalk"
    box.append(engine)
    engine.run(1.5)
    assert engine.stats.key_poses == [] and engine.stats.bad_slices == 0
    assert any("moonwalk" in line for line in logs)


def test_without_a_beat_clock_the_pose_is_struck_as_soon_as_it_can_be_eased_into():
    engine = Engine(SyntheticSource(bpm=120), {"default": GrooveChoreographer()})
    engine.controls.key_pose = "crouch"
    choreographer = engine.idle
    assert engine._key_pose_for(1.0, choreographer) is None
    (hit, name), = engine.stats.key_poses
    assert name == "crouch" and hit == pytest.approx(1.0 + engine.finishing.landing.lead_seconds)
    assert engine._key_pose_for(hit - 0.1, choreographer) == "crouch"  # handed to the slice it lands in
