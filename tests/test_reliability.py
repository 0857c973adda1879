"""A live show never stops: real faults (a JACK server killed and restarted, a starved reader, a model gone slow
or producing Inf, unreachable OSC targets, a full disk), bad input of every kind through the CLI, fuzzed control
datagrams over real UDP, the control port's default address, and a one-minute soak of the full pipeline.

What other files already cover is not repeated here: a single slow slice (test_engine), NaN slices and model
exceptions (test_engine), a refusing target's warning rate (test_sinks), disk full by RLIMIT_FSIZE (test_play),
corrupt and truncated ONNX files in the runtime (test_runtime), unreadable audio files (test_sources).
"""
import json
import math
import re
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jack_helpers import SAMPLE_RATE, summary_of
from pythonosc.osc_bundle_builder import IMMEDIATELY as BUILD_IMMEDIATELY  # python-osc's "now" (0 -> wire tag 1)
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.commands.cli import build_parser, main
from onbeat.core.motion import Motion
from onbeat.core.paths import ASSETS
from onbeat.ear.sources import SyntheticSource
from onbeat.evaluation import fuzz_grammar as grammar
from onbeat.evaluation.fuzz import FIXED_NOW, audio_case
from onbeat.stream.control import (
    IMMEDIATELY,
    MAX_SCHEDULE_SECONDS,
    Controls,
    ControlServer,
    MalformedPacket,
    parse_packet,
    time_tag_to_unix,
)
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import OnbeatOscSink, Recorder, Sink, VmcSink

RATE = 60.0


class Collect(Sink):
    """A sink that keeps the frames and the monotonic time each one was sent."""

    def __init__(self):
        self.frames, self.sent_at = [], []

    def send(self, frame):
        self.frames.append(frame)
        self.sent_at.append(time.monotonic())


def run_engine(choreographer, seconds, sinks=()):
    sink = Collect()
    engine = Engine(SyntheticSource(bpm=120), {"default": choreographer}, [sink, *sinks], rate=RATE)
    stats = engine.run(seconds)
    return engine, stats, sink


def assert_steady_output(stats, sink, seconds):
    """Every deadline met or skipped (never two frames for one), and frames kept coming at the output rate: the
    bounds leave room for a loaded 2-core CI machine descheduling the process now and then."""
    indices = np.array([f.index for f in sink.frames])
    assert len(indices) + stats.dropped == seconds * RATE and np.all(np.diff(indices) >= 1)
    gaps = np.diff(sink.sent_at)
    assert gaps.max() < 0.25 and np.mean(gaps > 2.5 / RATE) < 0.01 and stats.dropped < 0.02 * len(indices)
    assert np.isfinite([f.positions for f in sink.frames]).all()


# --- 1, 2: the audio device -------------------------------------------------------------------------------------

@pytest.mark.realtime
@pytest.mark.slow
def test_jack_server_restart_reconnects_the_device_source(jack_server):
    capture = jack_server.run_capture("reconnect")
    assert capture.stdout.readline().strip() == "capturing", capture.stderr.read()
    time.sleep(0.5)
    jack_server.kill(jack_server.jackd)
    assert capture.stdout.readline().strip() == "lost"
    time.sleep(1.0)  # reopen attempts fail while the server is down
    jack_server.start()
    summary = summary_of(capture)
    assert not summary["lost"] and summary["reopened_at"] > 0.3 * SAMPLE_RATE
    assert summary["frames"] >= summary["reopened_at"] + 0.5 * SAMPLE_RATE  # audio again after the restart
    assert summary["min_gap"] == 0  # block times go on from where they stopped: no frame counted twice or lost


