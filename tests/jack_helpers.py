"""A private JACK server for tests that capture real audio through sounddevice/PortAudio.

`jack_server` (a pytest fixture in conftest.py) starts the private server of `onbeat.ear.jack` (dummy backend,
unique name, own process group) and stops it at teardown. PortAudio picks the JACK server when it initialises (reading
JACK_DEFAULT_SERVER), so the capture itself runs in a fresh Python process: `python tests/jack_helpers.py MODE`,
with MODE one of
  capture SECONDS OUT.npy   capture from the JACK device into OUT.npy, print a JSON summary
  until-lost                capture until the source reports the device lost, print a JSON summary
  reconnect                 capture until lost, print "lost", reopen until the server is back, capture 0.5 s
  starve SECONDS BUFFER_S   capture with a BUFFER_S ring and stall the reader once for twice its length
  engine SECONDS            run the live engine (groove) on the JACK input, print frame and source counts
  play FILE                 play FILE to the JACK outputs, print a JSON summary
  probe                     print the error for a missing device, then open JACK at 44.1 kHz in stereo
"""
import json
import subprocess
import sys
import time
from pathlib import Path

from log_capture import LogLines

from onbeat.ear.jack import JackServer

SAMPLE_RATE = 48000
HERE = Path(__file__).resolve()


class CaptureJackServer(JackServer):
    """The shared private server, plus the test-side capture processes it drives."""

    def run_capture(self, *args):
        """Start `python jack_helpers.py args...` against this server (returns the Popen)."""
        return self.spawn([sys.executable, str(HERE), *map(str, args)], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # killed at teardown if a test fails


def summary_of(process, timeout=30):
    """The JSON summary a `run_capture` process prints last, once it has ended cleanly."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0 and "Traceback" not in err, err
    return json.loads(out.strip().splitlines()[-1])


# --- the capture side (a separate process, so PortAudio sees the server) -----------------------------------

def _summary(source, frames):
    return {"channels": source.channels, "sample_rate": source.sample_rate, "frames": frames, "lost": source.lost,
            "message": source.message, "xruns": source.xruns, "dropped": source.ring.dropped,
            "device": source.device_name}


def main(mode, *args):
    import numpy as np

    from onbeat.core.errors import OnbeatError
    from onbeat.ear.sources import DeviceSource, FileSource

    if mode == "probe":   # a device that does not exist, then a rate the server does not run at, in stereo
        try:
            DeviceSource(device="no such device")
        except OnbeatError as e:
            print(e)
        with DeviceSource(device="JACK", sample_rate=44100, channels=2) as source:
            block = next(source.blocks())
            print(json.dumps({**_summary(source, len(block.samples)), "channels": block.samples.shape[1]}))
        return
    if mode == "play":      # play a file to the JACK outputs: the output stream sets the pace
        started = time.monotonic()
        with FileSource(args[0], play=True, output_device="JACK") as source:
            frames = sum(len(block.samples) for block in source.blocks())
            print(json.dumps({"playing": source.playing, "message": source.message, "frames": frames,
                              "seconds": time.monotonic() - started}))
        return
    if mode == "engine":   # the live engine on the JACK input for SECONDS; the test kills and restarts jackd
        from onbeat.stream.engine import Engine
        from onbeat.stream.sinks import Sink
        frames = []
        with DeviceSource(device="JACK", sample_rate=SAMPLE_RATE, channels=1) as source:
            sink = type("Times", (Sink,), {"send": lambda self, frame: frames.append(time.monotonic())})()
            engine = Engine(source, {}, [sink])
            print("capturing", flush=True)
            with LogLines() as captured:
                stats = engine.run(float(args[0]))
            logs = captured.lines
            print(json.dumps({**_summary(source, source.ring.written), "sent": stats.frames, "dropped": stats.dropped,
                              "max_gap": float(np.diff(frames).max()), "logs": logs}), flush=True)
        return
    buffer_s = float(args[1]) if mode == "starve" else 2.0
    with DeviceSource(device="JACK", sample_rate=SAMPLE_RATE, channels=1, buffer_s=buffer_s) as source:
        print("capturing", flush=True)   # the test connects its ports or kills the server now
        captured, frames = [], 0
        deadline = time.monotonic() + 15   # a hung source must not hang the test
        times, reopened = [], 0
        while True:
            for block in source.blocks():
                captured.append(block.samples)
                times.append((block.time, len(block.samples)))
                frames += len(block.samples)
                if mode == "starve" and len(times) == 5:
                    time.sleep(2 * buffer_s)   # the reader stalls: the ring overflows
                if mode in ("capture", "starve") and frames >= float(args[0]) * source.sample_rate:
                    break
                if mode == "reconnect" and reopened and frames >= reopened + 0.5 * source.sample_rate:
                    break
                if time.monotonic() > deadline:
                    break
            if mode != "reconnect" or not source.lost or reopened or time.monotonic() > deadline:
                break
            print("lost", flush=True)   # the test restarts the server now
            while time.monotonic() < deadline:
                try:
                    source.reopen()
                    reopened = frames
                    break
                except OnbeatError:
                    time.sleep(0.5)
        if mode in ("starve", "reconnect"):   # frames between each block's start and the previous one's end
            starts = np.array(times)
            gaps = np.round(starts[1:, 0] * source.sample_rate - starts[:-1, 0] * source.sample_rate - starts[:-1, 1])
            print(json.dumps({**_summary(source, frames), "reopened_at": reopened, "min_gap": int(gaps.min()),
                              "max_gap": int(gaps.max()), "end_time": float(starts[-1, 0])}), flush=True)
            return
        if mode == "capture":
            np.save(args[1], np.concatenate(captured)[:, 0])
        print(json.dumps(_summary(source, frames)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
