"""External beat clocks: at a DJ set the exact beat is already known, and a clock that knows it leads the timing.

The ear (`onbeat.ear.beats`) hears the beat, takes seconds to lock and errs on swing; these clocks are told it:
- `LinkClock`: an Ableton Link session (PyPI `aalink`): its tempo and beat phase with a quantum of one bar (beat
  0 of every bar is a downbeat). It leads while the session has other peers. With `lead=True` it never leads
  the dance but publishes the ear's tempo and beat to the session, for lights and visuals to follow.
- `MidiClock`: MIDI beat clock (mido + python-rtmidi): 24 pulses per beat, start/stop/continue, song position.
  The tempo comes from a line through the last beat's pulses (a smoothed pulse period that follows a tempo
  change within a beat). It leads while pulses arrive and the transport is not stopped; a clock
  without start or song position (many DJ mixers) gives the tempo, and the phase is the ear's when it began.
- `OscClock`: `/onbeat/tempo f` and `/onbeat/beat [i]` from the control input (`onbeat.stream.control`), for
  rigs with neither. It leads from the first tempo (or two taps) until `/onbeat/tempo 0`.

Each clock's `grid()` is a `BeatGrid` in host seconds (`time.perf_counter`, the engine's clock), or None while
it has nothing fresh to say; `hear(grid, confidence)` gives it the ear's grid (a clock without a phase of its
own anchors to it; Link publishes it when leading). `Handover` eases a change of leader so no move jumps.
The optional packages are in the `clock` extra (`onbeat.commands.cli` names it when one is missing).
"""
import asyncio
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import BEATS_PER_BAR
from onbeat.ear.beats import BeatState

logger = logging.getLogger(__name__)

HANDOVER_BEATS = 4  # a change of leader eases the beat phase over one bar


@dataclass(frozen=True)
class BeatGrid:
    """A steady beat: beat number `index` falls at `time` (s), one beat every `period` s; beats whose number is a
    multiple of BEATS_PER_BAR are downbeats."""
    time: float
    index: int
    period: float

    @property
    def bpm(self) -> float:
        return 60.0 / self.period

    def at(self, t: float) -> float:
        """The (fractional) beat number at time t."""
        return self.index + (t - self.time) / self.period

    def shifted(self, seconds: float) -> "BeatGrid":
        return replace(self, time=self.time + seconds)

    def beat_state(self, t: float, confidence: float = 1.0) -> BeatState:
        """The BeatState at time t. `is_beat` stays False: a grid does not know the caller's hop."""
        beat = self.at(t)
        last = math.floor(beat)
        last_time = self.time + (last - self.index) * self.period
        bar_position = int(last % BEATS_PER_BAR)
        return BeatState(time=t, bpm=self.bpm, phase=float(beat - last), bar_position=bar_position,
                         is_beat=False, is_downbeat=False, confidence=confidence,
                         next_beats=last_time + self.period * np.arange(1, 5), last_beat=last_time)

    @classmethod
    def of(cls, state: BeatState) -> "BeatGrid":
        """The grid of the ear's BeatState: its next predicted beat follows the bar position of its last."""
        return cls(float(state.next_beats[0]), state.bar_position + 1, 60.0 / max(state.bpm, 1.0))


