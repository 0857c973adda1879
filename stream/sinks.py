"""Where the live poses go: VMC (VTuber apps, Unity, Unreal, Blender), plain onbeat OSC, and a recorder.

Every sink is a `Sink` (the contract and its threading rules are its docstring); several run at once.
OSC goes out over UDP in bundles of at most 1500 bytes (one Ethernet MTU, so no IP fragmentation). A target
that is down or refusing never stops the show: errors are counted and logged at most once per interval.
Messages are encoded here from pre-encoded templates (python-osc's builder costs ~50 us a message, 4 ms a frame;
the tests parse everything back with python-osc).

Plain onbeat OSC schema (default 127.0.0.1:39541; every output frame is one or more bundles, `/onbeat/frame`
first). Coordinates are onbeat's own: metres, right-handed, y up, the dancer faces +z at rest, +x is the
dancer's left; joint names are SMPL-24's (Pelvis, Left_Hip, ..., Right_Palm).
    /onbeat/frame      f time  i index          output time (s since start) and frame number (+1 per frame at
                                                the output rate; a gap means frames were dropped)
    /onbeat/joint/pos  s joint  f x  f y  f z   world position of the joint (m)
    /onbeat/joint/rot  s joint  f w  f x  f y  f z   local rotation relative to the parent joint (SMPL rest pose)
    /onbeat/beat       f time  f bpm  i beat_in_bar  i is_downbeat  f confidence
                                                sent with the output frame nearest to each (predicted) beat, in
                                                its own bundle: time is the beat's output time, beat_in_bar 0..3
                                                (0 = downbeat), confidence 0..1

VMC protocol (default 127.0.0.1:39539, the port VSeeFace, Warudo, VNyan, EVMC4U, VMC4UE and VMC4B listen on):
per frame `/VMC/Ext/OK 1 3 0 1` (loaded, calibrated, normal mode, tracking ok), `/VMC/Ext/T time`,
`/VMC/Ext/Root/Pos "root" px py pz qx qy qz qw` and one `/VMC/Ext/Bone/Pos "<HumanBodyBones>" px py pz qx qy qz qw`
per mapped bone (22: SMPL-24 without the palms); several targets at once: one sink each. Conversion to Unity's
left-handed frame (y up, z forward, +x = the character's right):
- onbeat's +x is the dancer's *left*, Unity's +x the avatar's *right*, y and z agree: positions map by the
  reflection M = diag(-1, 1, 1): (x, y, z) → (-x, y, z).
- A rotation R becomes M R M. Its axis a maps to M a = (-ax, ay, az) and, a reflection reversing handedness,
  its angle to -angle; the same rotation is about (ax, -ay, -az) by +angle. So quaternion (w, x, y, z) →
  Unity (x, -y, -z, w) in VMC's (qx, qy, qz, qw) order. (`tests/test_sinks.py` checks M R M numerically.)
- Bone rotations in VMC are local rotations relative to a humanoid whose rest pose is the T-pose with all
  bone frames aligned to the root: the *normalized* bones of a VRM (VRM 0.x files are exported that way;
  UniVRM 1.0 builds them as its "control rig"). SMPL local rotations are relative to the SMPL rest pose, which
  is close to a T-pose (arms horizontal, legs straight) with joint frames aligned to the world, so they are
  sent as they are after the conversion; the small rest-pose differences (SMPL's arms slope a few degrees
  down) show up as that much offset on the avatar. The VMC spec recommends raw (un-normalized) bones for VRM
  1.0 senders; onbeat has no avatar of its own and sends normalized ones, which a receiver applying them to
  raw VRM 1.0 bones with non-identity rest rotations shows twisted: such receivers apply them to the control
  rig (EVMC4U: `controlRigGenerationOptionOnLoad = Generate`); VRM 0.x avatars need nothing.
- Positions, as VirtualMotionCapture's sender (ExternalSender.cs) has them: Root/Pos is the model's origin on
  the floor, Bone/Pos carries each bone's local position. The root carries the dance's travel and bounce:
  Root/Pos = the pelvis position minus the SMPL rest pelvis height (identity rotation), and the Hips bone sits
  at the rest pelvis height above it, so root + Hips = the pelvis. The other bones sit at the SMPL rest
  offsets. Receivers that apply bone positions (EVMC4U's "Bone Position Synchronize", on by default) show the
  SMPL skeleton's exact joint positions, feet on the floor; those that keep the avatar's own bone positions
  show the avatar's proportions, raised and lowered by the dance's bounce, feet on the floor at rest.
- UpperChest is optional in Unity and VRM, and a receiver drops a bone its avatar lacks. By default
  (`upper_chest=False`) the Spine3 rotation is folded into Chest, UpperChest is sent at rest with a zero
  offset, and the bones hanging from it (Neck, shoulders) carry the Spine3 offset: exact joint positions on
  every avatar when bone positions are applied, and the full spine bend without them. `upper_chest=True`
  sends Spine3 as UpperChest, for avatars that have one (VRoid avatars do).
"""
import fcntl
import glob
import logging
import math
import os
import re
import shutil
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion, forward_kinematics
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX, JOINT_NAMES, PARENTS, REST_OFFSETS, rest_positions
from onbeat.ear.beats import BeatState
from onbeat.ear.devices import open_output
from onbeat.ear.sources import AudioBlock

