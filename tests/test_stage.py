"""The browser stage's server (stream/stage.py) without a browser: the wire format, the sink contract (never
blocks, drops the oldest, counts), controls through the OSC path, the token, Origin/Host checks, the HTTP files,
and the CLI (`play` opens it, refuses motion files; `view` serves a recording)."""
import http.client
import json
import struct
import threading
import time

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from onbeat.commands.cli import main
from onbeat.core.motion import Motion
from onbeat.core.skeleton import NUM_JOINTS
from onbeat.stream.control import Controls
from onbeat.stream.engine import PoseFrame
from onbeat.stream.stage import POSE_HEADER, RECORDING_HEADER, Stage, encode_pose

QUIET = ["--silent", "--no-vmc", "--quiet", "--control-port", "0", "--model", "groove"]


def random_frame(index, rng):
    rotations = rng.normal(size=(NUM_JOINTS, 4))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    return PoseFrame(index / 60, rng.normal(size=3), rotations, np.zeros((NUM_JOINTS, 3)), index)


def decode(message):
    version, kind, dancers, index, t, sent = POSE_HEADER.unpack_from(message)
    body = np.frombuffer(message, "<f4", offset=POSE_HEADER.size).reshape(dancers, 3 + NUM_JOINTS * 4)
    return (version, kind, index, t, sent), body[:, :3], body[:, 3:].reshape(dancers, NUM_JOINTS, 4)


def get(stage, path, host=None):
    conn = http.client.HTTPConnection("127.0.0.1", stage.port, timeout=5)
    conn.request("GET", path, headers={"Host": host or f"127.0.0.1:{stage.port}"})
    response = conn.getresponse()
    return response.status, response.getheader("Content-Type"), response.read()


def ws_url(stage, query=""):
    return f"ws://127.0.0.1:{stage.port}/ws{query}"


def receive_json(ws, kind):
    while True:
        message = ws.recv(timeout=5)
        if isinstance(message, str) and json.loads(message)["type"] == kind:
            return json.loads(message)


def test_pose_message_layout_one_and_several_dancers():
    rng = np.random.default_rng(0)
    frame = random_frame(7, rng)
    message = encode_pose(frame.index, frame.time, frame.root_translation, frame.rotations, 123.5)
    assert len(message) == 24 + 4 * (3 + 96)  # 420 bytes a frame for one dancer
    header, root, rotations = decode(message)
    assert header == (1, 1, 7, pytest.approx(7 / 60), 123.5)
    np.testing.assert_allclose(root[0], frame.root_translation, rtol=1e-6)
    np.testing.assert_allclose(rotations[0], frame.rotations, rtol=1e-6)
    crowd = encode_pose(1, 0.0, np.zeros((5, 3)), np.tile(frame.rotations, (5, 1, 1)), 0.0)
    assert struct.unpack_from("<H", crowd, 2)[0] == 5 and len(crowd) == 24 + 5 * 396


@pytest.mark.realtime
def test_a_viewer_gets_every_frame_and_the_beats_in_order():
    rng = np.random.default_rng(1)
    frames = [random_frame(i, rng) for i in range(50)]
    with Stage(Controls(), port=0) as stage, connect(ws_url(stage)) as ws:
        assert receive_json(ws, "hello")["controls"] is True
        time.sleep(0.2)  # the server has registered the viewer once its hello is out
        for frame in frames:
            stage.send(frame)
            time.sleep(0.002)
        got = [decode(ws.recv(timeout=5)) for _ in frames]
        assert stage.dropped == 0 and stage.frames_sent == 50
    assert [g[0][2] for g in got] == list(range(50))
    for frame, (_, _, rotations) in zip(frames, got, strict=True):
        np.testing.assert_allclose(rotations[0], frame.rotations, rtol=1e-6)
    assert all(0 <= time.time() - g[0][4] < 5 for g in got)  # the send time is the wall clock (for latency)


@pytest.mark.realtime
def test_send_never_waits_for_a_stuck_server_and_counts_what_it_drops():
    rng = np.random.default_rng(2)
    with Stage(Controls(), port=0, queue_frames=8) as stage:
        release = threading.Event()
        stage._loop.call_soon_threadsafe(release.wait)  # the server's loop thread is stuck until released
        for i in range(200):
            stage.send(random_frame(i, rng))
        sent_while_stuck = not release.is_set()
        release.set()
        time.sleep(0.2)
        assert sent_while_stuck
        assert stage.dropped == 200 - 8  # the oldest went; the newest 8 were delivered (to no viewer)
        assert "192 dropped" in stage.status


