"""`onbeat bench live` and `onbeat bench soak`: the live engine measured from the outside.

Both run the full pipeline (synthetic drum source → features and beat tracking → choreographer → output
scheduler → VMC + onbeat OSC over UDP) into a real OSC receiver in another process, which stamps every
datagram's arrival time on the wall clock.
- live: frames sent/received, gaps, output rate, inter-frame jitter of the arrivals (p50/p99/max), late and
  dropped frames, and the beat events' arrival times against the synthetic track's true beats after lock.
  With `--jack` the sound instead comes from `jack_metro` clicks through a private JACK server (dummy backend)
  and a real PortAudio capture: audio-to-OSC latency = beat event arrival minus the moment each click's first
  sample reached onbeat (plus one JACK period of input buffering, reported apart).
- soak: a long run; frames sent/received, late frames, max jitter, and resident memory at start and end.
"""
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.stream.dashboard import plain_line, snapshot
from onbeat.stream.sinks import MessageTemplate

# --- the receiver ------------------------------------------------------------------------------------------------

def _receive(ready, results, stop):
    """Receiver process: records (arrival wall time, values) of frame and beat messages until `stop` is set. It
    runs at the engine's real-time priority where the OS allows it: at normal priority, on a busy machine, the
    arrival times it stamps measure its own wake-ups (p99 7.5 ms against 0.7 ms, the same run otherwise)."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    from onbeat.stream.engine import OUTPUT_PRIORITY, real_time_priority
    real_time_priority(OUTPUT_PRIORITY, quiet=True)
    frames, beats, counts = [], [], {"vmc": 0, "datagrams": 0}
    dispatcher = Dispatcher()
    dispatcher.map("/onbeat/frame", lambda _, t, index: frames.append((time.time(), t, index)))
    dispatcher.map("/onbeat/beat", lambda _, t, bpm, *rest: beats.append((time.time(), t, bpm)))
    dispatcher.map("/VMC/Ext/T", lambda *_: counts.__setitem__("vmc", counts["vmc"] + 1))
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # no drops if we are descheduled
    server.timeout = 0.1
    ready.put(server.server_address[1])
    while not stop.is_set():
        server.handle_request()
    server.server_close()
    results.put({"frames": np.array(frames, dtype=np.float64).reshape(-1, 3),
                 "beats": np.array(beats, dtype=np.float64).reshape(-1, 3), "vmc_frames": counts["vmc"]})


class OscReceiver:
    """A python-osc server in another process; `stop()` returns what it received."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        ready, self._results, self._stop = context.Queue(), context.Queue(), context.Event()
        self._process = context.Process(target=_receive, args=(ready, self._results, self._stop), daemon=True)
        self._process.start()
        self.port = ready.get(timeout=30)

    def stop(self):
        time.sleep(0.2)  # let the last datagrams arrive
        self._stop.set()
        results = self._results.get(timeout=30)
        self._process.join(timeout=10)
        return results


# --- the attacker (bench soak --attack) -------------------------------------------------------------------------

PROBE_HOST = "127.0.0.2"  # the honest controller's address: another source than the attacker's 127.0.0.1
POOL = 3000  # grammar packets the attacker cycles through; 1 % is made anew (fresh time tags) every round