logger = logging.getLogger(__name__)


@dataclass
class PoseFrame:
    """One output frame. Its world joint positions are computed (forward kinematics) when a sink first asks for
    them: the output clock does not pay for them when no sink needs them."""
    time: float  # seconds on the output timeline
    root_translation: np.ndarray  # (3,) metres
    rotations: np.ndarray  # (24, 4) local quaternions (w, x, y, z)
    known_positions: np.ndarray | None = None  # (24, 3) when already computed
    index: int = 0  # output frame number: time = index / rate

    @property
    def positions(self) -> np.ndarray:
        """(24, 3) world joint positions, metres."""
        if self.known_positions is None:
            self.known_positions = forward_kinematics(self.root_translation, self.rotations)
        return self.known_positions


class Sink:
    """Where the live output goes.

    Threading: the engine calls `send` (every output frame) and `send_beat` (each predicted beat, with the frame
    nearest to it) from its output thread, which keeps the clock: they must return within a small fraction of a
    millisecond and never wait on a peer, a socket buffer or a disk. `send_audio` (each block of the music, for
    recorders and speakers) comes from the analysis thread and may take up to a block's duration. A sink that
    may block in `send` says so with `may_block = True`: the engine then runs it behind a `QueuedSink`, so when it
    falls behind it drops its own oldest frames (counted), never the clock's. `close` is called once, at the end."""

    may_block = False

    def send(self, frame: PoseFrame) -> None:
        """One output frame (a sink that only takes the audio ignores it)."""

    def send_beat(self, beat: BeatState) -> None:
        """`beat`: the predicted beat, with `time` on the output timeline."""

    def send_audio(self, block: AudioBlock) -> None:
        """`block`: the music, as the source gave it."""

    @property
    def status(self) -> str:
        """One short line for the dashboard."""
        return type(self).__name__

    def close(self) -> None:
        pass


class QueuedSink(Sink):
    """Runs `inner`'s `send` and `send_beat` on a thread of its own behind a bounded queue: `send` here only
    appends; when the queue is full the oldest item is dropped and counted in `dropped`."""

    def __init__(self, inner: Sink, capacity: int = 8):
        self.inner, self.dropped = inner, 0
        self._queue: deque = deque(maxlen=capacity)
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"onbeat-sink-{type(inner).__name__}", daemon=True)
        self._thread.start()

    def _put(self, item):
        with self._ready:
            self.dropped += len(self._queue) == self._queue.maxlen
            self._queue.append(item)
            self._ready.notify()

    def send(self, frame: PoseFrame) -> None:
        self._put((self.inner.send, frame))

    def send_beat(self, beat: BeatState) -> None:
        self._put((self.inner.send_beat, beat))

    def send_audio(self, block: AudioBlock) -> None:
        self.inner.send_audio(block)

    def _run(self):
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                method, item = self._queue.popleft()
            try:
                method(item)
            except Exception:  # a sink failing must not end its thread; the next frame may go through
                logger.exception("%s failed", type(self.inner).__name__)

    @property
    def status(self) -> str:
        return self.inner.status + (f" (dropped {self.dropped}: it fell behind)" if self.dropped else "")

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=2.0)
        self.inner.close()

