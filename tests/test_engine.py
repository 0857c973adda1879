"""The live engine: output clock (fake clock), slow and broken models, silence, beat events, mirroring."""
import threading
import time

import numpy as np
import pytest

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion, forward_kinematics
from onbeat.ear.sources import AudioBlock, Source, SyntheticSource
from onbeat.stream.control import Controls
from onbeat.stream.engine import Engine, FrameQueue, mirror_pose
from onbeat.stream.sinks import Sink

RATE = 60.0


class Collect(Sink):
    """A sink that keeps everything, with the clock time of each send."""

    def __init__(self, clock=time.perf_counter, on_send=None):
        self.clock, self.on_send = clock, on_send
        self.frames, self.sent_at, self.beats, self.beats_at = [], [], [], []

    def send(self, frame):
        self.frames.append(frame)
        self.sent_at.append(self.clock())
        if self.on_send:
            self.on_send(frame)

    def send_beat(self, state):
        self.beats.append(state)
        self.beats_at.append(self.clock())


class FakeClock:
    """Virtual time: `sleep` jumps ahead, and every reading advances it by a tick (time passes while spinning)."""

    def __init__(self, tick=1e-5):
        self.now, self.tick = 1000.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now

    def sleep(self, seconds):
        self.now += max(seconds, 0.0)


class QuietSource(Source):
    """No audio until closed (the fake-clock test exercises the output clock alone)."""
    sample_rate, channels = 22050, 1

    def __init__(self):
        self.closed = threading.Event()

    def blocks(self):
        self.closed.wait()
        yield from ()

    def close(self):
        self.closed.set()


def test_output_clock_keeps_absolute_deadlines_and_skips_instead_of_bunching():
    clock = FakeClock()
    period = 1.0 / RATE

    def stall(frame):  # one send takes 3.5 frame periods
        if frame.index == 30:
            clock.sleep(3.5 * period)

    sink = Collect(clock, stall)
    engine = Engine(QuietSource(), {}, [sink], rate=RATE, clock=clock, sleep=clock.sleep)
    stats = engine.run(seconds=1.0)
    indices = [f.index for f in sink.frames]
    assert indices == list(range(31)) + list(range(33, 60))  # frames 31 and 32 were missed, not sent late in a bunch
    assert stats.dropped == 2 and stats.late == 1 and stats.frames == 58
    assert np.allclose([f.time for f in sink.frames], np.array(indices) / RATE, rtol=0, atol=1e-12)
    lateness = np.array(sink.sent_at) - engine._t0 - np.array(indices) / RATE
    assert lateness.min() >= 0.0  # never early
    on_time = np.delete(lateness, indices.index(33))
    assert on_time.max() < 1e-3
    assert np.diff(sink.sent_at).min() > 0.4 * period  # never bunched


def test_frame_queue_slerps_between_model_frames():
    queue = FrameQueue(fps=30)
    groove = GrooveChoreographer().next_slice(np.zeros((8, 28), np.float32))
    queue.push(1.0, groove, jump=True)
    root, rotations, jumped = queue.sample(1.0 + 0.5 / 30)
    assert jumped
    assert np.allclose(rotations, R.quat_slerp(groove.rotations[0], groove.rotations[1], 0.5))
    assert np.allclose(root, groove.root_translation[:2].mean(axis=0))
    assert queue.sample(0.9) is None
    assert not queue.sample(1.0 + 2 / 30)[2]  # the jump is reported once
    assert queue.sample(1.0 + 8.5 / 30) is None  # past the last frame: the engine holds the pose


def test_frame_queue_does_not_slide_into_a_jump():
    """A slice that jumps (another choreographer, far away) is not interpolated into from the one before: the old
    motion holds until the jump's first frame, which comes flagged, so the engine blends from the old pose (one
    frame earlier the dancer was shown most of the way there, and the blend started from that)."""
    queue = FrameQueue(fps=30)
    here = GrooveChoreographer().next_slice(np.zeros((8, 28), np.float32))
    there = Motion(30, here.root_translation + [3.0, 0.0, 0.0], here.rotations)
    queue.push(0.0, here, jump=False)
    end = queue.end
    queue.push(end, there, jump=True)
    just_before = queue.sample(end - 1e-9)
    assert np.allclose(just_before[0], here.root_translation[-1]) and not just_before[2]
    root, _, jumped = queue.sample(end)
    assert jumped and np.allclose(root, there.root_translation[0])


