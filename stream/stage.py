"""The browser stage: a local web page showing the dance in 3D on a VRM avatar (three.js + @pixiv/three-vrm,
vendored in `stage_web/vendor`, so it works offline), live from the engine or replaying a recording.

One server (the `websockets` library, on its own thread with its own asyncio loop) serves the page's files over
plain HTTP and the poses over a WebSocket at `/ws`. `Stage` is a sink: `send(frame)` is called by the engine's
60 Hz output thread and never blocks it. The frame is encoded there (a few microseconds) and put on a bounded
queue that drops its oldest entry when the loop thread falls behind (counted in `dropped`); a viewer whose
socket buffer is full skips frames (counted in `skipped`) instead of slowing the others.

WebSocket messages, server → page:
- binary, one per output frame (little-endian; `POSE_HEADER` then one block per dancer, in dancer order):
      u8 version (FRAME_VERSION)  u8 kind (KIND_POSE)  u16 dancer count  u32 frame index
      f64 output time (s since the engine started)  f64 wall-clock time it was sent (Unix s, for latency)
      per dancer: f32 root[3] (pelvis position, m)  f32 rotations[24][4] (local quaternions w, x, y, z)
  in onbeat's frame (metres, right-handed, y up, the dancer faces +z at rest, +x is the dancer's left), SMPL-24
  joint order (`onbeat.core.skeleton`). A recording (`/recording.bin`, for `onbeat view`) is `RECORDING_HEADER`
  (version, KIND_RECORDING, dancer count, frame count, frames per second, 0) and then the same blocks, frame by
  frame.
- text, JSON: {"type": "hello", ...} once, {"type": "beat", ...} with the frame nearest to each beat,
  {"type": "status", ...} four times a second (the dashboard's numbers), {"type": "control", "ok": ...} replies.
Page → server: {"type": "control", "address": "/onbeat/mirror", "args": [1]}, applied by `Controls.apply`
exactly as an OSC message to the same address is.

Security: bound to 127.0.0.1 by default, and then only requests naming a loopback Host are served (a web page
on another site cannot reach the stage through DNS rebinding). A browser's WebSocket must come from the stage's
own page (its Origin is the Host it asked). Bound to another address (`--stage-host`), anyone on that network
may watch, but control messages need the token printed at start (the printed URL carries it).
"""
import asyncio
import http
import ipaddress
import json
import logging
import mimetypes
import secrets
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_NAMES, PARENTS, REST_OFFSETS, rest_positions
from onbeat.stream.control import Controls
from onbeat.stream.dashboard import snapshot
from onbeat.stream.sinks import Sink

logger = logging.getLogger(__name__)
_server_logger = logging.getLogger(f"{__name__}.server")  # the websockets library's: its per-connection chatter
_server_logger.setLevel(logging.WARNING)

WEB_ROOT = Path(__file__).parent / "stage_web"
DEFAULT_STAGE_PORT = 39542
DEFAULT_AVATAR = "avatars/cryptovoxels.vrm"
MANNEQUIN = "mannequin"
FRAME_VERSION = 1
KIND_POSE, KIND_RECORDING = 1, 2
POSE_HEADER = struct.Struct("<BBHIdd")  # version, kind, dancers, frame index, output time, wall time sent
RECORDING_HEADER = struct.Struct("<BBHIdd")  # version, kind, dancers, frames, frames per second, reserved
STATUS_INTERVAL = 0.25  # s between HUD updates
SLOW_VIEWER_BYTES = 1 << 16  # a viewer with this much unsent skips frames until it catches up


def encode_pose(index: int, time_s: float, root: np.ndarray, rotations: np.ndarray, sent: float) -> bytes:
    """One pose message: `root` (..., 3) and `rotations` (..., 24, 4), the leading axis (if any) the dancers."""
    roots = np.asarray(root, np.float32).reshape(-1, 3)
    quats = np.asarray(rotations, np.float32).reshape(len(roots), -1)
    body = np.concatenate([roots, quats], axis=1)
    return POSE_HEADER.pack(FRAME_VERSION, KIND_POSE, len(roots), index, time_s, sent) + body.tobytes()


def encode_recording(motion: Motion) -> bytes:
    """A whole motion for replay in the page: the header, then one pose block per frame."""
    body = np.concatenate([motion.root_translation.reshape(-1, 3), motion.rotations.reshape(motion.num_frames, -1)],
                          axis=1).astype(np.float32)
    return RECORDING_HEADER.pack(FRAME_VERSION, KIND_RECORDING, 1, motion.num_frames, motion.fps, 0.0) + body.tobytes()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def skeleton_description() -> dict:
    """What the page needs to know of SMPL-24: names, parents, rest offsets, each joint's rest height."""
    rest = rest_positions()
    floor = rest[list(FOOT_JOINTS), 1].min()
    return {"names": list(JOINT_NAMES), "parents": list(PARENTS), "offsets": REST_OFFSETS.round(6).tolist(),
            "rest_height": (rest[:, 1] - floor).round(6).tolist(), "feet": list(FOOT_JOINTS)}