class ExternalClock:
    """A beat clock outside onbeat that may lead the dance's timing.

    Threading: the engine calls `hear` and then `grid` from its analysis thread with every feature row (~30 times
    a second); both must return at once (no waiting on a device or the network). `close` is called once, at the
    end. Times are host seconds (`time.perf_counter`)."""

    name: str  # what the live view shows while it leads: link, midi, osc

    def grid(self) -> BeatGrid | None:
        """The beat now, or None while the clock has nothing fresh to say (the ear leads then)."""
        raise NotImplementedError

    def hear(self, ear: BeatGrid, confidence: float) -> None:
        """The ear's grid and its confidence (0..1)."""

    def close(self) -> None:
        pass


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class Handover:
    """Follows the leading clock's grid. When the leader changes, the new grid starts shifted onto the grid shown
    so far (nearest beats matched) and the shift eases out over `beats` beats. An external clock brings its bar
    numbering at once (it knows the downbeat); the ear, taking over, keeps the numbering it is handed."""

    def __init__(self, beats: int = HANDOVER_BEATS):
        self.beats = beats
        self.leader: str | None = None
        self._shown: BeatGrid | None = None
        self._shift, self._since, self._renumber = 0.0, 0.0, 0

    @property
    def settled(self) -> bool:
        """Whether the ear's own grid is shown as it is (no shift easing out, its own bar numbering)."""
        return self.leader in (None, "ear") and self._shift == 0.0 and self._renumber == 0

    def follow(self, leader: str, grid: BeatGrid, t: float) -> BeatGrid:
        if leader != self.leader and self._shown is not None:
            ahead = grid.at(t) - self._shown.at(t)  # beats the new grid is ahead of the one shown
            whole = round(ahead)
            self._shift, self._since = (ahead - whole) * grid.period, t
            self._renumber = -whole % BEATS_PER_BAR if leader == "ear" else 0
        self.leader = leader
        weight = 1.0 - _smoothstep((t - self._since) / (self.beats * grid.period))
        if weight == 0.0:
            self._shift = 0.0
        shown = replace(grid, time=grid.time + weight * self._shift, index=grid.index + self._renumber)
        self._shown = shown
        return shown


class LinkClock(ExternalClock):
    """An Ableton Link session (see the module docstring). aalink needs an asyncio loop: it gets its own thread."""

    name = "link"

    def __init__(self, lead: bool = False, bpm: float = 120.0, quantum: int = BEATS_PER_BAR,
                 lead_confidence: float = 0.3):
        import aalink  # the clock extra
        self.lead, self.quantum, self.lead_confidence = lead, quantum, lead_confidence
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="onbeat-link", daemon=True)
        self._thread.start()

        async def join():
            return aalink.Link(bpm)

        self.link = asyncio.run_coroutine_threadsafe(join(), self._loop).result(timeout=10)
        self.link.quantum = quantum
        self.link.enabled = True
        self._aligned_at = -math.inf  # host time the session's beat was last moved onto the ear's

    @property
    def peers(self) -> int:
        return self.link.num_peers

    def _now(self) -> tuple[float, float, float]:
        """(host time, session beat, session tempo), read together."""
        before = time.perf_counter()
        beat, tempo = self.link.beat, self.link.tempo
        return 0.5 * (before + time.perf_counter()), beat, tempo

    def grid(self) -> BeatGrid | None:
        if self.lead or self.link.num_peers == 0:
            return None
        now, beat, tempo = self._now()
        period = 60.0 / tempo
        last = math.floor(beat)
        return BeatGrid(now - (beat - last) * period, last, period)

    def hear(self, ear: BeatGrid, confidence: float) -> None:
        """Leading: the session takes the ear's tempo, and its beat (bars aligned) when it has drifted > 5 ms."""
        if not self.lead or confidence < self.lead_confidence:
            return
        if abs(self.link.tempo - ear.bpm) > 0.05:
            self.link.tempo = ear.bpm
        now, beat, _ = self._now()
        drift = (ear.at(now) - beat + self.quantum / 2) % self.quantum - self.quantum / 2  # beats, bars aligned
        if abs(drift) * ear.period > 0.005 and now - self._aligned_at > self.quantum * ear.period:
            self.link.force_beat(self.link.beat + drift)
            self._aligned_at = now

    def close(self) -> None:
        self.link.enabled = False
        self.link = None  # aalink stops its threads when the Link object goes
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


