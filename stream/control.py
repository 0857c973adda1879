"""OSC control input: change the live dance from another app (a lighting desk, TouchOSC, a script).

Messages (UDP, default 127.0.0.1:39540; only local apps can reach it unless `--control-host` says otherwise):
    /onbeat/energy   f   0..2, how big the moves are (1 = normal); ints are accepted too
    /onbeat/model    s   switch choreographer by name (e.g. "default", "groove"); unknown names are counted
    /onbeat/hold     i   1 = freeze on the current pose, 0 = dance again (blends back in)
    /onbeat/keypose  s   strike a named key pose on the next downbeat (choreographers.keyposes: arms_up, t_pose,
                         point, crouch)
    /onbeat/mirror   i   1 = mirror the dance left/right
    /onbeat/style    s   dance this style (a name the model knows, `onbeat info` lists them; "" = any), blended in;
                         a style the dancing model does not know is logged as a warning and changes nothing
    /onbeat/tempo    f   the tempo in BPM (20..400) for rigs with no Link or MIDI clock; 0 = back to the ear
    /onbeat/beat     [i] a beat is now (a tap, or a desk's beat output); optional beat in bar 0..3, 0 = downbeat
The last two drive `Controls.clock` (an `onbeat.ear.clocks.OscClock`): it leads the dance's timing from the
first tempo (or two taps) until `/onbeat/tempo 0`. A tap in a bundle stamped ahead counts at its time tag.
Anything else (unknown address or key pose, wrong type or arity, out-of-range value, a datagram that is not
OSC) is ignored and counted in `Controls.malformed`; nothing a sender does can stop the show.

Nothing a datagram says is trusted before it is checked. `parse_packet` is a strict OSC 1.0/1.1 parser that
does a bounded amount of work per datagram: at most `MAX_DATAGRAM_BYTES`, bundles nested at most `MAX_DEPTH`
deep, each bundle element's size checked (positive, a multiple of 4, inside its bundle) before it is read,
strings NUL-terminated and NUL-padded, every type tag known, at most `MAX_MESSAGES` messages. (python-osc
1.10's parser loops forever on a bundle element of size -4.)

Bundle time tags are honoured: a bundle stamped in the future is applied at its time (on this machine's wall
clock), at most `MAX_SCHEDULE_SECONDS` ahead and `MAX_SCHEDULED` messages waiting; later or more is counted
as malformed. A past time tag, or 1 ("immediately"), applies at once.

The work per second is bounded too, so that a flood costs the show a few percent of one core and never an
output frame: the server reads at most `READS_PER_SECOND` datagrams a second (beyond that it sleeps and the
kernel drops them, counted as `Controls.dropped` where Linux reports it), parses at most `PARSE_BYTES_PER_SECOND`
bytes a second, and takes at most `SOURCE_DATAGRAMS_PER_SECOND` datagrams a second from one source address
(so one flooding sender cannot crowd out the others); datagrams over a budget are counted in
`Controls.dropped`. Malformed and dropped input is logged at most once per `WARN_INTERVAL` seconds, as counts.
"""
import heapq
import logging
import math
import select
import socket
import struct
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from onbeat.choreographers.keyposes import KEY_POSES
from onbeat.core.errors import OnbeatError
from onbeat.ear.clocks import OscClock

logger = logging.getLogger(__name__)

DEFAULT_CONTROL_PORT = 39540

MAX_DATAGRAM_BYTES = 8192      # a control message is tens of bytes; a bundle of 64 of them fits in 4 kB
MAX_DEPTH = 4                  # bundles inside bundles, and arrays inside arrays
MAX_MESSAGES = 64              # messages in one datagram
MAX_SCHEDULE_SECONDS = 60.0    # how far ahead a bundle's time tag may be
MAX_SCHEDULED = 256            # messages waiting for their time tag
READS_PER_SECOND = 2000
PARSE_BYTES_PER_SECOND = 256 * 1024
SOURCE_DATAGRAMS_PER_SECOND = 1000
MAX_SOURCES = 1024             # source addresses whose budgets are remembered (least recently seen forgotten)
WARN_INTERVAL = 5.0
POLL_SECONDS = 0.05            # how soon `close()` is noticed and scheduled bundles are applied
BATCH = 256                    # datagrams read between two looks at `close()` and the schedule