DEFAULT_VMC = ("127.0.0.1", 39539)
DEFAULT_OSC = ("127.0.0.1", 39541)
MAX_BUNDLE_BYTES = 1500

# SMPL-24 joint → Unity HumanBodyBones (the palms have no humanoid bone).
VMC_BONES = (
    ("Pelvis", "Hips"), ("Left_Hip", "LeftUpperLeg"), ("Right_Hip", "RightUpperLeg"), ("Spine1", "Spine"),
    ("Left_Knee", "LeftLowerLeg"), ("Right_Knee", "RightLowerLeg"), ("Spine2", "Chest"),
    ("Left_Ankle", "LeftFoot"), ("Right_Ankle", "RightFoot"), ("Spine3", "UpperChest"),
    ("Left_Foot", "LeftToes"), ("Right_Foot", "RightToes"), ("Neck", "Neck"),
    ("Left_Collar", "LeftShoulder"), ("Right_Collar", "RightShoulder"), ("Head", "Head"),
    ("Left_Shoulder", "LeftUpperArm"), ("Right_Shoulder", "RightUpperArm"),
    ("Left_Elbow", "LeftLowerArm"), ("Right_Elbow", "RightLowerArm"),
    ("Left_Wrist", "LeftHand"), ("Right_Wrist", "RightHand"),
)
_VMC_JOINTS = [JOINT_INDEX[smpl] for smpl, _ in VMC_BONES]
REST_PELVIS_HEIGHT = -rest_positions()[list(FOOT_JOINTS), 1].min()  # pelvis above the lowest foot joint at rest


_X_REFLECTION = np.array([-1.0, 1.0, 1.0])
_REST_PELVIS = np.array([0.0, REST_PELVIS_HEIGHT, 0.0])

_SPINE3 = JOINT_INDEX["Spine3"]
_CHEST, _UPPER_CHEST = _VMC_JOINTS.index(JOINT_INDEX["Spine2"]), _VMC_JOINTS.index(_SPINE3)  # bone slots
_ON_UPPER_CHEST = [i for i, j in enumerate(_VMC_JOINTS) if PARENTS[j] == _SPINE3]  # neck, shoulders
_BONE_OFFSETS = REST_OFFSETS[_VMC_JOINTS].copy()
_BONE_OFFSETS[0] = _REST_PELVIS  # the Hips bone above the root, on the floor