class ClockPulses:
    """MIDI beat clock → beat grid: counts the 24-per-beat pulses between start/stop/continue/song position.

    The tempo and phase come from a line through the last beat's pulses that late or bunched pulses (a stalled
    reader, a late JACK cycle) do not pull (see `_line`). A pulse lost on the way shifts the beat by 1/24 until
    the next Start or Song Position: MIDI over ALSA or USB does not lose them, and a JACK server in
    synchronous mode (`jackd -S`) delays a late client's events instead of dropping them. Not thread-safe:
    `MidiClock` locks around it."""

    PULSES_PER_BEAT = 24
    STALE_SECONDS = 0.5  # no pulse for this long: the clock has gone (at 30 BPM pulses come every 83 ms)

    def __init__(self) -> None:
        self._pulses: deque[tuple[float, int]] = deque(maxlen=self.PULSES_PER_BEAT + 1)  # (host time, count)
        self._count = 0  # pulses received
        self._start: int | None = None  # pulse count of song position 0; None: the phase is not known
        self._stopped_at: int | None = None  # song position (pulses) while stopped

    def receive(self, message, at: float) -> None:
        """One MIDI message (mido's: type, and pos for song position) that arrived at host time `at`."""
        if message.type == "clock":
            self._pulses.append((at, self._count))
            self._count += 1
        elif message.type == "start":
            self._start, self._stopped_at = self._count, None  # the next pulse is the first beat's
        elif message.type == "continue" and self._stopped_at is not None:
            self._start, self._stopped_at = self._count - self._stopped_at, None
        elif message.type == "stop":
            self._stopped_at = self._count - self._start if self._start is not None else 0
        elif message.type == "songpos":  # in sixteenth notes, 6 pulses each
            position = 6 * message.pos
            if self._stopped_at is not None:
                self._stopped_at = position
            else:
                self._start = self._count - position

    def _line(self) -> tuple[float, float] | None:
        """(seconds per pulse, time of the last pulse) from the last beat's pulses, robust to pulses that come
        late or in a bunch after a stall: the median period over every pair of pulses half a beat or more apart
        (Theil-Sen), and the time that puts the earliest fifth of the pulses on the line (a pulse is never
        early)."""
        if len(self._pulses) < 3:
            return None
        times, counts = np.array(self._pulses).T
        apart = counts[None, :] - counts[:, None]
        pairs = apart >= max(len(times) // 2, 1)
        seconds_per_pulse = float(np.median((times[None, :] - times[:, None])[pairs] / apart[pairs]))
        last_time = float(np.percentile(times + (counts[-1] - counts) * seconds_per_pulse, 20))
        return seconds_per_pulse, last_time

    def grid(self, now: float, ear: BeatGrid | None = None) -> BeatGrid | None:
        """The beat grid at host time `now`; None while stopped or without pulses. Without start or song
        position the phase is taken from the `ear` grid, once."""
        line = self._line()
        if line is None or now - self._pulses[-1][0] > self.STALE_SECONDS or self._stopped_at is not None:
            return None
        seconds_per_pulse, last_time = line
        last = self._pulses[-1][1]
        if self._start is None:
            if ear is None:
                return None
            self._start = last - round(self.PULSES_PER_BEAT * ear.at(last_time))
        position = last - self._start
        beat = position // self.PULSES_PER_BEAT
        return BeatGrid(last_time - (position - beat * self.PULSES_PER_BEAT) * seconds_per_pulse, beat,
                        self.PULSES_PER_BEAT * seconds_per_pulse)


class MidiClock(ExternalClock):
    """MIDI beat clock from an input port (see the module docstring and `ClockPulses`). `port`: a name or part
    of one (None: the first input); `api`: python-rtmidi's API name ("LINUX_ALSA", "UNIX_JACK", ...; None: the
    first MIDI system that has inputs).

    Messages are read by polling on a thread, not by a callback: a Python callback would run on JACK's process
    thread and wait there for the GIL, and JACK drops the events of cycles a client misses. Each message's
    time is rebuilt from RtMidi's time stamps (deltas) plus their lowest lag behind the host clock, so a busy
    reader adds no jitter."""

    name = "midi"

    def __init__(self, port: str | None = None, api: str | None = None):
        import mido  # the clock extra; it parses the messages
        import rtmidi
        self._mido = mido
        os.environ.setdefault("JACK_NO_START_SERVER", "1")  # probing JACK must not start a server
        try:
            self._input = rtmidi.MidiIn(getattr(rtmidi, f"API_{api}") if api else rtmidi.API_UNSPECIFIED,
                                        "onbeat", queue_size_limit=4096)
            names = self._input.get_ports()
        except (AttributeError, rtmidi.SystemError) as e:
            raise OnbeatError(f"--midi-clock: no MIDI system ({e})") from None
        self.port_name = _pick_port(port, names)
        self._input.ignore_types(sysex=True, timing=False, active_sense=True)
        self._input.open_port(names.index(self.port_name))
        self._lock = threading.Lock()
        self._pulses = ClockPulses()
        self._ear: BeatGrid | None = None
        self._stamp = 0.0  # RtMidi's time: the sum of its deltas
        self._lags: deque[float] = deque(maxlen=256)  # recent host times minus it
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="onbeat-midi-clock", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.wait(0.001):
            while (event := self._input.get_message()) is not None:
                data, delta = event
                self._stamp += delta
                self._lags.append(time.perf_counter() - self._stamp)
                try:
                    message = self._mido.Message.from_bytes(data)
                except ValueError:
                    continue  # not a whole MIDI message: ignored, like any other junk
                with self._lock:
                    self._pulses.receive(message, self._stamp + min(self._lags))

    def hear(self, ear: BeatGrid, confidence: float) -> None:
        with self._lock:
            self._ear = ear

    def grid(self) -> BeatGrid | None:
        with self._lock:
            return self._pulses.grid(time.perf_counter(), self._ear)

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=2)
        self._input.close_port()


