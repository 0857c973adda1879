"""`onbeat play`/`live` end to end: a receiver in another process, the CLI, control input, disk full."""
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from onbeat.choreographers.codes import CodesChoreographer
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.library import Library
from onbeat.commands.cli import main
from onbeat.core.motion import Motion
from onbeat.core.paths import ASSETS
from onbeat.ear.sources import SyntheticSource
from onbeat.evaluation.bench_live import frame_report, run_pipeline
from onbeat.stream.control import ControlInput, Controls, ControlServer
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import Sink

QUIET = ["--silent", "--no-vmc", "--quiet", "--control-port", "0", "--model", "groove"]


@pytest.mark.realtime
@pytest.mark.slow
def test_a_receiver_in_another_process_gets_every_frame_at_60_hz():
    engine, _, received = run_pipeline(3.0, model="groove")
    report = frame_report(received["frames"], 60.0)
    stats = engine.stats
    print(f"sent {stats.frames}, received {report['received']}, rate {report['rate']:.2f} Hz, jitter p50 "
          f"{report['p50']:.2f} ms p99 {report['p99']:.2f} ms max {report['max']:.2f} ms, dropped {stats.dropped}")
    assert report["received"] == stats.frames == received["vmc_frames"]  # nothing lost on the way
    assert report["missing"] == stats.dropped <= 0.05 * stats.frames  # index gaps only where the clock skipped
    assert stats.frames + stats.dropped == 180
    assert 57.0 < report["rate"] < 63.0


def test_play_demo_runs_and_reports(capsys):
    assert main(["play", "--demo", "--seconds", "1.5", *QUIET]) == 0
    out = capsys.readouterr().out
    assert "frames=" in out and "tempo=" in out


def test_several_vmc_targets_each_get_the_stream(capsys):
    listeners = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        targets = []
        for sock in listeners:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(2.0)
            targets += ["--vmc", "127.0.0.1:%d" % sock.getsockname()[1]]
        quiet = [arg for arg in QUIET if arg != "--no-vmc"]
        assert main(["play", "--demo", "--seconds", "0.5", *targets, *quiet]) == 0
        for sock in listeners:
            assert b"/VMC/Ext/Bone/Pos" in sock.recv(65536)
    finally:
        for sock in listeners:
            sock.close()


