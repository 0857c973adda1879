"""The live engine following real external clocks, run in a separate process and measured there.

Ableton Link discovers peers by UDP multicast on every interface, so Link runs only inside a private network
namespace that has nothing but a loopback (`in_private_network` builds the command; this script refuses to
start Link anywhere else). MIDI clock comes from a JACK MIDI port on the private dummy JACK server of
`onbeat.ear.jack` (the ALSA sequencer may be absent). `python tests/clock_helpers.py MODE` prints a JSON summary:
  link-follow   a "DJ" Link peer at 128 BPM; onbeat (hearing a 120 BPM track) joins, follows, the DJ goes to 140
                BPM, then leaves: beat error vs the DJ's grid, tempo follow time, the handover back to the ear
  link-lead     onbeat leads a Link session (`--link-lead`): the peer's tempo and beats vs onbeat's own
  midi-send BPM...     MIDI clock from a JACK MIDI port (a separate process, as a drum machine would be): start
                       at the host time read from stdin, 24 pulses a beat, each BPM for 5 s in turn
  midi-follow SECONDS  the engine following that clock
"""
import json
import math
import socket
import sys
import threading
import time

import numpy as np

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.ear.sources import SyntheticSource
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import Sink

NAMESPACE_SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def in_private_network(*args):
    """The command that runs this script with `args` in a new network namespace holding only a loopback."""
    return ["unshare", "-n", "sh", "-c", f'{NAMESPACE_SETUP} && exec "$0" "$@"', sys.executable, __file__, *args]


def require_private_network():
    interfaces = [name for _, name in socket.if_nameindex()]
    if interfaces != ["lo"]:
        raise SystemExit(f"refusing to start Ableton Link: interfaces {interfaces}, not a private loopback only")


class Recorder(Sink):
    """A sink keeping beat events (with the host time each went out) and, per frame, the output time, pelvis
    height, leading clock and the tempo the dance follows."""

    def __init__(self):
        self.engine, self.frames, self.beats, self.beats_sent_at = None, [], [], []

    def send(self, frame):
        beat = self.engine.beat
        self.frames.append((frame.time, float(frame.root_translation[1]), self.engine.leader,
                            beat.bpm if beat is not None else 0.0))

    def send_beat(self, state):
        self.beats.append((state.time, state.bpm, state.bar_position))
        self.beats_sent_at.append(time.perf_counter())


def run_engine(seconds, clocks, bpm=120.0, events=()):
    """Run the groove engine on the synthetic track at `bpm` with `clocks`; `events` are (output time, action)
    run on their own thread. Returns (engine, recorder, {action name: host time it ran})."""
    recorder = Recorder()
    engine = Engine(SyntheticSource(bpm=bpm), {"default": GrooveChoreographer()}, [recorder], clocks=clocks)
    recorder.engine = engine
    done = {}

    def timeline():
        while engine._t0 is None:
            time.sleep(0.001)
        for at, action in events:
            while engine.now() < at:
                time.sleep(0.001)
            action()
            done[action.__name__] = time.perf_counter()

    threading.Thread(target=timeline, daemon=True).start()
    engine.run(seconds)
    return engine, recorder, done


class Sampled:
    """A Link peer's beat timeline, sampled every ~2 ms on a thread: beat number at any host time."""

    def __init__(self, link):
        self.link, self.samples, self._stop = link, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.002):
            before = time.perf_counter()
            beat, tempo = self.link.beat, self.link.tempo
            self.samples.append((0.5 * (before + time.perf_counter()), beat, tempo))

    def stop(self):
        self._stop.set()
        self._thread.join()

    def beat_at(self, host):
        """(beat number, tempo) at host time from the last sample before it."""
        times = np.array([s[0] for s in self.samples])
        i = max(int(np.searchsorted(times, host)) - 1, 0)
        t, beat, tempo = self.samples[i]
        return beat + (host - t) * tempo / 60.0, tempo


def grid_errors_ms(beat_hosts, beat_at):
    """Signed distance (ms) of each host time from the nearest whole beat of `beat_at`."""
    errors = []
    for host in beat_hosts:
        beat, tempo = beat_at(host)
        errors.append(1000.0 * (beat - round(beat)) * 60.0 / tempo)
    return np.array(errors)


def stats_ms(errors):
    magnitude = np.abs(errors)
    return {"n": int(len(errors)), "median": float(np.median(magnitude)) if len(errors) else None,
            "p95": float(np.percentile(magnitude, 95)) if len(errors) else None,
            "max": float(magnitude.max()) if len(errors) else None}


def bounce_phase_spread(frames, beat_at, t0, start, end):
    """Circular spread (in beats, 0 = locked) of the phase of the groove's lowest pelvis point in each beat."""
    times = np.array([f[0] for f in frames])
    heights = np.array([f[1] for f in frames])
    keep = (times >= start) & (times < end)
    times, heights = times[keep], heights[keep]
    beats = np.array([beat_at(t + t0)[0] for t in times])
    phases = []
    for k in range(math.ceil(beats.min()), math.floor(beats.max())):
        inside = (beats >= k) & (beats < k + 1)
        if inside.sum() > 5:
            phases.append(beats[inside][np.argmin(heights[inside])] - k)
    angles = 2 * np.pi * np.array(phases)
    resultant = abs(np.mean(np.exp(1j * angles)))
    return float(np.sqrt(-2 * np.log(max(resultant, 1e-9))) / (2 * np.pi)), len(phases)


