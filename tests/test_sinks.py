"""Sinks: VMC and onbeat OSC datagrams (sizes, parsing back with python-osc, the Unity conversion), a refusing
target, and the recorder."""
import socket
import time

import numpy as np
import pytest
from pythonosc.osc_packet import OscPacket

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion, forward_kinematics
from onbeat.core.skeleton import JOINT_INDEX, JOINT_NAMES, REST_OFFSETS
from onbeat.ear.beats import BeatState
from onbeat.ear.sources import AudioBlock
from onbeat.stream.engine import PoseFrame
from onbeat.stream.sinks import (
    MAX_BUNDLE_BYTES,
    REST_PELVIS_HEIGHT,
    VMC_BONES,
    OnbeatOscSink,
    Recorder,
    UdpTarget,
    VmcSink,
    pack_bundles,
    parse_target,
    to_unity_position,
    to_unity_quaternion,
)

RNG = np.random.default_rng(7)


def random_frame(index=3):
    rotations = R.quat_normalize(RNG.normal(size=(24, 4)))
    root = np.array([0.2, 0.9, -0.3])
    return PoseFrame(index / 60, root, rotations, forward_kinematics(root, rotations), index)


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def receive_messages(sock, datagrams):
    """Read `datagrams` datagrams; (sizes, [(address, params)] in order)."""
    sizes, messages = [], []
    for _ in range(datagrams):
        data = sock.recv(65536)
        sizes.append(len(data))
        messages += [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]
    return sizes, messages


def test_vmc_bundles_fit_the_mtu_and_parse_back(listener):
    sink = VmcSink(*listener.getsockname())
    frame = random_frame()
    sink.send(frame)
    sizes, messages = receive_messages(listener, sink.target.sent)
    sink.close()
    assert sink.target.sent >= 2 and max(sizes) <= MAX_BUNDLE_BYTES
    addresses = [a for a, _ in messages]
    assert addresses[:3] == ["/VMC/Ext/OK", "/VMC/Ext/T", "/VMC/Ext/Root/Pos"]
    assert messages[0][1] == [1, 3, 0, 1] and messages[1][1] == [pytest.approx(frame.time)]
    root = messages[2][1]
    assert root[0] == "root" and root[1:4] == pytest.approx([-0.2, 0.9 - REST_PELVIS_HEIGHT, -0.3], abs=1e-6)
    bones = {params[0]: params[1:] for address, params in messages if address == "/VMC/Ext/Bone/Pos"}
    assert list(bones) == [bone for _, bone in VMC_BONES]
    assert bones["Hips"][:3] == pytest.approx([0.0, REST_PELVIS_HEIGHT, 0.0], abs=1e-6)  # root + Hips = pelvis
    left_arm = np.array(bones["LeftUpperArm"][3:])
    expected = to_unity_quaternion(frame.rotations[JOINT_INDEX["Left_Shoulder"]])
    assert np.allclose(left_arm, expected, atol=1e-6)


def test_unity_conversion_is_the_x_reflection():
    """M R M for M = diag(-1, 1, 1), and FK in Unity's frame gives the reflected joint positions."""
    q = R.quat_normalize(RNG.normal(size=(50, 4)))
    unity_xyzw = to_unity_quaternion(q)
    unity_wxyz = np.concatenate([unity_xyzw[:, 3:], unity_xyzw[:, :3]], axis=1)
    M = np.diag([-1.0, 1.0, 1.0])
    assert np.allclose(R.quat_to_matrix(unity_wxyz), M @ R.quat_to_matrix(q) @ M, atol=1e-12)

    rotations, root = q[:24], np.array([0.1, 0.95, 0.4])
    unity_positions = forward_kinematics(to_unity_position(root), unity_wxyz[:24], to_unity_position(REST_OFFSETS))
    assert np.allclose(unity_positions, to_unity_position(forward_kinematics(root, rotations)), atol=1e-12)


def test_onbeat_osc_schema_parses_back(listener):
    sink = OnbeatOscSink(*listener.getsockname())
    frame = random_frame(index=42)
    sink.send(frame)
    sizes, messages = receive_messages(listener, sink.target.sent)
    beat = BeatState(time=1.5, bpm=128.0, phase=0.0, bar_position=0, is_beat=True, is_downbeat=True,
                     confidence=0.9, next_beats=np.array([2.0]))
    sink.send_beat(beat)
    _, beat_messages = receive_messages(listener, 1)
    sink.close()
    assert max(sizes) <= MAX_BUNDLE_BYTES
    assert messages[0] == ("/onbeat/frame", [pytest.approx(frame.time), 42])
    positions = {p[0]: p[1:] for a, p in messages if a == "/onbeat/joint/pos"}
    rotations = {p[0]: p[1:] for a, p in messages if a == "/onbeat/joint/rot"}
    assert list(positions) == list(JOINT_NAMES) == list(rotations)
    assert np.allclose([positions[n] for n in JOINT_NAMES], frame.positions, atol=1e-6)
    assert np.allclose([rotations[n] for n in JOINT_NAMES], frame.rotations, atol=1e-6)
    assert beat_messages == [("/onbeat/beat", [1.5, 128.0, 0, 1, pytest.approx(0.9)])]