class Stage(Sink):
    """The stage server and sink (`send` never blocks: it has its own bounded queue, so `may_block` is False).
    Live: `Stage(controls=...)` then `attach(engine)` for the HUD's numbers.
    Replay: `Stage(recording=motion, audio=path)`. `url` is the address to open (with the token, if any)."""

    shows_crowd = True  # a crowd's engine sends it every dancer in one frame (`onbeat.stream.crowd`)

    def __init__(self, controls: Controls | None = None, host: str = "127.0.0.1", port: int | None = None,
                 avatar: str | None = None, recording: Motion | None = None, audio: str | Path | None = None,
                 key_poses: tuple = (), styles: tuple = (), rate: float = 60.0, queue_frames: int = 8):
        """port None: DEFAULT_STAGE_PORT, or any free port if that one is taken; 0: any free port."""
        self.controls, self.host = controls, host
        self.avatar_file = _avatar_file(avatar)
        self.recording = encode_recording(recording) if recording is not None else None
        self.audio = _existing(audio, "audio file") if audio else None
        self.token = None if is_loopback(host) else secrets.token_urlsafe(12)
        shown = avatar if avatar == MANNEQUIN else "avatar.vrm" if self.avatar_file else DEFAULT_AVATAR
        self._config = {"mode": "view" if recording is not None else "live", "rate": rate, "avatar": shown,
                        "skeleton": skeleton_description(),
                        "key_poses": list(key_poses), "styles": list(styles), "needs_token": self.token is not None,
                        "frame_version": FRAME_VERSION,
                        "audio": "audio" + (self.audio.suffix.lower() if self.audio else "") if self.audio else None}
        self._queue: deque = deque(maxlen=queue_frames)
        self.queued = self.taken = 0  # by the output thread / by the loop thread: dropped = queued - taken - len
        self.skipped = 0  # frames not sent to a viewer whose socket was full
        self.frames_sent = 0
        self._wake_pending = False
        self._clients: set[ServerConnection] = set()
        self._engine: Any = None  # the Engine whose numbers the HUD shows
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="onbeat-stage", daemon=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(self._listen(port), self._loop).result(timeout=10)
        except BaseException:
            self._stop_loop()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._status_task = asyncio.run_coroutine_threadsafe(self._status_loop(), self._loop)

    # --- the sink (output thread) -----------------------------------------------------------------------
    def send(self, frame) -> None:
        self._put(encode_pose(frame.index, frame.time, frame.root_translation, frame.rotations, time.time()))

    def send_beat(self, state) -> None:
        self._put(json.dumps({"type": "beat", "time": state.time, "bpm": state.bpm, "beat_in_bar": state.bar_position,
                              "downbeat": bool(state.is_downbeat), "confidence": state.confidence}))

    def _put(self, message) -> None:
        self._queue.append(message)  # a full deque drops its oldest entry
        self.queued += 1
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._flush)  # never blocks: a byte on a non-blocking self-pipe

    @property
    def dropped(self) -> int:
        """Messages the loop thread never took off the queue (it fell more than `queue_frames` behind)."""
        return max(0, self.queued - self.taken - len(self._queue))  # (0 while a message is half queued)

    def attach(self, engine) -> None:
        """Send this engine's numbers (the dashboard's snapshot) to the pages' HUD."""
        self._engine = engine

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    @property
    def status(self) -> str:
        problems = [f"{n} {what}" for n, what in ((self.dropped, "dropped"), (self.skipped, "skipped")) if n]
        viewers = len(self._clients)
        line = f"stage {self.url} {viewers} viewer{'s' * (viewers != 1)}"
        return line + (f", {', '.join(problems)}" if problems else "")

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._status_task.cancel()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._stop_loop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the loop thread --------------------------------------------------------------------------------
    async def _listen(self, port):
        options = {"process_request": self._http, "compression": None, "max_size": 4096, "ping_interval": None,
                   "logger": _server_logger}
        try:
            return await serve(self._viewer, self.host, DEFAULT_STAGE_PORT if port is None else port, **options)
        except OSError as e:
            if port is not None:
                raise OnbeatError(f"stage {self.host}:{port}: cannot listen ({e.strerror or e})") from None
        logger.debug("stage: port %d is taken, using a free one", DEFAULT_STAGE_PORT)
        return await serve(self._viewer, self.host, 0, **options)

    async def _shutdown(self):
        self._server.close()
        await self._server.wait_closed()

    def _stop_loop(self):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _flush(self):
        self._wake_pending = False
        while self._queue:
            message = self._queue.popleft()
            self.taken += 1
            self._broadcast(message, is_frame=isinstance(message, bytes))

    def _broadcast(self, message, is_frame=False):
        viewers = self._clients
        if is_frame:
            viewers = [c for c in self._clients if c.transport.get_write_buffer_size() <= SLOW_VIEWER_BYTES]
            self.skipped += len(self._clients) - len(viewers)
            self.frames_sent += 1
        broadcast(viewers, message)  # writes without waiting; a closing viewer is skipped

    async def _status_loop(self):
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            if self._clients and self._engine is not None and self._engine.running:
                self._broadcast(json.dumps(self._status()))

    def _status(self) -> dict:
        status = {"type": "status", **snapshot(self._engine), "stage_dropped": self.dropped,
                  "stage_skipped": self.skipped}
        status["sinks"] = [s for s in status["sinks"] if not s.startswith("stage ")]
        c = self._engine.controls
        status["controls"] = {"energy": c.energy, "model": c.model, "hold": c.hold, "mirror": c.mirror}
        return status

    async def _viewer(self, ws: ServerConnection):
        """One page: its frames go out from `_flush`; here its control messages come in."""
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        may_control = self.controls is not None and (
            self.token is None or secrets.compare_digest(query.get("token", [""])[0], self.token))
        await ws.send(json.dumps({"type": "hello", "controls": may_control}))
        self._clients.add(ws)
        try:
            async for message in ws:
                reply = self._control(message, may_control)
                if reply is not None:
                    await ws.send(json.dumps(reply))
        except ConnectionClosed:  # a page closed mid-message: normal
            pass
        finally:
            self._clients.discard(ws)

    def _control(self, message, may_control):
        try:
            request = json.loads(message)
            if not isinstance(request, dict) or request.get("type") != "control":
                raise ValueError
            address, args = request.get("address"), request.get("args")
        except ValueError:
            return {"type": "control", "ok": False, "error": "not a control message"}
        if not may_control:
            return {"type": "control", "address": address, "ok": False,
                    "error": "controls need the token printed at start" if self.controls else "nothing to control"}
        ok = isinstance(address, str) and isinstance(args, list) and self.controls.apply(address, args)
        return {"type": "control", "address": address, "ok": bool(ok)}

    # --- HTTP -------------------------------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        host = request.headers.get("Host", "")
        if not self._host_allowed(host):
            return _response(http.HTTPStatus.FORBIDDEN, b"unknown host\n")
        path = urlsplit(request.path).path
        if path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"http://{host}":
                return _response(http.HTTPStatus.FORBIDDEN, b"the stage only talks to its own page\n")
            return None  # go on with the WebSocket handshake
        body = self._resource(path)
        if body is None:
            return _response(http.HTTPStatus.NOT_FOUND, b"not found\n")
        content, kind = body
        return _response(http.HTTPStatus.OK, content, kind)

    def _host_allowed(self, host: str) -> bool:
        """Bound to loopback, only loopback names are served (DNS rebinding); on a network, any name."""
        if not is_loopback(self.host):
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _resource(self, path):
        """(bytes, content type) for a URL path, or None."""
        if path == "/config.json":  # the models are known once the engine has its choreographers
            models = list(self.controls.models) if self.controls else []
            return json.dumps({**self._config, "models": models}).encode(), "application/json"
        if path == "/avatar.vrm" and self.avatar_file:
            return self.avatar_file.read_bytes(), "model/gltf-binary"
        if path == "/recording.bin" and self.recording is not None:
            return self.recording, "application/octet-stream"
        if self.audio and path == "/" + self._config["audio"]:
            return self.audio.read_bytes(), mimetypes.guess_type(self.audio.name)[0] or "application/octet-stream"
        file = (WEB_ROOT / (path.lstrip("/") or "index.html")).resolve()
        if not file.is_relative_to(WEB_ROOT.resolve()) or not file.is_file():
            return None
        kind = {".js": "text/javascript", ".vrm": "model/gltf-binary"}.get(file.suffix)
        return file.read_bytes(), kind or mimetypes.guess_type(file.name)[0] or "application/octet-stream"


def _response(status: http.HTTPStatus, body: bytes, kind: str = "text/plain; charset=utf-8") -> Response:
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
                       ("X-Content-Type-Options", "nosniff"), ("Connection", "close")])
    return Response(status.value, status.phrase, headers, body)


def _existing(path, what) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise OnbeatError(f"{path}: no such {what}")
    return file


def _avatar_file(avatar) -> Path | None:
    """The user's own .vrm (None for the shipped avatar or the mannequin)."""
    if avatar in (None, MANNEQUIN):
        return None
    if Path(avatar).suffix.lower() != ".vrm":
        raise OnbeatError(f"--avatar {avatar}: give a .vrm file or '{MANNEQUIN}'")
    return _existing(avatar, "avatar file")