def link_follow():
    from onbeat.ear.clocks import LinkClock
    require_private_network()
    dj = LinkClock(bpm=128.0)
    sampled = Sampled(dj.link)
    onbeat = LinkClock()

    def tempo_change():
        dj.link.tempo = 140.0

    def dj_leaves():
        dj.link.enabled = False

    engine, rec, done = run_engine(14.0, [onbeat], bpm=120.0, events=[(7.0, tempo_change), (11.0, dj_leaves)])
    sampled.stop()
    t0 = engine._t0
    leaders = [(t, leader) for t, _, leader, _ in rec.frames]
    joined = next(t for t, leader in leaders if leader == "link")
    change, left = done["tempo_change"] - t0, done["dj_leaves"] - t0
    settled = joined + 4 * 60.0 / 128.0 + 0.5  # after the one-bar handover
    beats = np.array(rec.beats)
    in_steady = (beats[:, 0] > settled) & (beats[:, 0] < change)
    steady = beats[in_steady]
    after_change = beats[(beats[:, 0] > change) & (beats[:, 0] < left)]
    errors_steady = grid_errors_ms(steady[:, 0] + t0, sampled.beat_at)
    # when the beat messages went out: with the output frame nearest each beat (60 Hz: up to 8.3 ms early)
    errors_sent = grid_errors_ms(np.array(rec.beats_sent_at)[in_steady], sampled.beat_at)
    errors_after = grid_errors_ms(after_change[:, 0] + t0, sampled.beat_at)
    tempo_followed = next((t for t, _, _, bpm in rec.frames if t > change and abs(bpm - 140.0) < 0.01), None)
    handed_back = next((t for t, leader in leaders if t > left and leader == "ear"), None)
    around_leave = beats[(beats[:, 0] > left - 2.0) & (beats[:, 0] < left + 4.0), 0]
    intervals = np.diff(around_leave)
    spread, counted = bounce_phase_spread(rec.frames, sampled.beat_at, t0, settled, change)
    onbeat.close()
    dj.close()
    print(json.dumps({
        "join_s": joined, "steady": stats_ms(errors_steady), "steady_signed_median": float(np.median(errors_steady)),
        "steady_sent_at": stats_ms(errors_sent), "steady_sent_at_signed_median": float(np.median(errors_sent)),
        "tempo_change_at": change, "dance_tempo_followed_after_s": tempo_followed - change if tempo_followed else None,
        "first_beat_after_change_s": float(after_change[0, 0] - change), "after_change": stats_ms(errors_after),
        "bpm_after_change": float(after_change[-1, 1]) if len(after_change) else None,
        "left_at": left, "ear_leads_after_s": handed_back - left if handed_back else None,
        "intervals_around_leave": [float(x) for x in intervals],
        "final_leader": leaders[-1][1], "final_bpm": float(beats[-1, 1]),
        "bounce_phase_spread_beats": spread, "bounce_beats": counted,
        "downbeats_on_link_bars": bool(all(int(round(sampled.beat_at(b[0] + t0)[0])) % 4 == b[2] for b in steady)),
    }))


def link_lead():
    from onbeat.ear.clocks import LinkClock
    require_private_network()
    lights = LinkClock(bpm=90.0)  # a peer that follows the session, e.g. a lighting desk
    sampled = Sampled(lights.link)
    onbeat = LinkClock(lead=True)
    engine, rec, _ = run_engine(12.0, [onbeat], bpm=120.0)
    sampled.stop()
    beats = np.array(rec.beats)
    late = beats[beats[:, 0] > 8.0]
    errors = grid_errors_ms(late[:, 0] + engine._t0, sampled.beat_at)
    onbeat.close()
    lights.close()
    print(json.dumps({"peer_tempo": sampled.samples[-1][2], "onbeat_bpm": float(late[-1, 1]),
                      "leaders": sorted({f[2] for f in rec.frames}), "beats": stats_ms(errors)}))


def midi_send(*bpms, segment=5.0):
    """MIDI clock from a JACK MIDI port "clock-out": once a start time (host seconds) comes on stdin, start
    then, then 24 pulses a beat for `segment` seconds at each BPM in turn, then stop. Prints the host time of
    every beat's pulse."""
    import rtmidi
    out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="onbeat-test-sender")
    out.open_virtual_port("clock-out")
    start_at = float(sys.stdin.readline())
    beats, pulse, next_pulse = [], 0, start_at
    while time.perf_counter() < start_at - 0.05:
        time.sleep(0.01)
    out.send_message([0xFA])  # start: the next pulse is the first beat's
    for bpm in bpms:
        for _ in range(int(round(segment * bpm / 60.0)) * 24):
            while time.perf_counter() < next_pulse - 0.001:
                time.sleep(0.0005)
            while time.perf_counter() < next_pulse:
                pass
            out.send_message([0xF8])
            if pulse % 24 == 0:
                beats.append((time.perf_counter(), bpm))
            pulse += 1
            next_pulse += 60.0 / bpm / 24
    out.send_message([0xFC])  # stop
    time.sleep(0.2)
    out.close_port()
    print(json.dumps({"beats": beats}))


def midi_follow(seconds):
    """The engine following the MIDI clock of "clock-out" for `seconds` (says "listening" once it runs);
    prints its beat events in host time."""
    from onbeat.ear.clocks import MidiClock
    clock = MidiClock("clock-out", api="UNIX_JACK")

    def listening():
        print("listening", flush=True)

    engine, rec, _ = run_engine(float(seconds), [clock], bpm=100.0, events=[(0.5, listening)])
    clock.close()
    print(json.dumps({"port": clock.port_name, "beats": [(t + engine._t0, bpm, bar) for t, bpm, bar in rec.beats],
                      "leaders": [(t + engine._t0, leader) for t, _, leader, _ in rec.frames]}))


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    {"link-follow": link_follow, "link-lead": link_lead, "midi-send": lambda: midi_send(*map(float, rest)),
     "midi-follow": lambda: midi_follow(*rest)}[mode]()
