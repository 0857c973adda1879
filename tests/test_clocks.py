"""External beat clocks: the grid maths, the handover between leaders, MIDI pulse counting, OSC tempo and taps,
the engine following a clock, and, for real, Ableton Link in a private network namespace and MIDI clock over a
private JACK server."""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clock_helpers import in_private_network
from pythonosc.udp_client import SimpleUDPClient

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.core.errors import OnbeatError
from onbeat.ear.clocks import BeatGrid, ClockPulses, ExternalClock, Handover
from onbeat.ear.jack import JackServer
from onbeat.ear.sources import SyntheticSource
from onbeat.stream.control import Controls, ControlServer
from onbeat.stream.dashboard import snapshot
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import Sink

pytestmark = pytest.mark.realtime  # its Link, MIDI and OSC clock tests judge timing; the rest are quick: all alone

HELPERS = Path(__file__).with_name("clock_helpers.py")


def test_a_grid_gives_the_beat_state_at_any_time():
    grid = BeatGrid(time=10.0, index=5, period=0.5)
    state = grid.beat_state(10.25)
    assert state.bpm == 120.0 and state.phase == pytest.approx(0.5) and state.bar_position == 1
    assert state.last_beat == 10.0 and np.allclose(state.next_beats, [10.5, 11.0, 11.5, 12.0])
    assert grid.beat_state(9.9).bar_position == 0 and grid.beat_state(9.9).last_beat == pytest.approx(9.5)
    again = BeatGrid.of(state)
    assert again.at(10.25) % 4 == pytest.approx(grid.at(10.25) % 4) and again.period == 0.5