def bone_transforms(rotations: np.ndarray, upper_chest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Local positions (22, 3) and rotations (22, 4) of the VMC bones, in onbeat's frame, for one pose's SMPL
    local rotations (24, 4). Without `upper_chest`, Spine3 is folded into Chest (see the module docstring)."""
    positions, bone_rotations = _BONE_OFFSETS.copy(), rotations[_VMC_JOINTS]
    if not upper_chest:
        spine3 = rotations[_SPINE3]
        bone_rotations[_CHEST] = R.quat_multiply(bone_rotations[_CHEST], spine3)
        bone_rotations[_UPPER_CHEST] = R.quat_identity()
        positions[_UPPER_CHEST] = 0.0
        # The Spine3 offset, seen from the folded Chest frame (Chest·Spine3), hangs on Spine3's children.
        positions[_ON_UPPER_CHEST] += R.quat_to_matrix(spine3).T @ REST_OFFSETS[_SPINE3]
    return positions, bone_rotations


def to_unity_position(p):
    return np.asarray(p) * _X_REFLECTION


def to_unity_quaternion(q):
    """onbeat (w, x, y, z) → Unity (x, y, z, w) under the x reflection (see the module docstring)."""
    q = np.asarray(q)
    return np.stack([q[..., 1], -q[..., 2], -q[..., 3], q[..., 0]], axis=-1)


def parse_target(text: object, default: tuple[str, int]) -> tuple[str, int]:
    """'host:port', '[ipv6]:port', ':port', 'host' or a bare IPv6 address → (host, port); OnbeatError naming
    the text otherwise."""
    text = str(text)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise OnbeatError(f"{text!r}: not a host:port target (IPv6: [address]:port)")
        port = rest[1:] or str(default[1])
    elif text.count(":") > 1:  # a bare IPv6 address
        host, port = text, str(default[1])
    elif ":" in text:
        host, _, port = text.rpartition(":")
    else:
        host, port = text, str(default[1])
    try:
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise OnbeatError(f"{text!r}: not a host:port target (port must be 1..65535)") from None
    return host or default[0], number


def osc_string(text):
    """OSC string: UTF-8, NUL-terminated, padded with NULs to a multiple of 4 bytes."""
    data = text.encode() + b"\0"
    return data + b"\0" * (-len(data) % 4)


class MessageTemplate:
    """One OSC message layout: the address, the type tags and the leading string arguments are encoded once;
    `encode(*numbers)` appends the numbers (big-endian float32 'f' / int32 'i')."""

    def __init__(self, address, types, *strings):
        self.address = address
        self.prefix = osc_string(address) + osc_string("," + types) + b"".join(map(osc_string, strings))
        self.numbers = struct.Struct(">" + types[len(strings):])

    def encode(self, *numbers):
        return self.prefix + self.numbers.pack(*numbers)


_BUNDLE_HEADER = b"#bundle\0" + struct.pack(">Q", 1)  # time tag 1 = immediately


def pack_bundles(messages, limit=MAX_BUNDLE_BYTES):
    """Encoded messages → bundle datagrams of at most `limit` bytes each, in order."""
    datagrams: list[bytes] = []
    current: list[bytes] = []
    size = len(_BUNDLE_HEADER)
    for msg in messages:
        need = 4 + len(msg)
        if len(_BUNDLE_HEADER) + need > limit:
            raise ValueError(f"an OSC message of {len(msg)} bytes does not fit a {limit}-byte bundle")
        if current and size + need > limit:
            datagrams.append(_BUNDLE_HEADER + b"".join(current))
            current, size = [], len(_BUNDLE_HEADER)
        current.append(struct.pack(">i", len(msg)) + msg)
        size += need
    if current:
        datagrams.append(_BUNDLE_HEADER + b"".join(current))
    return datagrams


class UdpTarget:
    """A connected UDP socket: the host is resolved once (IPv4 or IPv6), broadcast addresses are allowed, and a
    refusing target's ICMP errors come back as ConnectionRefusedError on a later send, which is counted (not
    raised). `status` shows the errors while they last (`warn_interval`), "ok" once the target works again."""

    def __init__(self, host, port, name, warn_interval=5.0, nobody_there=""):
        self.name, self.warn_interval = name, warn_interval
        self.nobody_there = nobody_there  # what to tell the user while nothing listens at the target
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.sent = self.errors = 0
        self.last_error = None
        self._last_warning = self._last_error_at = -math.inf
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (OSError, UnicodeError) as e:
            raise OnbeatError(f"{name} target {self.address}: {getattr(e, 'strerror', None) or e}") from None
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # Lighting rigs and installations send to a subnet's broadcast address; without SO_BROADCAST the
            # kernel refuses those with "Permission denied".
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self._sock.connect(address)
        except OSError as e:
            self._sock.close()
            raise OnbeatError(f"{name} target {self.address}: {e.strerror or e}") from None

    def send(self, datagrams):
        for datagram in datagrams:
            try:
                self._sock.send(datagram)
                self.sent += 1
            except OSError as e:
                self.errors += 1
                self.last_error = e.strerror or type(e).__name__
                now = self._last_error_at = time.monotonic()
                if now - self._last_warning >= self.warn_interval:
                    self._last_warning = now
                    refused = isinstance(e, ConnectionRefusedError) and self.nobody_there
                    hint = f": {self.nobody_there}" if refused else ""
                    logger.warning("%s %s: %s (%d send errors so far)%s; still running", self.name, self.address,
                                   self.last_error, self.errors, hint)

    @property
    def status(self):
        failing = time.monotonic() - self._last_error_at < self.warn_interval
        return f"{self.name} {self.address} " + (f"errors {self.errors} ({self.last_error})" if failing else "ok")

    def close(self):
        self._sock.close()


class _OscSink(Sink):
    """What the OSC sinks share: a UDP target named after the protocol, its status, closing it. A UDP send
    never waits for the peer, so these run on the output thread directly."""

    protocol = "osc"
    nobody_there = "nothing listens there yet"

    def __init__(self, host, port):
        self.target = UdpTarget(host, port, self.protocol, nobody_there=self.nobody_there)

    @property
    def status(self):
        return self.target.status

    def close(self):
        self.target.close()


class OnbeatOscSink(_OscSink):
    """The plain onbeat OSC schema (see the module docstring). `dancer`: the index of a crowd's dancer
    (`onbeat.stream.crowd`), sent as one more int argument of its frame and joint messages."""

    BEAT = MessageTemplate("/onbeat/beat", "ffiif")

    def __init__(self, host: str, port: int, dancer: int | None = None):
        super().__init__(host, port)
        extra = "" if dancer is None else "i"
        self.dancer = () if dancer is None else (dancer,)
        self.frame_message = MessageTemplate("/onbeat/frame", "fi" + extra)
        self.positions = [MessageTemplate("/onbeat/joint/pos", "sfff" + extra, name) for name in JOINT_NAMES]
        self.rotations = [MessageTemplate("/onbeat/joint/rot", "sffff" + extra, name) for name in JOINT_NAMES]

    def send(self, frame):
        messages = [self.frame_message.encode(frame.time, frame.index, *self.dancer)]
        positions, rotations = frame.positions.tolist(), frame.rotations.tolist()
        messages += [t.encode(*p, *self.dancer) for t, p in zip(self.positions, positions, strict=True)]
        messages += [t.encode(*q, *self.dancer) for t, q in zip(self.rotations, rotations, strict=True)]
        self.target.send(pack_bundles(messages))

    def send_beat(self, state):
        self.target.send(pack_bundles([self.BEAT.encode(state.time, state.bpm, state.bar_position,
                                                        int(state.is_downbeat), state.confidence)]))


class VmcSink(_OscSink):
    """VMC protocol 3.1 performer → marionette (see the module docstring for the conversion and the bones)."""

    OK = MessageTemplate("/VMC/Ext/OK", "iiii").encode(1, 3, 0, 1)  # loaded, calibrated, normal mode, tracking ok
    TIME = MessageTemplate("/VMC/Ext/T", "f")
    ROOT = MessageTemplate("/VMC/Ext/Root/Pos", "sfffffff", "root")
    BONES = [MessageTemplate("/VMC/Ext/Bone/Pos", "sfffffff", bone) for _, bone in VMC_BONES]

    protocol = "vmc"  # VMC has no beat message: send_beat stays a no-op
    nobody_there = ("no VMC receiver there yet: start VSeeFace, Warudo or your Unity scene with its VMC receiver on "
                    "this port, or use --no-vmc")

    def __init__(self, host: str, port: int, upper_chest: bool = False):
        super().__init__(host, port)
        self.upper_chest = upper_chest

    def send(self, frame):
        root = to_unity_position(frame.root_translation - _REST_PELVIS)
        positions, rotations = bone_transforms(frame.rotations, self.upper_chest)
        messages = [self.OK, self.TIME.encode(frame.time), self.ROOT.encode(*root, 0.0, 0.0, 0.0, 1.0)]
        messages += [t.encode(*p, *q) for t, p, q in zip(self.BONES, to_unity_position(positions).tolist(),
                                                          to_unity_quaternion(rotations).tolist(), strict=True)]
        self.target.send(pack_bundles(messages))


def _write_error(error, folder):
    """What went wrong writing to `folder`: libsndfile says only "System error." when the disk is full."""
    if getattr(error, "strerror", None):
        return error.strerror
    try:
        full = shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        full = False
    return "No space left on device" if full else str(error)


class Recorder(Sink):
    """Saves the live session for replay: the shown motion as `path` (.npz, or .bvh) and the analysed audio
    next to it (.wav).

    The motion is written incrementally, one readable part file (`<name>.partNNN.npz`) per `segment_seconds`,
    by a writer thread (the output clock never waits for the disk); `close()` joins the parts into `path`.
    If the disk fills up (any OSError), recording stops with one message, the show goes on, the frames still
    in memory are saved as a last part if they fit, and the parts stay readable with `Motion.load`.

    Refused up front, before anything is written (OnbeatError): outputs that would overwrite one of `inputs`
    (the song being played, say), names the file system cannot hold, a folder it cannot write to, parts left
    by an earlier recording that did not finish, and a path another onbeat is recording to (a lock file
    `<name>.lock`, held with `fcntl.flock` until `close()`)."""

    def __init__(self, path, rate, segment_seconds=5.0, inputs=()):
        self.path, self.rate = Path(path), float(rate)
        if self.path.suffix.lower() not in (".npz", ".bvh"):
            raise OnbeatError(f"{path}: recordings are .npz or .bvh")
        if not self.path.parent.is_dir():
            raise OnbeatError(f"{path}: folder {self.path.parent} does not exist")
        self.audio_path = self.path.with_suffix(".wav")
        self.lock_path = self.path.with_suffix(".lock")
        _check_name_lengths(self.path, [self.path, self.audio_path, self.lock_path, self._part(10 ** 6 - 1)])
        _refuse_collisions(self.path, [self.path, self.audio_path, self.lock_path], inputs)
        self._lock_file = _lock(self.lock_path, self.path)
        try:
            _refuse_left_parts(self.path)
        except OnbeatError:
            self._unlock()
            raise
        self.segment_frames = max(1, int(round(segment_seconds * self.rate)))
        self.parts = []
        self.failed = None  # the message, once recording has stopped
        self.frames_received = 0  # what the status shows: the dance so far, whatever part is on disk yet
        self.frames_recorded = 0  # in parts on disk
        self._roots, self._rotations = [], []
        self._audio = None
        self._lock = threading.Lock()
        self._writer = None

    def _part(self, index):
        return self.path.with_name(f"{self.path.stem}.part{index:03d}.npz")

    def send(self, frame):
        if self.failed:
            if self._roots:
                self._write_segment(last=True)  # best effort: what was in memory when the disk filled up
            return
        self.frames_received += 1
        self._roots.append(frame.root_translation)
        self._rotations.append(frame.rotations)
        if len(self._roots) >= self.segment_frames:
            self._write_segment()

    def send_audio(self, block):
        if self.failed:
            return
        try:
            if self._audio is None:
                import soundfile
                self._audio = soundfile.SoundFile(self.audio_path, "w", samplerate=block.sample_rate,
                                                  channels=block.samples.shape[1], subtype="PCM_16")
            self._audio.write(block.samples)
        except (OSError, RuntimeError) as e:  # soundfile reports a full disk as RuntimeError or LibsndfileError
            self._fail(self.audio_path, e)

    def _write_segment(self, last=False):
        roots, rotations = np.array(self._roots), np.array(self._rotations)
        self._roots, self._rotations = [], []
        part = self._part(len(self.parts))
        self.parts.append(part)
        previous = self._writer
        self._writer = threading.Thread(target=self._save_part, args=(previous, part, roots, rotations, last),
                                        name="onbeat-recorder", daemon=True)
        self._writer.start()

    def _save_part(self, previous, part, roots, rotations, last):
        if previous is not None:
            previous.join()  # parts land in order
        if self.failed and not last:
            self.parts.remove(part)
            return
        try:
            Motion(self.rate, roots, rotations).save(part)
            self.frames_recorded += len(roots)
        except OSError as e:
            _remove(part)
            self.parts.remove(part)
            if not last:
                self._fail(part, e)

    def _fail(self, where, error):
        with self._lock:
            if self.failed:
                return
            self.failed = f"recording stopped: {where}: {_write_error(error, self.path.parent)}"
        logger.warning("%s; live output continues", self.failed)

    @property
    def status(self):
        return f"recorder {self.path.name} " + (self.failed or f"{self.frames_received / self.rate:.0f} s")

    def close(self):
        if self._lock_file is None:
            return  # closed already
        if self._roots and not self.failed:
            self._write_segment()
        if self._writer is not None:
            self._writer.join()
        if self._audio is not None:
            try:
                self._audio.close()
            except (OSError, RuntimeError) as e:
                self._fail(self.audio_path, e)
        if not self.failed and self.parts:
            self._join_parts()
        elif self.failed:
            logger.info("%.1f s of the dance kept in %s (each readable on its own)", self.frames_recorded / self.rate,
                        ", ".join(p.name for p in self.parts) or "no file")
        self._unlock()

    def _unlock(self):
        """Remove the lock file, then release it (a second instance waiting on it checks it is still there)."""
        _remove(self.lock_path)
        self._lock_file.close()
        self._lock_file = None

    def _join_parts(self):
        """Join the parts into the final file; on failure the parts stay where they are."""
        try:
            parts = [Motion.load(p) for p in self.parts]
            motion = Motion(self.rate, np.concatenate([m.root_translation for m in parts]),
                            np.concatenate([m.rotations for m in parts]))
            if self.path.suffix.lower() == ".bvh":
                from onbeat.core.bvh import write_bvh
                write_bvh(motion, self.path)
            else:
                motion.save(self.path)
        except (OSError, OnbeatError) as e:
            self._fail(self.path, e)
            logger.info("the parts of the recording are kept: %s", ", ".join(p.name for p in self.parts))
            return
        for part in self.parts:
            _remove(part)
        logger.info("recorded %.1f s to %s%s", motion.duration, self.path,
                    f" and {self.audio_path}" if self._audio is not None else "")


def _remove(path):
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # it was never written (the name or the folder was the problem)


def _check_name_lengths(path, outputs):
    """OnbeatError when a file name of the recording (the longest part name included) is too long."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max(outputs, key=lambda p: len(os.fsencode(p.name)))
    if len(os.fsencode(longest.name)) > limit:
        raise OnbeatError(f"{path}: name too long: the recording also writes files like {longest.name[:40]}... "
                          f"({len(os.fsencode(longest.name))} bytes; this file system allows {limit}); choose a "
                          "shorter name")