BUNDLE_TAG = b"#bundle\0"
IMMEDIATELY = 1                # the OSC time tag meaning "now"
NTP_TO_UNIX = 2208988800       # seconds from 1900-01-01 (NTP's epoch) to 1970-01-01
# SO_RXQ_OVFL (Linux): every datagram carries the count of datagrams the kernel dropped on a full buffer.
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40) if sys.platform.startswith("linux") else None


class MalformedPacket(ValueError):
    """A datagram that is not acceptable OSC; the message says why."""


@dataclass(frozen=True)
class Message:
    address: str
    args: tuple
    tags: str = ""  # the type tags, without the comma


@dataclass
class Controls:
    """What the performer asked for; the engine reads it every slice and every frame."""
    energy: float = 1.0
    model: str = "default"
    hold: bool = False
    mirror: bool = False
    key_pose: str | None = None  # consumed by the engine at the next downbeat
    style: str | None = None  # None: never asked for (each model dances its own default); "": any style
    models: tuple = ("default", "groove")  # names `/onbeat/model` accepts
    key_poses: tuple = tuple(KEY_POSES)  # names `/onbeat/keypose` accepts
    clock: OscClock = field(default_factory=OscClock)  # /onbeat/tempo and /onbeat/beat
    received: int = 0   # messages applied
    malformed: int = 0  # messages and datagrams refused
    dropped: int = 0    # datagrams not looked at: over a rate budget, or dropped by the kernel
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply(self, address: str, args) -> bool:
        """Apply one OSC message; returns False (and counts it) when it is malformed."""
        handler, arities = _HANDLERS.get(address, (_unknown, ()))
        with self._lock:
            ok = len(args) in arities and handler(self, *args) is not False
            if ok:
                self.received += 1
            else:
                self.malformed += 1
            return ok

    def count(self, malformed: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self.malformed += malformed
            self.dropped += dropped

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
    if not isinstance(value, str) or value not in c.key_poses:
        return False
    c.key_pose = value


MAX_STYLE_NAME = 64  # characters: a style name is a word or two


def _set_style(c, value):
    if not isinstance(value, str) or len(value) > MAX_STYLE_NAME:
        return False
    c.style = value  # which styles exist depends on the model dancing: the engine checks it there


def _set_tempo(c, value):
    bpm = _number(value, 0.0, 400.0)
    if bpm is None or 0.0 < bpm < 20.0:
        return False
    c.clock.set_tempo(bpm, time.perf_counter())


def _beat(c, *beat_in_bar):
    if beat_in_bar and (isinstance(beat_in_bar[0], bool) or beat_in_bar[0] not in (0, 1, 2, 3)):
        return False
    c.clock.tap(time.perf_counter(), int(beat_in_bar[0]) if beat_in_bar else None)


def _unknown(controls, *args):
    return False


# address -> (handler, the argument counts it takes)
_HANDLERS = {"/onbeat/energy": (_set_energy, (1,)), "/onbeat/model": (_set_model, (1,)),
             "/onbeat/hold": (_set_hold, (1,)), "/onbeat/keypose": (_set_key_pose, (1,)),
             "/onbeat/mirror": (_set_mirror, (1,)), "/onbeat/style": (_set_style, (1,)),
             "/onbeat/tempo": (_set_tempo, (1,)),
             "/onbeat/beat": (_beat, (0, 1))}


# --- parsing ---------------------------------------------------------------------------------------------------

# Type tag → (fixed size in bytes, struct format or None); strings and blobs have their own readers.
_FIXED = {"i": (4, ">i"), "f": (4, ">f"), "h": (8, ">q"), "d": (8, ">d"), "t": (8, ">Q"), "c": (4, ">I"),
          "r": (4, ">I"), "m": (4, None)}
_CONSTANTS = {"T": True, "F": False, "N": None, "I": math.inf}


def parse_packet(data: bytes) -> list[tuple[int, Message]]:
    """The messages of one OSC datagram with the time tag of the bundle around each (`IMMEDIATELY` for a bare
    message); MalformedPacket when anything in it is out of bounds or not OSC."""
    if len(data) > MAX_DATAGRAM_BYTES:
        raise MalformedPacket(f"{len(data)} bytes: larger than {MAX_DATAGRAM_BYTES}")
    out: list[tuple[int, Message]] = []
    _parse_element(data, 0, len(data), 0, IMMEDIATELY, out)
    return out


def _parse_element(data, start, end, depth, time_tag, out):
    if data.startswith(BUNDLE_TAG, start, end):
        _parse_bundle(data, start, end, depth, time_tag, out)
    elif data.startswith(b"/", start, end):
        if len(out) >= MAX_MESSAGES:
            raise MalformedPacket(f"more than {MAX_MESSAGES} messages")
        out.append((time_tag, _parse_message(data, start, end)))
    else:
        raise MalformedPacket("neither an OSC message nor a bundle")


def _parse_bundle(data, start, end, depth, time_tag, out):
    if depth >= MAX_DEPTH:
        raise MalformedPacket(f"bundles nested more than {MAX_DEPTH} deep")
    if end - start < 16:
        raise MalformedPacket("bundle header truncated")
    own_tag = struct.unpack_from(">Q", data, start + 8)[0]
    # A bundle inside another is applied no earlier than the outer one (OSC 1.0).
    time_tag = time_tag if own_tag == IMMEDIATELY else max(own_tag, time_tag)
    index = start + 16
    while index < end:
        if end - index < 4:
            raise MalformedPacket("bundle element size truncated")
        size = struct.unpack_from(">i", data, index)[0]
        index += 4
        if size <= 0 or size % 4 or size > end - index:
            raise MalformedPacket(f"bundle element size {size} (must be a positive multiple of 4 within the "
                                  f"{end - index} bytes left)")
        _parse_element(data, index, index + size, depth + 1, time_tag, out)
        index += size


def _string(data, index, end, what):
    """(text, index after its padding): NUL-terminated UTF-8, NUL-padded to a multiple of 4 bytes."""
    nul = data.find(b"\0", index, end)
    if nul < 0:
        raise MalformedPacket(f"{what} not terminated")
    stop = nul + 4 - (nul - index) % 4
    if stop > end or data[nul:stop].strip(b"\0"):
        raise MalformedPacket(f"{what} not padded to 4 bytes with NULs")
    try:
        return data[index:nul].decode("utf-8"), stop
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not UTF-8") from None


def _parse_message(data, start, end):
    address, index = _string(data, start, end, "address")
    if index == end:
        return Message(address, ())  # OSC 1.0 allows a message without a type tag string
    tags, index = _string(data, index, end, "type tags")
    if not tags.startswith(","):
        raise MalformedPacket("type tags do not start with ','")
    args: list = []
    stack = [args]
    for tag in tags[1:]:
        if tag in _FIXED:
            size, fmt = _FIXED[tag]
            if end - index < size:
                raise MalformedPacket(f"argument '{tag}' truncated")
            value = struct.unpack_from(fmt, data, index)[0] if fmt else bytes(data[index:index + size])
            index += size
        elif tag in "sS":
            value, index = _string(data, index, end, "string argument")
        elif tag == "b":
            if end - index < 4:
                raise MalformedPacket("blob size truncated")
            size = struct.unpack_from(">i", data, index)[0]
            if size < 0 or size > end - index - 4:
                raise MalformedPacket(f"blob size {size} outside the {end - index - 4} bytes left")
            padded = index + 4 + size + (-size % 4)
            if padded > end:
                raise MalformedPacket("blob padding truncated")
            value, index = bytes(data[index + 4:index + 4 + size]), padded
        elif tag in _CONSTANTS:
            value = _CONSTANTS[tag]
        elif tag == "[":
            if len(stack) > MAX_DEPTH:
                raise MalformedPacket(f"arrays nested more than {MAX_DEPTH} deep")
            stack[-1].append([])
            stack.append(stack[-1][-1])
            continue
        elif tag == "]":
            if len(stack) == 1:
                raise MalformedPacket("']' without '['")
            stack.pop()
            continue
        else:
            raise MalformedPacket(f"unknown type tag {tag!r}")
        stack[-1].append(value)
    if len(stack) != 1:
        raise MalformedPacket("'[' without ']'")
    if index != end:
        raise MalformedPacket(f"{end - index} bytes after the last argument")
    return Message(address, tuple(args), tags[1:])


def time_tag_to_unix(time_tag: int) -> float:
    """An OSC (NTP) time tag as seconds since 1970."""
    return (time_tag >> 32) - NTP_TO_UNIX + (time_tag & 0xFFFFFFFF) / 2 ** 32


def unix_to_time_tag(seconds: float) -> int:
    whole = math.floor(seconds)
    return (whole + NTP_TO_UNIX) << 32 | int((seconds - whole) * 2 ** 32)


# --- budgets and the receiver -------------------------------------------------------------------------------------

class TokenBucket:
    """`rate` tokens a second, at most `rate` saved up (one second's worth of burst)."""

    def __init__(self, rate: float, now: float):
        self.rate, self.tokens, self.updated = float(rate), float(rate), now

    def take(self, amount: float, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` tokens are there (0 when they are)."""
        return max(0.0, (amount - self.tokens) / self.rate)


class ControlInput:
    """Everything between a received datagram and `Controls`: the rate budgets, the parser, the schedule of
    future-stamped bundles, and the throttled warnings. Used by `ControlServer`'s thread (and by tests directly,
    with an injected clock)."""

    def __init__(self, controls: Controls, clock=time.monotonic, wall_clock=time.time):
        self.controls, self.clock, self.wall_clock = controls, clock, wall_clock
        now = clock()
        self.reads = TokenBucket(READS_PER_SECOND, now)
        self.parse_bytes = TokenBucket(PARSE_BYTES_PER_SECOND, now)
        self.sources: OrderedDict = OrderedDict()  # source host → TokenBucket, least recently seen first
        self.applied_from: Counter = Counter()  # source host → messages applied (for the hosts in `sources`)
        self.scheduled: list = []  # heap of (due on `clock`, arrival order, Message, source host)
        self._order = 0
        self._since_warning = {"malformed": 0, "dropped": 0}
        self._latest_problem = ""
        self._warned_at = -math.inf

    def handle(self, data: bytes, source) -> None:
        """One datagram from `source` ((host, port, ...) or a host)."""
        now = self.clock()
        host = source[0] if isinstance(source, tuple) else source
        parsed = min(len(data), MAX_DATAGRAM_BYTES)  # a larger datagram is refused unread
        if not self._source_budget(host, now).take(1, now) or not self.parse_bytes.take(parsed, now):
            self._problem("dropped", f"over the rate budget from {host}")
            return
        try:
            messages = parse_packet(data)
            if not messages:
                raise MalformedPacket("an empty bundle")
            due = self._due(messages)
        except MalformedPacket as e:
            self._problem("malformed", f"{e} from {host}")
            return
        for (_, message), at in zip(messages, due, strict=True):
            if at is None:
                self._apply(message, host)
            else:
                heapq.heappush(self.scheduled, (at, self._order, message, host))
                self._order += 1

    def _due(self, messages):
        """Per message, None (apply now) or when to apply it on `clock`; the whole datagram is refused when a
        time tag is too far ahead or the schedule is full."""
        now, wall = self.clock(), self.wall_clock()
        due = []
        for time_tag, _ in messages:
            ahead = time_tag_to_unix(time_tag) - wall if time_tag != IMMEDIATELY else 0.0
            if ahead > MAX_SCHEDULE_SECONDS:
                raise MalformedPacket(f"time tag {ahead:.0f} s ahead (at most {MAX_SCHEDULE_SECONDS:.0f} s)")
            due.append(now + ahead if ahead > 0 else None)
        waiting = sum(at is not None for at in due)
        if waiting and len(self.scheduled) + waiting > MAX_SCHEDULED:
            raise MalformedPacket(f"more than {MAX_SCHEDULED} messages waiting for their time tags")
        return due

    def _source_budget(self, host, now):
        bucket = self.sources.get(host)
        if bucket is None:
            if len(self.sources) >= MAX_SOURCES:
                self.applied_from.pop(self.sources.popitem(last=False)[0], None)
            bucket = self.sources[host] = TokenBucket(SOURCE_DATAGRAMS_PER_SECOND, now)
        self.sources.move_to_end(host)
        return bucket

    def _apply(self, message, host):
        if self.controls.apply(message.address, message.args):
            self.applied_from[host] += 1
        else:
            self._problem(None, f"refused {message.address[:64]!r} {_short(message.args)} from {host}")

    def apply_due(self) -> float:
        """Apply the scheduled messages whose time has come; seconds until the next one (inf: none)."""
        now = self.clock()
        while self.scheduled and self.scheduled[0][0] <= now:
            self._apply(*heapq.heappop(self.scheduled)[2:])
        self.warn_if_due(now)
        return self.scheduled[0][0] - now if self.scheduled else math.inf

    def kernel_dropped(self, count: int) -> None:
        """`count` more datagrams dropped by the kernel (its receive buffer was full)."""
        if count > 0:
            self._problem("dropped", "the receive buffer was full", count)

    def _problem(self, kind, what, count=1):
        if kind is not None:
            self.controls.count(**{kind: count})
            self._since_warning[kind] += count
        else:
            self._since_warning["malformed"] += count  # Controls.apply has counted it already
        self._latest_problem = what
        self.warn_if_due(self.clock())

    def warn_if_due(self, now: float) -> None:
        """One warning per `WARN_INTERVAL` at most, with the counts since the last one."""
        if not any(self._since_warning.values()) or now - self._warned_at < WARN_INTERVAL:
            return
        self._warned_at = now
        counts = ", ".join(f"{n} {kind}" for kind, n in self._since_warning.items() if n)
        logger.warning("control input: %s (latest: %s); ignored", counts, self._latest_problem)
        self._since_warning = dict.fromkeys(self._since_warning, 0)


def _short(args):
    text = repr(args)
    return text if len(text) <= 64 else text[:61] + "..."


class ControlServer:
    """Listens for control messages on (host, port) in a background thread until `close()`, which returns
    within a fraction of a second whatever is being received."""

    def __init__(self, controls: Controls, host: str = "127.0.0.1", port: int = DEFAULT_CONTROL_PORT):
        self.controls = controls
        self.input = ControlInput(controls)
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        except (OSError, OverflowError) as e:
            raise OnbeatError(f"control input {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
        try:
            # A deep receive buffer rides out bursts (a fader sweep) while this thread waits for the GIL.
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            if SO_RXQ_OVFL is not None:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            self._sock.bind(address)
        except OSError as e:
            self._sock.close()
            raise OnbeatError(f"control input {host}:{port}: cannot listen ({e.strerror or e})") from None
        self._sock.setblocking(False)
        self.address = self._sock.getsockname()
        self._kernel_drops = 0
        self.thread_id: int | None = None  # the receiving thread's native id, once it runs
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="onbeat-control", daemon=True)
        self._thread.start()

    def _serve(self):
        self.thread_id = threading.get_native_id()
        ancillary = socket.CMSG_SPACE(4) if SO_RXQ_OVFL is not None else 0
        while not self._closing.is_set():
            wait = min(POLL_SECONDS, self.input.apply_due())
            reads = self.input.reads
            reads.take(0, self.input.clock())  # bring the budget up to date
            if reads.tokens < 1:
                # Over the read budget: sleep while the kernel drops the flood, until a poll's worth of reads is
                # earned again (waking up for every datagram would cost more than reading it).
                self._closing.wait(min(wait, reads.wait_for(READS_PER_SECOND * POLL_SECONDS)))
                continue
            if not select.select([self._sock], [], [], wait)[0]:
                continue
            for _ in range(BATCH):
                if not self.input.reads.take(1, self.input.clock()):
                    break
                try:
                    data, extra, _, source = self._sock.recvmsg(MAX_DATAGRAM_BYTES + 1, ancillary)
                except OSError:  # nothing left to read (or an ICMP error for an earlier datagram)
                    break
                self._count_kernel_drops(extra)
                self.input.handle(data, source)

    def _count_kernel_drops(self, extra):
        for level, kind, value in extra:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(value) >= 4:
                total = struct.unpack("=I", value[:4])[0]
                self.input.kernel_dropped((total - self._kernel_drops) % 2 ** 32)
                self._kernel_drops = total

    def close(self):
        self._closing.set()
        self._thread.join(timeout=2.0)  # one pass of the loop is bounded: POLL_SECONDS plus a budgeted batch
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