@pytest.mark.realtime
@pytest.mark.slow
def test_engine_dances_the_idle_through_a_jack_restart_and_hears_the_input_again(jack_server):
    seconds = 9
    capture = jack_server.run_capture("engine", seconds)
    assert capture.stdout.readline().strip() == "capturing", capture.stderr.read()
    time.sleep(2.0)
    jack_server.kill(jack_server.jackd)
    time.sleep(2.0)
    jack_server.start()
    summary = summary_of(capture)
    assert summary["sent"] + summary["dropped"] == seconds * RATE and summary["dropped"] < 0.02 * seconds * RATE
    assert summary["max_gap"] < 0.1  # the output never stalled, not even while PortAudio's server was gone
    logs = "\n".join(summary["logs"])
    assert "audio input lost" in logs and "audio input is back" in logs
    # ~1.5 s of audio before the kill plus ≥ 2 s after the restart (the engine retries every second)
    assert summary["frames"] > 3.0 * SAMPLE_RATE and not summary["lost"]


@pytest.mark.realtime
@pytest.mark.slow
def test_a_starved_reader_loses_old_audio_counted_and_the_timeline_stays_intact(jack_server):
    buffer_s = 0.5
    capture = jack_server.run_capture("starve", 3.0, buffer_s)
    assert capture.stdout.readline().strip() == "capturing", capture.stderr.read()
    summary = summary_of(capture)
    assert not summary["lost"]
    # the reader slept 2 buffers: about one buffer's worth was overwritten, and counted
    assert 0.3 * SAMPLE_RATE < summary["dropped"] < 1.5 * SAMPLE_RATE
    # the block times jump by exactly the dropped frames (and never go back): the stream's timeline is the
    # device's, so the beat clock stays right after an overflow
    assert summary["min_gap"] >= 0
    assert summary["max_gap"] == summary["dropped"]
    assert summary["end_time"] * SAMPLE_RATE >= summary["frames"] + summary["dropped"] - 4096


# --- 3, 4, 5: the model and the network ---------------------------------------------------------------------

class SlowPatch(GrooveChoreographer):
    """A model whose step costs `share` of the slice's duration (times its quality level), 5x that between
    `slow_from` and `slow_until` seconds after its first call."""

    def __init__(self, share=0.25, slow_from=1.0, slow_until=3.0):
        super().__init__()
        self.share, self.slow = share, (slow_from, slow_until)
        self.quality, self.qualities, self.first = 1.0, [], None

    def set_quality(self, level):
        self.quality = level
        self.qualities.append((time.monotonic() - self.first, level))

    def next_slice(self, music, energy=1.0, key_pose=None):
        self.first = self.first or time.monotonic()
        elapsed = time.monotonic() - self.first
        factor = 5.0 if self.slow[0] <= elapsed < self.slow[1] else 1.0
        time.sleep(factor * self.share * self.quality * self.slice_frames / self.fps)
        return super().next_slice(music, energy, key_pose)


@pytest.mark.realtime
@pytest.mark.slow
def test_a_model_five_times_slower_for_seconds_degrades_holds_the_clock_and_recovers(logs):
    model = SlowPatch()
    engine, stats, sink = run_engine(model, 10.0)
    assert_steady_output(stats, sink, 10)
    lowered = [t for t, level in model.qualities if level < 1.0]
    assert lowered and 1.0 <= lowered[0] < 3.5  # degraded while it was slow...
    assert model.qualities[-1][1] == 1.0 and engine.quality == 0  # ...and back to full quality after
    assert model.qualities[-1][0] > 3.0
    assert sum("generation is behind" in line for line in logs) <= 2  # warned, not flooded