def test_pack_bundles_splits_in_order():
    messages = [bytes([i]) * 100 for i in range(40)]
    datagrams = pack_bundles(messages)
    assert len(datagrams) == 3 and all(len(d) <= MAX_BUNDLE_BYTES for d in datagrams)
    assert b"".join(d[16:] for d in datagrams) == b"".join(len(m).to_bytes(4, "big") + m for m in messages)
    with pytest.raises(ValueError):
        pack_bundles([b"x" * 1490])


def test_refusing_target_keeps_running_and_warns_once_per_interval(logs):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the kernel answers "port unreachable"
    sink = OnbeatOscSink("127.0.0.1", port)
    for i in range(200):
        sink.send(random_frame(i))
    sink.close()
    assert sink.target.errors > 0 and "errors" in sink.status
    assert len(logs) == 1 and "Connection refused" in logs[0]


def test_bad_targets_are_one_line_errors():
    with pytest.raises(OnbeatError, match="no-such-host.invalid"):
        UdpTarget("no-such-host.invalid", 39539, "vmc")
    with pytest.raises(OnbeatError, match="not a host:port"):
        parse_target("localhost:99999", ("127.0.0.1", 1))
    assert parse_target(":4000", ("127.0.0.1", 1)) == ("127.0.0.1", 4000)
    assert parse_target("10.0.0.2", ("127.0.0.1", 39539)) == ("10.0.0.2", 39539)


def test_recorder_writes_readable_motion_and_audio(tmp_path):
    out = tmp_path / "session.npz"
    recorder = Recorder(out, rate=60, segment_seconds=0.5)
    frames = [random_frame(i) for i in range(100)]
    for i, frame in enumerate(frames):
        recorder.send(frame)
        recorder.send_audio(AudioBlock(np.full((735, 1), 0.1 * (i % 3), np.float32), i * 735 / 22050, 22050))
    recorder.close()
    motion = Motion.load(out)
    assert motion.num_frames == 100 and motion.fps == 60
    assert np.allclose(motion.rotations, [f.rotations for f in frames])
    assert not list(tmp_path.glob("*.part*"))  # joined and cleaned up
    import soundfile
    audio, rate = soundfile.read(out.with_suffix(".wav"))
    assert rate == 22050 and len(audio) == 100 * 735


@pytest.mark.parametrize("name", ["dance.npz", "dance.bvh"])
def test_recorder_status_counts_the_dance_received_before_any_part_is_written(tmp_path, name):
    """4 s into a recording with 5 s parts nothing is on disk yet; the status still says 4 s, and after close."""
    recorder = Recorder(tmp_path / name, rate=60, segment_seconds=5.0)
    for i in range(4 * 60):
        recorder.send(random_frame(i))
    assert not list(tmp_path.glob("*.part*")) and recorder.status == f"recorder {name} 4 s"
    recorder.close()
    assert recorder.status == f"recorder {name} 4 s" and (tmp_path / name).is_file()


def test_recorder_rejects_unknown_formats(tmp_path):
    with pytest.raises(OnbeatError, match="npz or .bvh"):
        Recorder(tmp_path / "x.mp4", 60)
    with pytest.raises(OnbeatError, match="does not exist"):
        Recorder(tmp_path / "missing" / "x.npz", 60)


@pytest.mark.parametrize("text, expected", [
    ("[::1]:39539", ("::1", 39539)), ("[::1]", ("::1", 39539)), ("::1", ("::1", 39539)),
    ("fe80::1%eth0", ("fe80::1%eth0", 39539)), ("host:7", ("host", 7)), (":7", ("127.0.0.1", 7)),
])
def test_targets_parse_ipv6_in_brackets_or_bare(text, expected):
    assert parse_target(text, ("127.0.0.1", 39539)) == expected


@pytest.mark.parametrize("text", ["[::1", "[::1]x", "[::1]:0", "[::1]:70000"])
def test_broken_ipv6_targets_are_named(text):
    with pytest.raises(OnbeatError, match="not a host:port target"):
        parse_target(text, ("127.0.0.1", 39539))


def test_an_ipv6_target_receives_vmc():
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here ({e.strerror})")
    sock.settimeout(2.0)
    with sock:
        sink = VmcSink(*parse_target(f"[::1]:{sock.getsockname()[1]}", ("127.0.0.1", 39539)))
        sink.send(random_frame())
        address = OscPacket(sock.recv(65536)).messages[0].message.address
        sink.close()
    assert address == "/VMC/Ext/OK" and sink.status.startswith("vmc [::1]:")


def test_a_broadcast_target_is_allowed():
    target = UdpTarget("255.255.255.255", 39539, "osc")  # without SO_BROADCAST: "Permission denied"
    target.send([b"/x\0\0,\0\0\0"])
    target.close()
    assert target.errors == 0 or target.last_error != "Permission denied"


def test_the_status_line_forgets_errors_once_the_target_works_again():
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    target = UdpTarget("127.0.0.1", port, "osc", warn_interval=0.3)
    for _ in range(20):
        target.send([b"/x\0\0,\0\0\0"])
        time.sleep(0.01)
    assert target.errors and "errors" in target.status
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
        back.bind(("127.0.0.1", port))  # the receiver is back
        time.sleep(0.4)
        target.send([b"/x\0\0,\0\0\0"])
        assert target.status == f"osc 127.0.0.1:{port} ok"
    target.close()