def test_page_controls_go_through_the_osc_control_path():
    controls = Controls(models=("default", "groove"))
    with Stage(controls, port=0) as stage, connect(ws_url(stage)) as ws:
        receive_json(ws, "hello")
        for address, args, ok in [("/onbeat/mirror", [1], True), ("/onbeat/energy", [1.5], True),
                                  ("/onbeat/model", ["groove"], True), ("/onbeat/energy", [7], False),
                                  ("/onbeat/mirror", [True], False), ("/onbeat/nope", [1], False)]:
            ws.send(json.dumps({"type": "control", "address": address, "args": args}))
            assert receive_json(ws, "control")["ok"] is ok, address
        ws.send("not json")
        assert receive_json(ws, "control")["ok"] is False
    assert (controls.mirror, controls.energy, controls.model) == (True, 1.5, "groove")
    assert (controls.received, controls.malformed) == (3, 3)  # counted like OSC messages


def test_open_to_a_network_the_controls_need_the_printed_token():
    controls = Controls()
    with Stage(controls, host="0.0.0.0", port=0) as stage:
        assert stage.token and stage.url.endswith(f"?token={stage.token}")
        message = json.dumps({"type": "control", "address": "/onbeat/mirror", "args": [1]})
        with connect(ws_url(stage)) as ws:  # watching needs no token
            assert receive_json(ws, "hello")["controls"] is False
            ws.send(message)
            assert "token" in receive_json(ws, "control")["error"]
        with connect(ws_url(stage, "?token=wrong")) as ws:
            assert receive_json(ws, "hello")["controls"] is False
        assert controls.mirror is False
        with connect(ws_url(stage, f"?token={stage.token}")) as ws:
            assert receive_json(ws, "hello")["controls"] is True
            ws.send(message)
            assert receive_json(ws, "control")["ok"] is True
        assert controls.mirror is True
    with Stage(Controls(), port=0) as local:
        assert local.token is None and "token" not in local.url


def test_the_websocket_only_talks_to_the_stage_s_own_page():
    with Stage(Controls(), port=0) as stage:
        own = f"http://127.0.0.1:{stage.port}"
        with connect(ws_url(stage), origin=own) as ws:
            assert receive_json(ws, "hello")
        for origin in ["http://evil.example", f"http://localhost:{stage.port + 1}", "null"]:
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url(stage), origin=origin)
            assert refused.value.response.status_code == 403
        # DNS rebinding: a page of another site whose name now points at 127.0.0.1 names its own host.
        assert get(stage, "/", host=f"evil.example:{stage.port}")[0] == 403
        with pytest.raises(InvalidStatus):
            connect(ws_url(stage), origin=f"http://evil.example:{stage.port}",
                    additional_headers={"Host": f"evil.example:{stage.port}"})


def test_http_serves_the_page_the_vendored_libraries_and_nothing_else():
    with Stage(Controls(), port=0) as stage:
        status, kind, body = get(stage, "/")
        assert status == 200 and kind.startswith("text/html") and b"importmap" in body
        assert b"https://" not in body  # no CDN: everything is local
        for path in ["/stage.js", "/vendor/three/build/three.module.js", "/vendor/three-vrm/three-vrm.module.min.js",
                     "/vendor/three/examples/jsm/loaders/GLTFLoader.js"]:
            status, kind, body = get(stage, path)
            assert status == 200 and kind == "text/javascript" and len(body) > 1000, path
        status, kind, body = get(stage, "/avatars/cryptovoxels.vrm")
        assert status == 200 and body[:4] == b"glTF"
        config = json.loads(get(stage, "/config.json")[2])
        assert config["mode"] == "live" and config["avatar"] == "avatars/cryptovoxels.vrm"
        assert len(config["skeleton"]["names"]) == NUM_JOINTS
        for path in ["/../stage.py", "/%2e%2e/stage.py", "/vendor/../../stage.py", "/nothing.js"]:
            assert get(stage, path)[0] == 404, path