def _attack(port, ready, results, stop, seed):
    """Attacker process: floods 127.0.0.1:`port` with grammar-built OSC as fast as it can (at nice 10), and once
    a second sends an honest `/onbeat/energy` from `PROBE_HOST`, alternating two values."""
    import os

    from onbeat.evaluation.fuzz_grammar import RandomChoices, flood_packet
    os.nice(10)
    choices = RandomChoices(seed)
    pool = [flood_packet(choices, time.time()) for _ in range(POOL)]
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((PROBE_HOST, 0))
    counts = {"datagrams": 0, "bytes": 0, "probes": 0, "refresh": 0}
    values = (0.75, 1.25)
    ready.put(True)
    next_probe = time.monotonic()
    while not stop.is_set():
        for packet in pool:
            try:
                flood.sendto(packet, ("127.0.0.1", port))
                counts["datagrams"] += 1
                counts["bytes"] += len(packet)
            except OSError:
                pass  # e.g. ENOBUFS: the flood outruns the kernel; keep going
            if time.monotonic() >= next_probe:
                probe.sendto(MessageTemplate("/onbeat/energy", "f").encode(values[counts["probes"] % 2]),
                             ("127.0.0.1", port))
                counts["probes"] += 1
                next_probe += 1.0
            if stop.is_set():
                break
        for i in range(counts["refresh"], counts["refresh"] + POOL // 100):
            pool[i % POOL] = flood_packet(choices, time.time())
        counts["refresh"] = (counts["refresh"] + POOL // 100) % POOL
    results.put(counts)


class Attacker:
    """`_attack` in another process; `stop()` returns what it sent."""

    def __init__(self, port, seed=0):
        context = multiprocessing.get_context("spawn")
        ready, self._results, self._stop = context.Queue(), context.Queue(), context.Event()
        self._process = context.Process(target=_attack, args=(port, ready, self._results, self._stop, seed),
                                        daemon=True)
        self.started = time.monotonic()
        self._process.start()
        ready.get(timeout=60)

    def stop(self):
        self._stop.set()
        counts = self._results.get(timeout=30)
        self._process.join(timeout=10)
        counts["seconds"] = time.monotonic() - self.started
        return counts


# --- measurements --------------------------------------------------------------------------------------------------

def frame_report(frames, rate):
    """Counts and jitter of received /onbeat/frame messages: jitter = arrival interval - 1/rate (ms)."""
    if len(frames) < 2:
        return {"received": len(frames), "missing": 0, "rate": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    arrival, index = frames[:, 0], frames[:, 2].astype(int)
    order = np.argsort(index)
    deviation = 1000.0 * np.abs(np.diff(arrival[order]) / np.maximum(np.diff(index[order]), 1) - 1.0 / rate)
    return {"received": len(frames), "missing": int(index.max() + 1 - len(np.unique(index))),  # indices start at 0
            "rate": (len(frames) - 1) / max(arrival.max() - arrival.min(), 1e-9),
            "p50": float(np.percentile(deviation, 50)), "p99": float(np.percentile(deviation, 99)),
            "max": float(deviation.max())}


def beat_errors(arrival_times, true_beats):
    """Signed error (ms) of each beat event against the nearest true beat."""
    true_beats = np.asarray(true_beats)
    nearest = true_beats[np.abs(true_beats[None, :] - np.asarray(arrival_times)[:, None]).argmin(axis=1)]
    return 1000.0 * (np.asarray(arrival_times) - nearest)


def after_lock(beats, settle=2.0):
    """Arrival wall times of the received beat events from `settle` s after the first (the tracker has locked)."""
    return beats[beats[:, 1] >= beats[0, 1] + settle, 0] if len(beats) else np.zeros(0)


def thread_cpu_seconds(native_id):
    """CPU time (user + system, s) a thread of this process has used so far: /proc on Linux, else NaN."""
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def rss_mb():
    """Resident memory of this process (MB): psutil when installed, else /proc/self/status."""
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2 ** 20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- commands ------------------------------------------------------------------------------------------------------

def run_pipeline(seconds, bpm=120.0, model="default", rate=60.0, progress=None, source=None, extra_sinks=(),
                 attack=False):
    """Run the full pipeline for `seconds` (on the synthetic track unless `source` is given) into a receiver
    process; (engine, source, received). `attack`: the control input listens, and an `Attacker` floods it;
    `received["attack"]` says what it sent."""
    from onbeat.choreographers.library import Library, first_choice
    from onbeat.ear.sources import SyntheticSource
    from onbeat.stream.control import Controls, ControlServer
    from onbeat.stream.engine import Engine
    from onbeat.stream.sinks import OnbeatOscSink, VmcSink
    library = Library()
    model = first_choice(library, model)
    receiver = OscReceiver()
    sinks = [OnbeatOscSink("127.0.0.1", receiver.port), VmcSink("127.0.0.1", receiver.port)]
    source = source or SyntheticSource(bpm=bpm)
    controls = Controls(model=model)
    engine = Engine(source, {model: library.load(model)}, [*sinks, *extra_sinks], controls=controls, rate=rate,
                    library=library)
    control = ControlServer(controls, "127.0.0.1", 0) if attack else None
    attacker = Attacker(control.address[1]) if attack else None
    reporter = threading.Thread(target=progress, args=(engine,), daemon=True) if progress else None
    try:
        if reporter:
            reporter.start()
        engine.run(seconds)
    finally:
        attack_counts = attacker.stop() if attacker else None
        if control:
            attack_counts["control_cpu_s"] = thread_cpu_seconds(control.thread_id)  # while the thread exists
            control.close()
            attack_counts["probes_applied"] = control.input.applied_from.get(PROBE_HOST, 0)
        received = receiver.stop()
        for sink in sinks:
            sink.close()
    received["attack"] = attack_counts
    return engine, source, received


def report_output(engine, received, rate):
    stats = engine.stats
    report = frame_report(received["frames"], rate)
    generation = np.array(stats.generation_ms)
    slice_frames = engine.choreographers[engine.controls.model].slice_frames
    print(f"model: {engine.controls.model}   generation per {slice_frames}-frame slice (last {len(generation)}): "
          f"median {np.median(generation):.1f} ms, mean {generation.mean():.1f} ms, "
          f"p99 {np.percentile(generation, 99):.1f} ms, max {generation.max():.1f} ms")
    print(f"frames: sent {stats.frames}, received {report['received']} (+{received['vmc_frames']} VMC), "
          f"missing {report['missing']}, rate {report['rate']:.2f} Hz")
    print(f"inter-frame jitter at the receiver: p50 {report['p50']:.2f} ms, p99 {report['p99']:.2f} ms, "
          f"max {report['max']:.2f} ms")
    print(f"output clock: late {stats.late}, dropped {stats.dropped}, held {stats.held}, "
          f"send lateness p99 {stats.jitter_ms(99):.2f} ms, max {1000 * stats.max_jitter:.2f} ms")


class ClickTimer:
    """A sink that notes, on the wall clock, when the first sample of each click reached the engine."""

    def __init__(self, threshold=0.05, gap=0.1):
        self.threshold, self.gap = threshold, gap
        self.clicks = []
        self._last = -np.inf

    def send_audio(self, block):
        arrived = time.time()  # the block arrives whole, after its last sample
        loud = np.flatnonzero(np.abs(block.samples[:, 0]) > self.threshold)
        for i in loud:
            at = arrived - (len(block.samples) - i) / block.sample_rate
            if at - self._last > self.gap:
                self.clicks.append(at)
            self._last = at

    def send(self, frame):
        pass

    def send_beat(self, state):
        pass

    def close(self):
        pass


def jack_latency(args, sample_rate=48000, period=256):
    """Clicks from jack_metro through a private JACK server into the engine; audio-to-OSC latency per click."""
    import os

    from onbeat.ear.jack import JackServer
    server = JackServer("onbeat-bench", sample_rate, period)
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_AUDIO_RESERVATION="1")  # the capture child's server
    try:
        server.spawn(["jack_metro", "-n", "metro", "-b", f"{args.bpm:g}", "-f", "1000", "-D", "20"])
        from onbeat.ear.sources import DeviceSource
        source = DeviceSource(device="JACK", sample_rate=sample_rate, channels=1)
        metro = server.wait_for_port(lambda port: port.startswith("metro:"))
        capture = server.wait_for_port(lambda port: port.startswith("PortAudio") and ":in" in port)
        server.connect(metro, capture)
        timer = ClickTimer()
        engine, _, received = run_pipeline(args.seconds, args.bpm, args.model, args.rate, source=source,
                                           extra_sinks=[timer])
    finally:
        server.stop()
    report_output(engine, received, args.rate)
    beats = received["beats"]
    clicks = np.array(timer.clicks)
    arrivals = after_lock(beats)
    arrivals = arrivals[arrivals <= clicks.max() + 0.1] if len(clicks) else arrivals  # clicks heard
    if len(clicks) < 4 or len(arrivals) == 0:
        print(f"JACK: {len(clicks)} clicks heard, {len(beats)} beat events: too few to measure latency")
        return 1
    latency = beat_errors(arrivals, clicks)
    print(f"JACK clicks: {len(clicks)} heard; {len(latency)} beat events from 2 s after lock; audio-to-OSC "
          f"latency (event arrival - click reaching onbeat): median {np.median(latency):+.1f} ms, p95 "
          f"{np.percentile(latency, 95):+.1f} ms, max {latency.max():+.1f} ms; "
          f"plus {1000 * period / sample_rate:.1f} ms "
          f"of JACK input buffering (negative = the event went out before the click, on the predicted beat)")
    return 0


def soak(args):
    if not args.minutes > 0:
        raise OnbeatError(f"--minutes {args.minutes}: must be positive")
    rss = {"before": rss_mb()}
    load_before = os.getloadavg()

    def progress(engine):
        while not engine.running:
            time.sleep(0.1)
        time.sleep(min(10.0, args.minutes * 60 / 4))  # warmed up: every buffer and window allocated
        rss["start"] = rss_mb()
        while engine.running:
            time.sleep(min(60.0, args.minutes * 60 / 2))
            print(plain_line(snapshot(engine)) + f" rss={rss_mb():.1f}MB", flush=True)

    engine, _, received = run_pipeline(args.minutes * 60, args.bpm, args.model, args.rate, progress,
                                       attack=args.attack)
    stats = engine.stats
    report = frame_report(received["frames"], args.rate)
    rss["end"] = rss_mb()
    print(f"soak {args.minutes:g} min: frames sent {stats.frames}, received {report['received']}, missing "
          f"{report['missing']}, late {stats.late}, dropped {stats.dropped}, held {stats.held}, bad slices "
          f"{stats.bad_slices}, max send lateness {1000 * stats.max_jitter:.2f} ms, receiver jitter p99 "
          f"{report['p99']:.2f} ms max {report['max']:.2f} ms")
    start = rss.get("start", rss["before"])
    print(f"RSS: before start {rss['before']:.1f} MB, after warm-up {start:.1f} MB, end {rss['end']:.1f} MB "
          f"(growth {rss['end'] - start:+.1f} MB)")
    if received["attack"]:
        attack, controls = received["attack"], engine.controls
        print(f"attack: {attack['datagrams']} datagrams ({attack['datagrams'] / attack['seconds']:.0f}/s, "
              f"{attack['bytes'] / attack['seconds'] / 2 ** 20:.1f} MB/s) of grammar-built OSC at nice 10; control "
              f"input: applied {controls.received}, malformed {controls.malformed}, dropped {controls.dropped} "
              f"(over budget or by the kernel); honest probes from {PROBE_HOST}: sent {attack['probes']}, applied "
              f"{attack['probes_applied']}; control thread CPU {attack['control_cpu_s']:.1f} s "
              f"({100 * attack['control_cpu_s'] / attack['seconds']:.1f} % of a core)")
    print("load average (1, 5, 15 min): before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f} on {} cores".format(
        *load_before, *os.getloadavg(), os.cpu_count()))
    return 0
