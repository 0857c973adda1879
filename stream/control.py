"""OSC control input: change the live dance from another app (a lighting desk, TouchOSC, a script).

Messages (UDP, default 127.0.0.1:39540; only local apps can reach it unless `--control-host` says otherwise):
    /onbeat/energy   f   0..2, how big the moves are (1 = normal); ints are accepted too
    /onbeat/model    s   switch choreographer by name (e.g. "default", "groove"); unknown names are counted
    /onbeat/hold     i   1 = freeze on the current pose, 0 = dance again (blends back in)
    /onbeat/keypose  s   strike a named key pose on the next downbeat (groove poses: arms_up, t_pose, point, crouch)
    /onbeat/mirror   i   1 = mirror the dance left/right
    /onbeat/tempo    f   the tempo in BPM (20..400) for rigs with no Link or MIDI clock; 0 = back to the ear
    /onbeat/beat     [i] a beat is now (a tap, or a desk's beat output); optional beat in bar 0..3, 0 = downbeat
The last two drive `Controls.clock` (an `onbeat.ear.clocks.OscClock`): it leads the dance's timing from the
first tempo (or two taps) until `/onbeat/tempo 0`.
Anything else (unknown address, wrong type or arity, out-of-range value, a datagram that is not OSC) is ignored
and counted in `Controls.malformed`; nothing a sender does can stop the show.

The server is python-osc's blocking UDP server run on its own thread: it handles datagrams one at a time in
arrival order (the threading server spawned a thread per datagram and lost bundles under bursts).
"""
import socket
import threading
import time
from dataclasses import dataclass, field

from pythonosc import osc_packet
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from onbeat.core.errors import OnbeatError
from onbeat.ear.clocks import OscClock

DEFAULT_CONTROL_PORT = 39540


@dataclass
class Controls:
    """What the performer asked for; the engine reads it every slice and every frame."""
    energy: float = 1.0
    model: str = "default"
    hold: bool = False
    mirror: bool = False
    key_pose: str | None = None  # consumed by the engine at the next downbeat
    models: tuple = ("default", "groove")  # names `/onbeat/model` accepts
    clock: OscClock = field(default_factory=OscClock)  # /onbeat/tempo and /onbeat/beat
    received: int = 0
    malformed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply(self, address, args):
        """Apply one OSC message; returns False (and counts it) when it is malformed."""
        handler, arities = _HANDLERS.get(address, (None, ()))
        with self._lock:
            ok = len(args) in arities and handler(self, *args) is not False
            if ok:
                self.received += 1
            else:
                self.malformed += 1
            return ok

    def take_key_pose(self):
        with self._lock:
            pose, self.key_pose = self.key_pose, None
            return pose


def _number(value, low, high):
    """value as a float in [low, high], or None (bools and NaN are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return None
    return float(value)


def _flag(value):
    return value if not isinstance(value, bool) and value in (0, 1) else None


def _set_energy(c, value):
    energy = _number(value, 0.0, 2.0)
    if energy is None:
        return False
    c.energy = energy


def _set_model(c, value):
    if not isinstance(value, str) or value not in c.models:
        return False
    c.model = value


def _set_hold(c, value):
    if _flag(value) is None:
        return False
    c.hold = bool(value)


def _set_mirror(c, value):
    if _flag(value) is None:
        return False
    c.mirror = bool(value)


def _set_key_pose(c, value):
    if not isinstance(value, str) or not value or len(value) > 64:
        return False
    c.key_pose = value


def _set_tempo(c, value):
    bpm = _number(value, 0.0, 400.0)
    if bpm is None or 0.0 < bpm < 20.0:
        return False
    c.clock.set_tempo(bpm, time.perf_counter())


def _beat(c, *beat_in_bar):
    if beat_in_bar and (isinstance(beat_in_bar[0], bool) or beat_in_bar[0] not in (0, 1, 2, 3)):
        return False
    c.clock.tap(time.perf_counter(), int(beat_in_bar[0]) if beat_in_bar else None)


# address -> (handler, the argument counts it takes)
_HANDLERS = {"/onbeat/energy": (_set_energy, (1,)), "/onbeat/model": (_set_model, (1,)),
             "/onbeat/hold": (_set_hold, (1,)), "/onbeat/keypose": (_set_key_pose, (1,)),
             "/onbeat/mirror": (_set_mirror, (1,)), "/onbeat/tempo": (_set_tempo, (1,)),
             "/onbeat/beat": (_beat, (0, 1))}


class _CountingDispatcher(Dispatcher):
    """Routes every message to `Controls.apply`, counting datagrams that do not parse as OSC."""

    def __init__(self, controls):
        super().__init__()
        self.controls = controls

    def call_handlers_for_packet(self, data, client_address):
        try:
            messages = [timed.message for timed in osc_packet.OscPacket(data).messages]
            if not messages:
                raise ValueError("an empty bundle")  # carries nothing to apply: counted like junk
        except Exception:  # noqa: BLE001 - any datagram from the network may be junk; none may stop the server
            with self.controls._lock:
                self.controls.malformed += 1
            return []
        for message in messages:
            self.controls.apply(message.address, list(message.params))
        return []


class _Server(BlockingOSCUDPServer):
    def server_bind(self):
        # A deep receive buffer rides out bursts (a fader sweep) while this thread waits for the GIL.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        super().server_bind()

    def verify_request(self, request, client_address):
        return True  # let junk reach the dispatcher, which counts it


class ControlServer:
    """Listens for control messages on (host, port) in a background thread until `close()`."""

    def __init__(self, controls, host="127.0.0.1", port=DEFAULT_CONTROL_PORT):
        self.controls = controls
        try:
            self._server = _Server((host, port), _CountingDispatcher(controls))
        except OSError as e:
            raise OnbeatError(f"control input {host}:{port}: cannot listen ({e.strerror or e})") from None
        self.address = self._server.server_address
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="onbeat-control", daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