def test_a_users_avatar_is_served_and_bad_ones_are_one_line_errors(tmp_path):
    vrm = tmp_path / "me.vrm"
    vrm.write_bytes(b"glTF-not-really")
    with Stage(Controls(), port=0, avatar=str(vrm)) as stage:
        assert json.loads(get(stage, "/config.json")[2])["avatar"] == "avatar.vrm"
        assert get(stage, "/avatar.vrm")[2] == b"glTF-not-really"
    with Stage(Controls(), port=0, avatar="mannequin") as stage:
        assert json.loads(get(stage, "/config.json")[2])["avatar"] == "mannequin"


def test_a_recording_is_served_whole_for_replay(tmp_path):
    rng = np.random.default_rng(3)
    rotations = rng.normal(size=(45, NUM_JOINTS, 4))
    motion = Motion(30.0, rng.normal(size=(45, 3)), rotations / np.linalg.norm(rotations, axis=-1, keepdims=True))
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF....WAVE")
    with Stage(None, port=0, recording=motion, audio=song) as stage:
        config = json.loads(get(stage, "/config.json")[2])
        assert config["mode"] == "view" and config["audio"] == "audio.wav"
        assert get(stage, "/audio.wav")[2] == b"RIFF....WAVE"
        body = get(stage, "/recording.bin")[2]
        with connect(ws_url(stage)) as ws:
            assert receive_json(ws, "hello")["controls"] is False  # a replay has nothing to steer
    version, kind, dancers, frames, fps, _ = RECORDING_HEADER.unpack_from(body)
    assert (version, kind, dancers, frames, fps) == (1, 2, 1, 45, 30.0)
    blocks = np.frombuffer(body, "<f4", offset=RECORDING_HEADER.size).reshape(45, 99)
    np.testing.assert_allclose(blocks[:, 3:].reshape(45, NUM_JOINTS, 4), motion.rotations, rtol=1e-6)


@pytest.mark.parametrize("argv, problem", [
    (["play", "{tmp}/dance.npz"], "is a motion file, not music: watch it with `onbeat view"),
    (["play", "--demo", "--avatar", "{tmp}/nothing.vrm"], "no such avatar file"),
    (["play", "--demo", "--avatar", "me.glb"], "give a .vrm file or 'mannequin'"),
    (["view", "{tmp}/nothing.npz"], "no such file"),
])
def test_user_mistakes_are_one_line_errors(argv, problem, tmp_path, capsys):
    Motion(30.0, np.zeros((3, 3)), np.tile([1.0, 0, 0, 0], (3, NUM_JOINTS, 1))).save(tmp_path / "dance.npz")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv + (["--control-port", "0", "--stage-port", "0"] if argv[0] == "play" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("onbeat: error:") and problem in err[-1]


def test_play_prints_the_stage_address_and_no_stage_turns_it_off(capsys, logs):
    assert main(["play", "--demo", "--seconds", "1", "--stage-port", "0", *QUIET]) == 0
    assert any(line.startswith("stage: http://127.0.0.1:") for line in logs)
    logs.clear()
    assert main(["play", "--demo", "--seconds", "0.5", "--no-stage", *QUIET]) == 0
    assert not any("stage" in line for line in logs)


def test_an_explicit_port_that_is_taken_is_an_error_the_default_moves_on():
    with Stage(Controls(), port=0) as first, pytest.raises(Exception, match="cannot listen"):
        Stage(Controls(), port=first.port)


@pytest.mark.realtime
def test_view_serves_until_its_time_is_up_with_the_recorded_music(tmp_path, capsys):
    Motion(30.0, np.zeros((30, 3)), np.tile([1.0, 0, 0, 0], (30, NUM_JOINTS, 1))).save(tmp_path / "dance.npz")
    assert main(["view", str(tmp_path / "dance.npz"), "--stage-port", "0", "--seconds", "0.3"]) == 0
    assert "dance.npz: 1.0 s at 30 fps; open http://127.0.0.1:" in capsys.readouterr().out
    (tmp_path / "dance.wav").write_bytes(b"RIFF")  # what --record leaves beside the motion
    assert main(["view", str(tmp_path / "dance.npz"), "--stage-port", "0", "--seconds", "0.1"]) == 0
    assert f"with {tmp_path / 'dance.wav'}" in capsys.readouterr().out