class SlowOnce(GrooveChoreographer):
    """A model whose `slow_call`-th slice takes 5x the slice's duration; records the qualities asked for."""

    def __init__(self, slow_call=2):
        super().__init__()
        self.calls, self.slow_call, self.qualities = 0, slow_call, []

    def next_slice(self, music, energy=1.0, key_pose=None):
        self.calls += 1
        if self.calls == self.slow_call:
            time.sleep(5 * self.slice_frames / self.fps)
        return super().next_slice(music, energy, key_pose)

    def set_quality(self, level):
        self.qualities.append(level)


def run_engine(choreographer, seconds, source=None, on_send=None):
    sink = Collect(on_send=on_send)
    engine = Engine(source or SyntheticSource(bpm=120), {"default": choreographer}, [sink], rate=RATE)
    stats = engine.run(seconds)
    return engine, stats, sink


@pytest.mark.realtime
@pytest.mark.slow
def test_slow_model_degrades_but_the_output_clock_holds():
    model = SlowOnce()
    engine, stats, sink = run_engine(model, 7.0)
    indices = np.array([f.index for f in sink.frames])
    assert model.calls > 10
    assert len(indices) + stats.dropped == 7 * RATE and np.all(np.diff(indices) >= 1)
    assert stats.held > 0  # the pose was held while the model was stuck...
    assert np.diff(sink.sent_at).max() < 0.1  # ...and frames kept coming at the output rate
    assert min(model.qualities) < 1.0 and model.qualities[-1] == 1.0 and engine.quality == 0  # degraded, recovered
    print(f"late {stats.late}, dropped {stats.dropped}, held {stats.held}, p99 lateness {stats.jitter_ms(99):.2f} ms")