class InfRoot(GrooveChoreographer):
    """Slices 3-5 have an infinite root translation."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def next_slice(self, music, energy=1.0, key_pose=None):
        self.calls += 1
        motion = super().next_slice(music, energy, key_pose)
        if 3 <= self.calls <= 5:
            motion.root_translation[4:, 1] = np.inf
        return motion


@pytest.mark.realtime
@pytest.mark.slow
def test_inf_from_the_model_holds_the_last_good_pose_warns_and_blends_back(logs):
    model = InfRoot()
    engine, stats, sink = run_engine(model, 4.0)
    assert_steady_output(stats, sink, 4)
    roots = np.array([f.root_translation for f in sink.frames])
    assert np.isfinite(roots).all() and np.abs(roots).max() < 3.0
    assert stats.bad_slices == 3 and model.calls > 8
    assert sum("NaN/Inf" in line for line in logs) == 1  # once per warning interval
    steps = np.linalg.norm(np.diff(roots, axis=0), axis=1)
    assert steps.max() < 0.05  # held, then blended back: no jump of the body anywhere


@pytest.mark.realtime
@pytest.mark.slow
def test_unreachable_and_refusing_osc_targets_never_stop_the_show(logs):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    refusing_port = closed.getsockname()[1]
    closed.close()
    refusing = OnbeatOscSink("127.0.0.1", refusing_port)
    unreachable = VmcSink("192.0.2.1", 39539)  # TEST-NET-1: nobody is there
    engine, stats, sink = run_engine(GrooveChoreographer(), 3.0, [refusing, unreachable])
    refusing.close(), unreachable.close()
    assert_steady_output(stats, sink, 3)
    assert refusing.target.errors > 0
    for target in (refusing.target, unreachable.target):
        assert sum(target.address in w for w in logs) == (1 if target.errors else 0)  # once per 5 s


# --- 6: disk full, for real ------------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 kB tmpfs: writes fail with ENOSPC when it is full."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_disk_full_stops_the_recording_with_a_message_and_the_parts_stay_readable(tiny_disk, logs):
    recorder = Recorder(tiny_disk / "show.npz", RATE, segment_seconds=0.5)
    engine, stats, sink = run_engine(GrooveChoreographer(), 5.0, [recorder])
    recorder.close()
    assert_steady_output(stats, sink, 5)  # the show went on
    assert recorder.failed and "No space left on device" in recorder.failed
    stopped = [line for line in logs if "recording stopped" in line]
    assert len(stopped) == 1 and "live output continues" in stopped[0]
    parts = sorted(tiny_disk.glob("show.part*.npz"))
    assert parts and not (tiny_disk / "show.npz").exists()
    kept = [Motion.load(p) for p in parts]
    assert sum(m.num_frames for m in kept) == recorder.frames_recorded >= 30
    first = kept[0]  # the recording holds what was shown
    shown = np.array([f.rotations for f in sink.frames[:first.num_frames]])
    assert np.allclose(first.rotations, shown, atol=1e-6)


# --- 7: bad input through the CLI --------------------------------------------------------------------------------

QUIET = ["--silent", "--no-vmc", "--quiet", "--control-port", "0", "--model", "groove"]


def wav_header(rate, channels, frames, bits=16):
    data = frames * channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
            rate * channels * bits // 8, channels * bits // 8, bits) + b"data" + struct.pack("<I", data))


def one_error_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onbeat: error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("problem, expected", [
    ("zero-length", "cannot read audio"), ("garbage", "cannot read audio"), ("header-only", "no audio"),
])
def test_unreadable_audio_is_one_error_line(tmp_path, capsys, problem, expected):
    path = tmp_path / f"{problem}.wav"
    path.write_bytes({"zero-length": b"", "header-only": wav_header(44100, 1, 0),
                      "garbage": b"RIFF" + np.random.default_rng(1).bytes(5000)}[problem])
    line = one_error_line(["play", str(path), *QUIET], capsys)
    assert str(path) in line and expected in line


@pytest.mark.slow
@pytest.mark.parametrize("rate, channels", [(8000, 1), (96000, 2), (192000, 1), (44100, 8)])
def test_unusual_rates_and_channel_counts_dance(tmp_path, capsys, rate, channels):
    t = np.arange(2 * rate) / rate
    clicks = (np.sin(2 * np.pi * 1000 * t) * (t % 0.5 < 0.02)).astype(np.float32)
    path = tmp_path / f"{rate}x{channels}.wav"
    soundfile.write(path, np.repeat(0.5 * clicks[:, None], channels, axis=1), rate)
    assert main(["play", str(path), "--seconds", "1.5", *QUIET]) == 0
    out = capsys.readouterr().out
    frames = int(re.search(r"frames=(\d+)", out).group(1))
    assert frames > 60


@pytest.mark.slow
def test_truncated_and_huge_files_play_without_reading_them_whole(tmp_path, capsys):
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(wav_header(44100, 1, 44100 * 60) + np.zeros(44100, np.int16).tobytes())  # 1 s of 60
    assert main(["play", str(truncated), *QUIET]) == 0  # plays what is there, ends cleanly
    huge = tmp_path / "two-hours.wav"  # a sparse file: the header claims 2 h of silence, 635 MB never written
    frames = 44100 * 7200
    with open(huge, "wb") as f:
        f.write(wav_header(44100, 1, frames))
        f.truncate(44 + 2 * frames)
    started = time.monotonic()
    assert main(["play", str(huge), "--seconds", "1", *QUIET]) == 0
    assert time.monotonic() - started < 10
    capsys.readouterr()


def test_corrupt_onnx_models_are_one_error_line(tmp_path, capsys):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(2).bytes(20000))
    truncated = tmp_path / "truncated.onnx"
    real = (ASSETS / "badm.onnx").read_bytes()
    truncated.write_bytes(real[:len(real) // 2])
    for path in (garbage, truncated):
        line = one_error_line(["play", "--demo", "--seconds", "1", "--model", str(path), *QUIET[:-2]], capsys)
        assert str(path) in line


@pytest.mark.parametrize("argv, expected", [
    (["--rate", "0"], "--rate"), (["--bpm", "-5"], "bpm -5"), (["--vmc", "notahost:99999"], "notahost:99999"),
    (["--seconds", "-1"], "--seconds"),
])
def test_bad_play_values_are_one_error_line(capsys, argv, expected):
    sending = [arg for arg in QUIET if arg != "--no-vmc"]  # the VMC target is checked when VMC is on
    line = one_error_line(["play", "--demo", "--seconds", "1", *sending, *argv], capsys)
    assert expected in line


@pytest.mark.parametrize("argv, expected", [
    (["play", "--demo", "--control-port", "70000"], "--control-port: 70000 is not a port (0..65535)"),
    (["play", "--demo", "--control-port", "-1"], "--control-port: -1 is not a port"),
    (["play", "--demo", "--seconds", "nan"], "--seconds: 'nan' is not a finite number"),
    (["play", "--demo", "--seconds", "inf"], "--seconds: 'inf' is not a finite number"),
    (["play", "--demo", "--bpm", "nan"], "--bpm: 'nan'"), (["play", "--demo", "--rate=-inf"], "--rate: '-inf'"),
    (["live", "--seconds", "NaN"], "--seconds: 'NaN'"), (["bench", "soak", "--minutes", "nan"], "--minutes: 'nan'"),
    (["bench", "live", "--seconds", "inf"], "--seconds: 'inf'"), (["render", "x.npz", "--fps", "nan"], "--fps: 'nan'"),
    (["bench", "fuzz", "--seconds", "inf"], "--seconds: 'inf'"),
    (["play", "--demo", "--seconds", "1", "--osc", "[::1]:99999"], "port must be 1..65535"),
])
def test_every_cli_value_is_checked_in_one_line(capsys, argv, expected):
    line = one_error_line(argv, capsys)
    assert expected in line


def test_a_wav_header_claiming_2_ghz_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "claims.wav"
    path.write_bytes(wav_header(2_147_483_647, 1, 100) + bytes(200))
    line = one_error_line(["play", str(path), *QUIET], capsys)
    assert "sample rate 2147483647 Hz is outside" in line


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(grammar.strategy(grammar.wav_file))
def test_grammar_fuzz_wav_files_are_read_or_refused_in_one_line(tmp_path_factory, data):
    audio_case(data, ".wav", tmp_path_factory.mktemp("wav"))


@pytest.mark.slow
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(grammar.strategy(grammar.flac_file))
def test_grammar_fuzz_flac_files_are_read_or_refused_in_one_line(tmp_path_factory, data):
    audio_case(data, ".flac", tmp_path_factory.mktemp("flac"))


@pytest.mark.parametrize("config, expected", [
    ({"lr": -0.001}, "lr = -0.001: must be positive"), ({"steps": 0}, "steps = 0: must be an integer >= 1"),
    ({"batch_size": "big"}, "batch_size = 'big': must be an integer"), ({"width": 1.5}, "width = 1.5"),
    ({"mirror": float("nan")}, "mirror"), ({"dropout_rate": 0.1}, "unknown config key dropout_rate"),
    ({"ddim_steps": True}, "ddim_steps = True"),
])
def test_bad_training_config_values_are_one_error_line(tmp_path, capsys, config, expected):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    line = one_error_line(["train", "badm", "--config", str(path), "--data", str(tmp_path / "none.npz")], capsys)
    assert str(path) in line and expected in line


@pytest.mark.slow
def test_the_whole_command_prints_no_traceback():
    result = subprocess.run([sys.executable, "-m", "onbeat.commands.cli", "play", "--demo", "--bpm", "-5", *QUIET],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "onbeat: error: synthetic source: bpm -5.0 is outside 20..400"]


# --- 8, 9: control input ----------------------------------------------------------------------------------------

ADDRESSES = ["/onbeat/energy", "/onbeat/model", "/onbeat/hold", "/onbeat/mirror", "/onbeat/keypose", "/x", "/"]
ARGUMENTS = st.lists(st.one_of(st.integers(-2 ** 31, 2 ** 31 - 1), st.floats(width=32), st.booleans(),
                               st.sampled_from([math.nan, math.inf, -math.inf]), st.text(max_size=40),
                               st.text(min_size=4000, max_size=8000), st.binary(min_size=1, max_size=64)), max_size=3)
MESSAGES = st.tuples(st.sampled_from(ADDRESSES), ARGUMENTS)


def encode(message):
    builder = OscMessageBuilder(message[0])
    for arg in message[1]:
        builder.add_arg(arg)
    return builder.build()


def datagram(packet):
    if isinstance(packet, bytes):
        return packet, 1
    if isinstance(packet, tuple):
        return encode(packet).dgram, 1
    bundle = OscBundleBuilder(BUILD_IMMEDIATELY)
    for message in packet:
        bundle.add_content(encode(message))
    return bundle.build().dgram, len(packet)


def counted_as(data):
    """How many counts a datagram makes: each of its messages (applied or malformed), or 1 when it is refused
    whole (not OSC, out of bounds, an empty bundle, a time tag too far ahead)."""
    try:
        messages = parse_packet(data)
    except MalformedPacket:
        return 1
    ahead = [time_tag_to_unix(tag) - time.time() for tag, _ in messages if tag != IMMEDIATELY]
    return len(messages) if messages and max(ahead, default=0.0) <= MAX_SCHEDULE_SECONDS else 1


@pytest.mark.realtime
def test_fuzzed_control_datagrams_over_udp_are_all_counted_and_the_server_still_answers():
    controls = Controls(models=("default", "groove"))
    with ControlServer(controls, port=0) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        def handled():
            return controls.received + controls.malformed

        # Grammar packets are stamped around FIXED_NOW (2023): in the past for this server, applied at once.
        @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
        @given(st.one_of(st.binary(max_size=300), MESSAGES, st.lists(MESSAGES, min_size=1, max_size=4),
                         grammar.strategy(lambda c: grammar.osc_packet(c, FIXED_NOW))))
        def send(packet):
            data, _ = datagram(packet)
            before, expected = handled(), counted_as(data)
            sock.sendto(data, server.address)
            end = time.monotonic() + 3.0
            while handled() < before + expected and time.monotonic() < end:
                time.sleep(0.001)
            assert handled() == before + expected and controls.dropped == 0
            assert 0.0 <= controls.energy <= 2.0 and controls.model in controls.models

        send()
        assert controls.malformed > 100
        sock.sendto(encode(("/onbeat/energy", [0.25])).dgram, server.address)
        end = time.monotonic() + 3.0
        while controls.energy != 0.25 and time.monotonic() < end:
            time.sleep(0.005)
        assert controls.energy == 0.25  # still listening, still obeying


def test_control_input_listens_on_localhost_only_by_default():
    with ControlServer(Controls(), port=0) as server:
        assert server.address[0] == "127.0.0.1"
    args = build_parser(["play"]).parse_args(["play", "--demo"])
    assert args.control_host == "127.0.0.1"


# --- 10: soak ------------------------------------------------------------------------------------------------

@pytest.mark.realtime
@pytest.mark.slow
def test_one_minute_soak_of_the_full_pipeline_loses_nothing():
    result = subprocess.run([sys.executable, "-m", "onbeat.commands.cli", "bench", "soak", "--minutes", "1"],
                            capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    number = lambda label: float(re.search(rf"{label} ([+-]?[\d.]+)", result.stdout).group(1))  # noqa: E731
    sent, dropped = number("frames sent"), number("dropped")
    assert number("received") == sent and number("missing") == dropped  # nothing lost on the way
    assert sent + dropped >= 3590 and dropped < 0.01 * sent  # < 1 % of the deadlines skipped
    assert number("bad slices") == 0
    assert number(r"\(growth") < 20  # MB of resident memory after the warm-up


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.realtime
@pytest.mark.slow
def test_the_24_byte_datagram_of_issue_10_is_harmless_to_a_recording_show(tmp_path):
    port, out = free_udp_port(), tmp_path / "r.npz"
    show = subprocess.Popen([sys.executable, "-m", "onbeat.commands.cli", "play", "--demo", "--seconds", "4",
                             "--record", str(out), "--control-port", str(port), *QUIET[:3], "--model", "groove"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        while not (tmp_path / "r.wav").exists() and time.monotonic() < end:
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"#bundle\0" + struct.pack(">Qi", 1, -4) + b"xxxx", ("127.0.0.1", port))
            sock.sendto(encode(("/onbeat/hold", [1])).dgram, ("127.0.0.1", port))
        out_text, err = show.communicate(timeout=60)  # python-osc looped here for ever
    finally:
        show.kill()
    assert show.returncode == 0, err
    assert len(err) < 2000 and err.count("control input") <= 1  # not megabytes of warnings
    assert Motion.load(out).duration > 3.5


@pytest.mark.realtime
@pytest.mark.slow
def test_twenty_seconds_of_soak_under_a_control_flood_drop_control_not_frames():
    result = subprocess.run([sys.executable, "-m", "onbeat.commands.cli", "bench", "soak", "--minutes", "0.34",
                             "--attack"], capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    number = lambda label: float(re.search(rf"{label} ([+-]?[\d.]+)", result.stdout).group(1))  # noqa: E731
    sent, dropped = number("frames sent"), number("dropped")
    assert number("received") == sent and number("missing") == dropped
    assert sent + dropped >= 1190 and dropped < 0.02 * sent
    assert number("attack:") > 1000 and number("malformed") > 100  # it was attacked, and counted
    assert number("sent") >= 15 and number("applied") >= 1  # honest probes: some get through the flood
    assert number(r"\(growth") < 20


SLOW_STEP_AT_EXIT = """
from onbeat.choreographers.kinds import installed_models, load_choreographer
from onbeat.stream.engine import Engine
from onbeat.ear.sources import SyntheticSource
dancer = load_choreographer(installed_models()["badm"])
dancer.set_quality = lambda level: None
dancer.full_steps = dancer.steps = 4000  # a slice takes seconds: still in onnxruntime when the show ends
Engine(SyntheticSource(bpm=120), {"default": dancer}, [], rate=60.0).run(3.0)
print("done", flush=True)
"""


@pytest.mark.realtime
@pytest.mark.slow
def test_the_show_ends_cleanly_while_onnxruntime_is_in_a_long_step():
    result = subprocess.run([sys.executable, "-c", SLOW_STEP_AT_EXIT], capture_output=True, text=True, timeout=120)
    assert "terminate called" not in result.stderr  # onnxruntime aborted (rc 134): a worker was left running
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]