def _refuse_collisions(path, outputs, inputs):
    """OnbeatError when a file the recording writes is one of `inputs` (by inode, so links and another
    spelling of the path count), or an input looks like one of its part files."""
    part_name = re.compile(rf"{re.escape(path.stem)}\.part\d+\.npz", re.IGNORECASE)
    for given in inputs:
        source = Path(given)
        if not source.exists():
            continue
        for output in outputs:
            if output.exists() and os.path.samefile(output, source):
                raise OnbeatError(f"--record {path} would overwrite {source}, which onbeat reads (the recording "
                                  f"writes {', '.join(o.name for o in outputs)} and its parts): choose another name")
        if part_name.fullmatch(source.name) and os.path.samefile(source.parent, path.parent):
            raise OnbeatError(f"--record {path} would overwrite {source}, which onbeat reads (a part file of the "
                              "recording): choose another name")


def _refuse_left_parts(path):
    left = sorted(path.parent.glob(f"{glob.escape(path.stem)}.part*.npz"))
    if left:
        raise OnbeatError(f"{left[0]}: left by an earlier recording to {path.name} that did not finish (each part "
                          "is a readable motion file); move the parts away or choose another name")


def _lock(lock_path, path):
    """An open lock file, exclusively `flock`ed: OnbeatError when another onbeat holds it, or when the folder
    is not writable (found now, not at the first part)."""
    while True:
        try:
            lock = open(lock_path, "a+")
        except OSError as e:
            raise OnbeatError(f"{path}: cannot write to {path.parent} ({e.strerror or e})") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise OnbeatError(f"{path}: another onbeat (pid {holder}) is recording to it; choose another "
                              "name") from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(lock.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock.close()  # its holder removed it between our open and our lock: take the new one
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


class Speakers(Sink):
    """Plays the demo track on the default output device; `open()` is None (said once) when there is none."""

    def __init__(self, stream):
        self.stream = stream

    @classmethod
    def open(cls, sample_rate, channels):
        try:
            return cls(open_output(sample_rate, channels, latency="low"))
        except OnbeatError as e:  # no speakers is not an error: the dance goes on
            logger.warning("demo track: playing silently: %s", e)
            return None

    def send_audio(self, block):
        try:
            self.stream.write(block.samples)
        except Exception:  # noqa: BLE001 - an output underflow or a vanished device must not stop the dance
            pass

    @property
    def status(self):
        return "speakers"

    def close(self):
        self.stream.close()