class BreaksSometimes(GrooveChoreographer):
    """Slices 3-5 come back with NaN rotations, slice 6 raises; counts resets."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def reset(self):
        self.resets = getattr(self, "resets", -1) + 1  # the constructor's own reset does not count
        super().reset()

    def next_slice(self, music, energy=1.0, key_pose=None):
        self.calls += 1
        motion = super().next_slice(music, energy, key_pose)
        if 3 <= self.calls <= 5:
            motion.rotations[2:, 5] = np.nan
        if self.calls == 6:
            raise FloatingPointError("overflow in the denoiser")
        return motion


@pytest.mark.realtime
@pytest.mark.slow
def test_nan_from_the_model_holds_the_last_good_pose():
    model = BreaksSometimes()
    engine, stats, sink = run_engine(model, 5.0)
    rotations = np.array([f.rotations for f in sink.frames])
    assert np.isfinite(rotations).all() and np.isfinite([f.positions for f in sink.frames]).all()
    assert stats.bad_slices == 4 and model.resets == 1 + 4  # after the warm-up (call 1), then each bad slice
    assert model.calls > 8  # it went on generating afterwards
    unchanged = np.all(np.isclose(rotations[1:], rotations[:-1]), axis=(1, 2))
    longest_hold = max(len(run) for run in "".join("1" if u else "0" for u in unchanged).split("0"))
    assert longest_hold >= 3 * 8 * 2 - 4  # three bad slices of 8 model frames = 48 output frames on one pose
    assert len(sink.frames) + stats.dropped == 5 * RATE


class Backlogged(SyntheticSource):
    """The synthetic track as if its device had been opened `backlog` s before the engine started: that much
    audio is waiting at once, then blocks come in real time."""

    def __init__(self, backlog):
        super().__init__(bpm=120, realtime=False)
        self.backlog = backlog

    def blocks(self):
        start = time.monotonic()
        for block in super().blocks():
            time.sleep(max(0.0, start + block.time - self.backlog - time.monotonic()))
            yield block


@pytest.mark.realtime
@pytest.mark.slow
def test_beat_events_land_on_the_true_beats_even_after_a_backlog():
    source = Backlogged(backlog=0.7)
    engine, stats, sink = run_engine(GrooveChoreographer(), 7.0, source)
    true_beats = source.beat_times(9.0) - source.backlog  # on the output clock
    sent = np.array(sink.beats_at) - engine._t0
    stamped = np.array([b.time for b in sink.beats])
    late = sent >= 3.0  # after lock
    assert late.sum() >= 8
    error_ms = 1000 * (sent[late] - true_beats[np.abs(true_beats[None] - sent[late, None]).argmin(1)])
    print("beat event error (ms):", np.round(error_ms, 1))
    assert np.mean(np.abs(error_ms) <= 50) >= 0.9
    assert np.all(np.abs(stamped[late] - sent[late]) < 0.05)
    assert all(b.is_downbeat == (b.bar_position == 0) for b in sink.beats)


class GappedSource(SyntheticSource):
    """The synthetic track with digital silence between `gap` seconds."""

    def __init__(self, gap):
        super().__init__(bpm=120)
        self.gap = gap

    def blocks(self):
        for block in super().blocks():
            if self.gap[0] <= block.time < self.gap[1]:
                block = AudioBlock(np.zeros_like(block.samples), block.time, block.sample_rate)
            yield block


@pytest.mark.realtime
@pytest.mark.slow
def test_silence_goes_idle_and_music_brings_the_dance_back():
    modes = []
    engine_box = []
    source = GappedSource((3.5, 7.0))
    sink_hook = lambda frame: modes.append((frame.time, engine_box[0].silent))  # noqa: E731
    sink = Collect(on_send=sink_hook)
    engine = Engine(source, {"default": GrooveChoreographer()}, [sink], rate=RATE)
    engine_box.append(engine)
    engine.run(10.0)
    silent_at = lambda t: next(s for time_, s in modes if time_ >= t)  # noqa: E731
    assert not silent_at(3.3)
    assert silent_at(6.9)
    assert not silent_at(9.8)
    beats_in_silence = [b for b in sink.beats if 6.0 <= b.time < 6.9]  # the music is back at 7.0, on a beat
    assert not beats_in_silence


def test_mirror_swaps_sides_and_reflects_positions():
    rotations = R.quat_normalize(np.random.default_rng(3).normal(size=(24, 4)))
    root = np.array([0.3, 0.9, 0.1])
    m_root, m_rot = mirror_pose(root, rotations)
    from onbeat.core.skeleton import MIRROR_INDEX, REST_OFFSETS
    # The SMPL rest offsets are nearly but not exactly symmetric: compare with mirrored offsets.
    mirrored_offsets = REST_OFFSETS[list(MIRROR_INDEX)] * np.array([-1.0, 1.0, 1.0])
    positions = forward_kinematics(m_root, m_rot, mirrored_offsets)
    expected = forward_kinematics(root, rotations)[list(MIRROR_INDEX)] * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(positions, expected)
    back_root, back_rot = mirror_pose(m_root, m_rot)
    assert np.allclose(back_root, root) and np.allclose(back_rot, rotations)


class Unplugged(SyntheticSource):
    """Delivers `first` seconds, then is lost; the first reopen fails, the second works, and the stream goes on
    from where it stopped (like DeviceSource after a JACK restart)."""

    def __init__(self, first):
        super().__init__(bpm=120)
        self.first, self.lost, self.reopens, self._gone = first, False, 0, False

    def blocks(self):
        for block in super().blocks():
            if not self._gone and block.time >= self.first:
                self._gone = self.lost = True
                return
            yield block

    def reopen(self):
        self.reopens += 1
        if self.reopens == 1:
            raise OnbeatError("audio input 'synthetic' is not there")
        self.lost = False


@pytest.mark.realtime
@pytest.mark.slow
def test_lost_input_dances_the_idle_and_comes_back():
    source = Unplugged(first=2.5)
    modes = []
    sink = Collect(on_send=lambda frame: modes.append((frame.time, engine.silent)))
    engine = Engine(source, {"default": GrooveChoreographer()}, [sink], rate=RATE)
    stats = engine.run(8.0)
    assert source.reopens == 2
    assert len(sink.frames) + stats.dropped == 8 * RATE  # the output never stopped
    silent_at = lambda t: next(s for time_, s in modes if time_ >= t)  # noqa: E731
    assert not silent_at(2.4) and silent_at(3.0) and not silent_at(7.9)
    # After the gap, beat events follow the music again, on the true beats shifted by the outage.
    beats = np.array([b.time for b in sink.beats if b.time > 6.0])
    assert len(beats) >= 3 and np.allclose(np.diff(beats), 0.5, atol=0.03)


def beat_rows(seconds, bpm=120.0, rms=0.8):
    """Feature rows of steady music: beat and bar phase columns at `bpm`, a constant loudness."""
    from onbeat.core.music import FEATURE_DIM, FEATURE_NAMES
    t = np.arange(int(seconds * 30)) / 30
    rows = np.zeros((len(t), FEATURE_DIM), np.float32)
    column = FEATURE_NAMES.index
    for name, phase in (("beat_phase", t * bpm / 60 % 1), ("bar_phase", t * bpm / 240 % 1)):
        rows[:, column(f"{name}_sin")] = np.sin(2 * np.pi * phase)
        rows[:, column(f"{name}_cos")] = np.cos(2 * np.pi * phase)
    rows[:, column("rms_energy")] = rms
    return rows


def groove_on(rows, energy=1.0):
    groove = GrooveChoreographer()
    slices = [groove.next_slice(rows[i:i + 8], energy) for i in range(0, len(rows) - 7, 8)]
    return np.concatenate([m.positions() for m in slices])


@pytest.mark.realtime
def test_groove_bounces_on_the_beat_keeps_its_feet_down_and_idles_in_silence():
    from onbeat.core.skeleton import FOOT_JOINTS
    dancing = groove_on(beat_rows(6.0))[60:]  # after easing in
    pelvis = dancing[:, 0, 1]
    on_beat = np.arange(60, 60 + len(pelvis)) % 15 == 0  # 120 BPM at 30 fps: a beat every 15 frames
    assert pelvis[on_beat].mean() < pelvis[~on_beat].mean() - 0.01  # down on the beat
    assert np.allclose(dancing[:, list(FOOT_JOINTS), 1].min(axis=1), 0.0, atol=1e-9)
    idle = groove_on(np.zeros((180, beat_rows(1).shape[1]), np.float32))[60:]
    assert idle[:, 0, 1].std() < 0.2 * pelvis.std()
    hands = slice(20, 22)
    calm = groove_on(beat_rows(6.0), energy=0.3)[60:, hands]
    assert np.ptp(calm, axis=0).mean() < np.ptp(dancing[:, hands], axis=0).mean()


def simulated_groove(key_pose_at=None, seconds=8.0):
    """The groove dancing to the synthetic track through `Engine.simulate` at 30 fps; a key pose asked for at
    output time `key_pose_at`, as a control message would."""
    engine_box = []

    def ask(frame):
        if key_pose_at is not None and abs(frame.time - key_pose_at) < 1e-9:
            engine_box[0].controls.key_pose = "arms_up"

    sink = Collect(on_send=ask)
    source = SyntheticSource(bpm=120, seconds=seconds, realtime=False)
    engine = Engine(source, {"default": GrooveChoreographer()}, [sink], rate=30.0)
    engine_box.append(engine)
    return engine, engine.simulate(), sink, source


def test_simulate_runs_the_live_steps_on_a_simulated_clock_deterministically():
    engine, stats, sink, source = simulated_groove()
    _, _, again, _ = simulated_groove()
    rotations = np.array([f.rotations for f in sink.frames])
    assert np.array_equal(rotations, np.array([f.rotations for f in again.frames]))  # deterministic
    assert [f.index for f in sink.frames] == list(range(len(sink.frames)))  # no frame dropped or held
    assert stats.dropped == stats.held == 0 and stats.bad_slices == 0
    assert 8.0 <= len(sink.frames) / 30.0 <= 8.6  # the whole track, and the last moves after it
    assert not engine.silent
    # Blocks reach the ear when complete (one block late, 23 ms): beat events land on the true beats.
    beats = np.array([b.time for b in sink.beats if b.time > 3.0])
    true_beats = source.beat_times(9.0)
    error_ms = 1000 * (beats - true_beats[np.abs(true_beats[None] - beats[:, None]).argmin(1)])
    assert len(beats) >= 8 and np.mean(np.abs(error_ms) <= 50) >= 0.9


def test_simulate_strikes_a_requested_key_pose_on_the_downbeat_it_records():
    from onbeat.choreographers.keyposes import REACHED_CM, reach_cm
    engine, stats, sink, _ = simulated_groove(key_pose_at=5.0)
    (downbeat, name), = stats.key_poses
    assert name == "arms_up" and 5.0 < downbeat < 5.0 + 2.5  # the next downbeat at 120 BPM: within a bar
    shown = next(f for f in sink.frames if abs(f.time - downbeat) < 0.5 / 30)
    assert reach_cm(shown.rotations, name) < REACHED_CM


def test_run_warms_each_choreographer_up_before_the_clock_starts():
    """The first slice (an ONNX session's first run) costs several slices' time: paid before the clock's t0."""
    started_at = []

    class Watched(GrooveChoreographer):
        def next_slice(self, music, energy=1.0, key_pose=None):
            started_at.append(engine._t0)
            return super().next_slice(music, energy, key_pose)

    clock = FakeClock()
    engine = Engine(QuietSource(), {"default": Watched()}, [Collect(clock)], rate=RATE, clock=clock,
                    sleep=clock.sleep)
    engine.run(seconds=0.1)
    assert started_at[:1] == [None]  # the first call came before the clock started


def test_warming_up_leaves_a_seeded_model_dancing_the_same_dance():
    from onbeat.choreographers.library import Library
    from onbeat.core.music import synthetic_music
    warmed, fresh = Library(seed=3).load("badm"), Library(seed=3).load("badm")
    Engine(QuietSource(), {"default": warmed}).warm_up()
    music = synthetic_music(2.0)
    for k in range(3):
        rows = music[k * fresh.slice_frames:(k + 2) * fresh.slice_frames]
        assert np.array_equal(warmed.next_slice(rows).rotations, fresh.next_slice(rows).rotations)


class StyledGroove(GrooveChoreographer):
    """The groove with a style vocabulary: records what it was asked to dance."""
    styles = ("freestyle", "waltz", "krump")

    def __init__(self):
        super().__init__()
        self.asked = []

    def set_style(self, name):
        if name not in (None, *self.styles):
            raise OnbeatError(f"unknown style {name!r}: this model knows {', '.join(self.styles)}")
        self.asked.append(name)


def test_a_style_asked_for_while_dancing_goes_to_each_model_once_and_unknown_ones_are_warned(logs):
    styled, plain = StyledGroove(), GrooveChoreographer()
    requests = {2.0: ("style", "krump"), 3.0: ("style", "salsa"), 4.0: ("model", "plain"), 5.0: ("model", "styled"),
                6.0: ("style", "")}
    engine_box = []

    def control(frame):
        for at, (what, value) in requests.items():
            if abs(frame.time - at) < 1e-9:
                setattr(engine_box[0].controls, what, value)

    source = SyntheticSource(bpm=120, seconds=7.0, realtime=False)
    engine = Engine(source, {"styled": styled, "plain": plain}, [Collect(on_send=control)], rate=30.0,
                    controls=Controls(model="styled", style="waltz"))
    engine_box.append(engine)
    stats = engine.simulate()
    assert stats.bad_slices == 0 and stats.frames >= 7 * 30  # the show went on
    # waltz from the start, krump; salsa refused (the dance stays krump); "" = any style, after the switch back
    assert styled.asked == ["waltz", "krump", None]
    warnings = [line for line in logs if "/onbeat/style" in line]
    assert any("'salsa' ignored by styled: unknown style 'salsa'" in line for line in warnings)
    assert any("'salsa' ignored by plain: this model knows no styles" in line for line in warnings)