@pytest.mark.parametrize("argv, problem", [
    (["play", "/no/such/song.ogg"], "no such audio file"),
    (["play"], "nothing to dance to"),
    (["play", "x.wav", "--demo"], "either a FILE or --demo"),
    (["play", "--demo", "--vmc", "localhost:notaport"], "not a host:port"),
    (["play", "--demo", "--model", "/no/model.onnx"], "/no/model.onnx: no such model file"),
    (["play", "--demo", "--model", "bdam"], "model bdam: choose one of groove, default, badm, codes"),
    (["play", "--demo", "--rate", "0"], "--rate"),
    (["play", "--demo", "--record", "/no/such/folder/out.npz"], "does not exist"),
    (["play", "--demo", "--link", "--link-lead"], "not both"),  # refused before any Link is started
    (["play", "--demo", "--model", "groove", "--style", "waltz"], "--style waltz (model groove): this model knows no "
                                                                   "styles"),
])
def test_user_mistakes_are_one_line_errors(argv, problem, capsys):
    assert main(argv + ["--control-port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("onbeat: error:") and problem in err[-1]


def test_a_codes_model_path_names_its_pair_of_graphs():
    # Only codes.gpt.onnx and codes.decoder.onnx exist: codes.onnx names the pair.
    assert not (ASSETS / "codes.onnx").exists()
    assert isinstance(Library().load(str(ASSETS / "codes.onnx")), CodesChoreographer)


def send_raw(port, data):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, ("127.0.0.1", port))


def wait_for(condition, seconds=3.0):
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


def test_control_messages_change_state_and_malformed_ones_are_counted():
    controls = Controls(models=("default", "groove"))
    with ControlServer(controls, "127.0.0.1", 0) as server:
        assert server.address[0] == "127.0.0.1"
        client = SimpleUDPClient("127.0.0.1", server.address[1])
        client.send_message("/onbeat/energy", 1.5)
        client.send_message("/onbeat/model", "groove")
        client.send_message("/onbeat/hold", 1)
        client.send_message("/onbeat/mirror", 1)
        client.send_message("/onbeat/keypose", "arms_up")
        assert wait_for(lambda: controls.received == 5)
        assert (controls.energy, controls.model, controls.hold, controls.mirror) == (1.5, "groove", True, True)
        assert controls.take_key_pose() == "arms_up" and controls.take_key_pose() is None

        client.send_message("/onbeat/energy", "loud")  # wrong type
        client.send_message("/onbeat/energy", [1.0, 2.0])  # wrong arity
        client.send_message("/onbeat/energy", 9.0)  # out of range
        client.send_message("/onbeat/model", "no-such-model")
        client.send_message("/onbeat/hold", 2)
        client.send_message("/onbeat/nothing", 1)  # unknown address
        send_raw(server.address[1], b"\x00garbage that is not OSC")
        send_raw(server.address[1], b"/onbeat/keypose\x00,s\x00\x00abc")  # unterminated string
        assert wait_for(lambda: controls.malformed == 8)
        assert controls.energy == 1.5 and controls.model == "groove" and controls.hold

        for i in range(300):  # a burst: nothing lost
            client.send_message("/onbeat/energy", i / 300)
        assert wait_for(lambda: controls.received == 305)
        assert controls.energy == pytest.approx(299 / 300)


@pytest.mark.realtime
@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples in every CI run
@given(st.one_of(st.binary(max_size=200),
                 st.tuples(st.sampled_from(["/onbeat/energy", "/onbeat/model", "/onbeat/hold", "/onbeat/mirror",
                                            "/onbeat/keypose", "/onbeat/style", "/x"]),
                           st.lists(st.one_of(st.integers(-2 ** 31, 2 ** 31 - 1), st.floats(width=32),
                                              # strings OSC can encode: UTF-8 (no lone surrogates), no NUL
                                              # (which ends an OSC string); the raw bytes above cover the rest
                                              st.text(st.characters(codec="utf-8", exclude_characters="\x00"),
                                                      max_size=80),
                                              st.booleans()), max_size=3))))
def test_fuzzed_control_datagrams_never_crash_and_are_all_counted(packet):
    controls = Controls()
    if isinstance(packet, tuple):
        builder = OscMessageBuilder(packet[0])
        for arg in packet[1]:
            builder.add_arg(arg)
        packet = builder.build().dgram
    ControlInput(controls).handle(packet, ("127.0.0.1", 1))
    assert controls.received + controls.malformed >= 1
    assert 0.0 <= controls.energy <= 2.0 and controls.model in controls.models


@pytest.mark.realtime
@pytest.mark.slow
def test_hold_freezes_the_pose_and_key_pose_is_taken_on_a_downbeat():
    controls = Controls()
    frames = []

    class Keep(Sink):
        send = staticmethod(frames.append)

    engine = Engine(SyntheticSource(bpm=120), {"default": GrooveChoreographer()}, [Keep()], controls=controls)
    threading.Timer(1.0, controls.apply, ("/onbeat/keypose", ["arms_up"])).start()
    threading.Timer(3.0, controls.apply, ("/onbeat/hold", [1])).start()
    engine.run(4.0)
    held = np.array([f.rotations for f in frames if f.time >= 3.2])
    assert len(held) > 30 and np.allclose(held, held[0])
    assert controls.key_pose is None  # consumed by a slice with a downbeat
    assert engine.stats.bad_slices == 0  # and the groove struck it (a failed slice would be held instead)


DISK_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
from onbeat.commands.cli import main
sys.exit(main(["play", "--demo", "--seconds", "8", "--record", sys.argv[1], *sys.argv[2:]]))
"""


@pytest.mark.realtime
@pytest.mark.slow
def test_disk_full_while_recording_stops_the_recording_not_the_show(tmp_path):
    out = tmp_path / "show.npz"
    result = subprocess.run([sys.executable, "-c", DISK_FULL, str(out), *QUIET], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "recording stopped" in result.stderr and "live output continues" in result.stderr
    assert "frames=480" in result.stdout or "dropped=" in result.stdout  # the show ran to the end
    parts = sorted(tmp_path.glob("show.part*.npz"))
    assert parts and not out.exists()
    kept = [Motion.load(p) for p in parts]
    assert sum(m.num_frames for m in kept) >= 60 * 3