WITHOUT_MIDO = """
import sys
class NoMido:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mido":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoMido())
from onbeat.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_missing_clock_package_names_the_extra_in_one_line(tmp_path):
    argv = ["play", "--demo", "--silent", "--no-vmc", "--control-port", "0", "--midi-clock", "--seconds", "1"]
    done = subprocess.run([sys.executable, "-c", WITHOUT_MIDO, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == (
        "onbeat: error: `onbeat play` needs mido: install the clock extra (pip install 'onbeat[clock]')")


def shown_beats(handover, leaders, times):
    """The beat number shown at each time, asking `leaders(t)` -> (name, grid) who leads."""
    return np.array([handover.follow(*leaders(t), t).at(t) for t in times])


def test_handover_eases_the_phase_over_a_bar_and_the_ear_keeps_the_clocks_bars():
    ear = BeatGrid(0.13, 1, 0.5)  # 120 BPM, its own bar guess
    link = BeatGrid(0.0, 0, 60 / 128)  # 128 BPM, another phase and numbering
    times = np.arange(0.0, 12.0, 0.01)
    def leaders(t):
        return ("link", link) if 2.0 <= t < 7.0 else ("ear", ear)
    handover = Handover()
    beats = shown_beats(handover, leaders, times)
    steps = np.diff(beats)
    joined = np.flatnonzero(times[1:] >= 2.0)[0]
    renumbered = round(steps[joined])  # Link brings its bar numbering at once: whole beats, the phase goes on
    steps[joined] -= renumbered
    speed = steps / 0.01  # beats per second shown
    assert speed.max() < 1.25 * 128 / 60 and speed.min() > 0.75 * 120 / 60  # eased, never a jump
    bar = 4 * 60 / 128
    settled = (times > 2.0 + bar) & (times < 7.0)
    assert np.allclose(beats[settled], [link.at(t) for t in times[settled]], atol=1e-9)  # Link's phase and bars
    back = times > 7.0 + 4 * 0.5
    offset = beats[back] - np.array([ear.at(t) for t in times[back]])
    assert np.allclose(offset, np.round(offset[0]), atol=1e-9)  # the ear's phase, Link's numbering (continuous)
    assert handover.settled == (round(offset[0]) % 4 == 0)  # passed through as it is when the bars agree


class Pulses:
    """A MIDI clock source in virtual time: pulses at a tempo, with jitter and stalls."""

    def __init__(self, rng):
        self.clock, self.rng, self.now, self.pulse = ClockPulses(), rng, 100.0, 0
        self.beats = []  # true time of every beat's pulse

    def send(self, kind, **fields):
        self.clock.receive(type("Message", (), {"type": kind, **fields})(), self.now)

    def play(self, bpm, beats, jitter=0.0, stall=None):
        """`stall`: (from, to) host times in which nothing arrives; the pulses sent then come in a bunch at `to`."""
        for _ in range(int(beats * 24)):
            if self.pulse % 24 == 0:
                self.beats.append(self.now)
            at = self.now + self.rng.uniform(0, jitter)
            if stall and stall[0] <= at < stall[1]:
                at = stall[1]
            self.clock.receive(type("Message", (), {"type": "clock"})(), at)
            self.pulse += 1
            self.now += 60.0 / bpm / 24

    def error_ms(self):
        grid = self.clock.grid(self.now)
        beat = grid.at(self.beats[-1])
        return 1000 * (beat - round(beat)) * grid.period, round(beat) % 4 == (len(self.beats) - 1) % 4, grid.bpm


@pytest.mark.parametrize("bpm", [120.0, 174.0])
def test_clock_pulses_keep_the_beat_through_jitter_and_stalls(bpm):
    source = Pulses(np.random.default_rng(3))
    source.send("start")
    errors = []
    for bar in range(8):
        stall = (source.now + 1.0, source.now + 1.06) if bar % 2 else None  # 60 ms without a message
        source.play(bpm, 4, jitter=0.004, stall=stall)
        errors.append(source.error_ms())
    print(f"{bpm} BPM: beat error per bar (ms) {[round(e[0], 2) for e in errors]}, tempo {errors[-1][2]:.2f}")
    assert all(abs(error) < 3.0 and downbeat for error, downbeat, _ in errors)
    assert errors[-1][2] == pytest.approx(bpm, rel=0.01)


def test_clock_pulses_follow_the_transport():
    source = Pulses(np.random.default_rng(0))
    source.play(120.0, 2)
    ear = BeatGrid(source.now - 0.1, 7, 0.5)
    grid = source.clock.grid(source.now, ear)
    assert grid.at(ear.time) == pytest.approx(7.0, abs=0.05)  # no transport yet: the ear's phase
    source.send("start")
    source.beats.clear()
    source.play(120.0, 3)
    error, downbeat, _ = source.error_ms()
    assert abs(error) < 1.0 and downbeat and source.clock.grid(source.now).at(source.beats[0]) == pytest.approx(0)
    source.send("stop")
    assert source.clock.grid(source.now) is None
    source.send("songpos", pos=32)  # in 16th notes: beat 8, the downbeat of bar 3
    source.send("continue")
    source.beats.clear()
    source.play(120.0, 1)
    assert source.clock.grid(source.now).at(source.beats[0]) == pytest.approx(8.0, abs=0.01)
    assert source.clock.grid(source.now + 1.0) is None  # no pulses for a second: gone


def test_osc_tempo_and_beats_drive_the_osc_clock():
    controls = Controls()
    clock = controls.clock
    assert clock.grid() is None
    assert controls.apply("/onbeat/tempo", [90.0])
    assert controls.apply("/onbeat/beat", [0])
    grid = clock.grid()
    assert grid.bpm == pytest.approx(90.0) and grid.index == 0 and time.perf_counter() - grid.time < 0.5
    assert controls.apply("/onbeat/tempo", [0])
    assert clock.grid() is None
    assert controls.apply("/onbeat/beat", [])  # a tap: a beat, but no tempo yet
    assert clock.grid() is None
    start = time.perf_counter()
    for k in range(1, 4):  # tap tempo (the times the taps came, as the control server stamps them)
        clock.tap(start + 0.25 * k)
    assert clock.grid().bpm == pytest.approx(240.0) and clock.grid().index == 3
    bad = [("/onbeat/tempo", [10.0]), ("/onbeat/tempo", [500]), ("/onbeat/tempo", [True]), ("/onbeat/tempo", []),
           ("/onbeat/beat", [4]), ("/onbeat/beat", ["1"]), ("/onbeat/beat", [1, 2])]
    assert not any(controls.apply(address, args) for address, args in bad)
    assert controls.malformed == len(bad)


class Keep(Sink):
    def __init__(self):
        self.frames, self.beats = [], []

    def send(self, frame):
        self.frames.append(frame)

    def send_beat(self, state):
        self.beats.append(state)


class Vanishing(ExternalClock):
    """An external clock with a steady grid until `until` (host time), then nothing."""

    name = "link"

    def __init__(self, grid, until):
        self._grid, self.until = grid, until

    def grid(self):
        return self._grid if time.perf_counter() < self.until else None


def test_the_engine_follows_a_clock_and_hands_back_to_the_ear():
    start = time.perf_counter()
    clock = Vanishing(BeatGrid(start + 0.3, 0, 60 / 100), until=start + 4.0)
    sink = Keep()
    engine = Engine(SyntheticSource(bpm=120), {"default": GrooveChoreographer()}, [sink], clocks=[clock])
    seen = []
    sink.send = lambda frame: seen.append((frame.time, engine.leader, snapshot(engine)["clock"]))
    engine.run(7.0)
    t0 = engine._t0
    led = [b for b in sink.beats if 1.0 < b.time + t0 - start < 3.9]
    assert len(led) >= 4 and all(b.bpm == pytest.approx(100.0) for b in led)
    errors = [(b.time + t0 - clock._grid.time) / 0.6 for b in led]
    assert np.allclose(errors, np.round(errors), atol=0.005 / 0.6)  # on the clock's beats within 5 ms
    assert all(b.bar_position == round(e) % 4 for b, e in zip(led, errors, strict=True))
    assert {leader for t, leader, _ in seen if 0.5 < t + t0 - start < 3.9} == {"link"}
    assert seen[-1][1:] == ("ear", "ear")
    later = np.diff([b.time for b in sink.beats if b.time + t0 - start > 3.0])
    assert np.all((later > 0.4) & (later < 0.75))  # 100 BPM eases to 120 BPM: no double or missing beat


def test_osc_control_messages_lead_the_engine():
    controls = Controls(model="default")
    sink = Keep()
    engine = Engine(SyntheticSource(bpm=120), {"default": GrooveChoreographer()}, [sink], controls=controls)
    with ControlServer(controls, "127.0.0.1", 0) as server:
        client = SimpleUDPClient(*server.address)
        client.send_message("/onbeat/tempo", 90.0)
        client.send_message("/onbeat/beat", 0)
        deadline = time.monotonic() + 2.0
        while controls.received < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        engine.run(4.0)
    assert engine.leader == "osc"
    late = [b for b in sink.beats if b.time > 1.0]
    assert len(late) >= 2 and all(b.bpm == pytest.approx(90.0) for b in late)
    assert np.allclose(np.diff([b.time for b in late]), 60 / 90, atol=1e-6)


def private_network_available():
    try:
        return shutil.which("ip") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def run_helper(command, timeout=120, **popen):
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **popen)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_namespace = pytest.mark.skipif(not private_network_available(), reason="Ableton Link runs only in a private "
                                     "network namespace: `unshare -n` (and `ip`) are not permitted here")


@pytest.mark.slow
@needs_namespace
def test_link_leads_the_dance_in_a_private_network():
    pytest.importorskip("aalink", reason="the 'clock' extra (aalink) is not installed")
    result = run_helper(in_private_network("link-follow"))
    print("Link follow:", json.dumps(result))
    assert result["join_s"] < 2.0
    steady = result["steady"]
    assert steady["n"] >= 6 and steady["median"] <= 5.0 and steady["p95"] <= 5.0
    # the dance takes the new tempo within one beat (in a few audio blocks), every beat after it on the new grid
    assert result["dance_tempo_followed_after_s"] < 60 / 140  # within one beat
    assert result["after_change"]["n"] >= 6 and result["after_change"]["max"] <= 5.0
    assert result["bpm_after_change"] == pytest.approx(140.0, abs=0.01)
    assert result["downbeats_on_link_bars"] and result["bounce_phase_spread_beats"] < 0.1
    assert result["ear_leads_after_s"] is not None and result["ear_leads_after_s"] < 0.5
    assert result["final_leader"] == "ear" and result["final_bpm"] == pytest.approx(120.0, abs=3.0)
    intervals = np.array(result["intervals_around_leave"])
    assert np.all((intervals > 0.35) & (intervals < 0.65))  # 140 BPM eases into the ear's 120: no jump


@pytest.mark.slow
@needs_namespace
def test_link_lead_publishes_onbeats_tempo_and_beat():
    pytest.importorskip("aalink", reason="the 'clock' extra (aalink) is not installed")
    result = run_helper(in_private_network("link-lead"))
    print("Link lead:", json.dumps(result))
    assert result["leaders"] == ["ear"]
    assert result["peer_tempo"] == pytest.approx(result["onbeat_bpm"], abs=0.1)
    assert result["peer_tempo"] == pytest.approx(120.0, abs=2.0)
    assert result["beats"]["median"] <= 15.0  # the ear's own beat jitter (one 11 ms novelty frame) bounds it


@pytest.fixture
def midi_jack():
    pytest.importorskip("rtmidi", reason="the 'clock' extra (python-rtmidi) is not installed")
    try:
        server = JackServer(prefix="onbeat-midi", period=128, synchronous=True)
    except OnbeatError as e:
        pytest.skip(str(e))
    yield server
    server.stop()


@pytest.mark.slow
def test_midi_clock_leads_the_dance_at_120_and_174_bpm(midi_jack):
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    sender = midi_jack.spawn([sys.executable, str(HELPERS), "midi-send", "120", "174"], stdin=subprocess.PIPE, **pipes)
    midi_jack.wait_for_port(lambda port: port.endswith("clock-out"), timeout=30)
    follower = midi_jack.spawn([sys.executable, str(HELPERS), "midi-follow", "14"], **pipes)
    assert follower.stdout.readline().strip() == "listening"
    sender.stdin.write(f"{time.perf_counter() + 1.0}\n")
    sender.stdin.flush()
    sent_out, sent_err = sender.communicate(timeout=60)
    got_out, got_err = follower.communicate(timeout=60)
    assert sender.returncode == 0 and follower.returncode == 0, sent_err[-2000:] + got_err[-2000:]
    sent = np.array(json.loads(sent_out)["beats"])
    got = json.loads(got_out)
    beats = np.array(got["beats"])
    assert "midi" in {leader for _, leader in got["leaders"]}
    for bpm in (120.0, 174.0):
        numbers = np.flatnonzero(sent[:, 1] == bpm)
        truth = sent[numbers, 0]
        # from the bar after the clock takes over (120) / the second beat after the tempo change (174)
        first = truth[0] + (4 if bpm == 120.0 else 1) * 60.0 / bpm
        ours = beats[(beats[:, 0] >= first - 0.05) & (beats[:, 0] <= truth[-1] + 0.01)]
        nearest = np.abs(truth[None, :] - ours[:, :1]).argmin(axis=1)
        errors = 1000.0 * (ours[:, 0] - truth[nearest])
        print(f"MIDI clock {bpm:.0f} BPM: {len(errors)} beats, error median {np.median(np.abs(errors)):.2f} ms, "
              f"p95 {np.percentile(np.abs(errors), 95):.2f} ms, max {np.abs(errors).max():.2f} ms (signed median "
              f"{np.median(errors):+.2f}), tempo {np.median(ours[:, 1]):.2f}")
        assert len(errors) >= 6 and np.percentile(np.abs(errors), 95) <= 10.0
        assert np.median(ours[:, 1]) == pytest.approx(bpm, rel=0.005)
        assert all(number % 4 == bar for number, bar in zip(numbers[nearest], ours[:, 2].astype(int), strict=True))