def _pick_port(port: str | None, names: list[str]) -> str:
    if not names:
        raise OnbeatError("--midi-clock: no MIDI input ports (connect the device, or start the software that "
                          "sends the clock)")
    if port is None or port == "":
        return names[0]
    found = [name for name in names if port.lower() in name.lower()]
    if not found:
        raise OnbeatError(f"--midi-clock {port!r}: no such MIDI input; available: {'; '.join(names)}")
    return found[0]


class OscClock(ExternalClock):
    """Tempo and beats from OSC control messages (see the module docstring); the control server calls
    `set_tempo` and `tap` with the host time each message arrived."""

    name = "osc"
    TAPS = 4  # tap tempo: the median interval of the last taps

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bpm: float | None = None  # from /onbeat/tempo
        self._anchor: tuple[float, int] | None = None  # (host time, beat number) of the last beat
        self._taps: deque[float] = deque(maxlen=self.TAPS + 1)
        self._ear: BeatGrid | None = None

    def set_tempo(self, bpm: float, at: float) -> None:
        """A tempo in BPM; 0 gives the beat back to the ear."""
        with self._lock:
            if bpm == 0:
                self._bpm, self._anchor = None, None
                self._taps.clear()
                return
            if self._anchor is None and self._ear is not None:  # no beat yet: keep the ear's phase
                beat = round(self._ear.at(at))
                self._anchor = (self._ear.time + (beat - self._ear.index) * self._ear.period, beat)
            self._bpm = bpm

    def tap(self, at: float, beat_in_bar: int | None = None) -> None:
        """A beat now (beat_in_bar 0 = a downbeat; None: the next beat after the last one)."""
        with self._lock:
            if self._taps and at - self._taps[-1] > 2.0:
                self._taps.clear()  # a pause: a new run of taps
            self._taps.append(at)
            period = self._period()
            if beat_in_bar is None:
                beat = 0 if self._anchor is None or period is None else \
                    self._anchor[1] + max(1, round((at - self._anchor[0]) / period))
            else:
                beat = beat_in_bar
            self._anchor = (at, beat)

    def _period(self) -> float | None:
        if self._bpm is not None:
            return 60.0 / self._bpm
        if len(self._taps) >= 2:
            return float(np.median(np.diff(self._taps)))
        return None

    def hear(self, ear: BeatGrid, confidence: float) -> None:
        with self._lock:
            self._ear = ear

    def grid(self) -> BeatGrid | None:
        with self._lock:
            period = self._period()
            if period is None or self._anchor is None:
                return None
            return BeatGrid(self._anchor[0], self._anchor[1], period)
