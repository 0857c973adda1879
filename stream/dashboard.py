"""The live terminal view: on a terminal a panel redrawn in place (rich's Live display) with every log line printed
above it; otherwise (`--quiet`, pipes, CI) a plain status line every few seconds.

What the numbers mean is said on the panel itself (`FIELDS`), so a first-time user needs no manual."""
import threading

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from onbeat.stream.engine import BEAT_EVENT_CONFIDENCE

# The status fields in plain words (shown under the live panel, and in the README).
FIELDS = {
    "gen": "milliseconds the model takes for one slice of dance (it must stay well under the slice's length)",
    "q": "quality: the share of the model's full work per slice; it drops when the model falls behind",
    "late": "frames sent more than a quarter period after their time (the machine was busy)",
    "dropped": "frames skipped because the output clock woke up a whole period late; the avatar skips ahead",
    "held": "frames that repeated the last pose because the next slice was not ready",
    "jitter": "how late frames leave, 99th percentile; under 2-3 ms looks smooth",
    "clock": "who sets the beat: ear (onbeat hears it), link (Ableton Link), midi (MIDI clock), osc (/onbeat/tempo)",
}


def snapshot(engine):
    """The numbers worth watching, as a dict (also what `--quiet` logs)."""
    stats, beat = engine.stats, engine.beat
    return {
        "time": engine.now(),
        "listening": beat is None or beat.confidence < BEAT_EVENT_CONFIDENCE,
        "bpm": beat.bpm if beat else 0.0,
        "phase": beat.phase if beat else 0.0,
        "beat_in_bar": beat.bar_position if beat else 0,
        "confidence": beat.confidence if beat else 0.0,
        "clock": engine.leader,
        "mode": "idle" if engine.silent else engine.controls.model,
        "style": engine.controls.style or None,
        "quality": engine.quality_level,
        "generation_ms": float(np.median(stats.generation_ms)) if stats.generation_ms else 0.0,
        "frames": stats.frames, "late": stats.late, "dropped": stats.dropped, "held": stats.held,
        "bad_slices": stats.bad_slices, "jitter_p99_ms": stats.jitter_ms(99), "beats": stats.beats_sent,
        "sinks": [sink.status for sink in engine.sinks],
        "control_errors": engine.controls.malformed,
    }


def _tempo(s):
    return "listening (locking onto the beat)" if s["listening"] else f"{s['bpm']:.1f} BPM"


def plain_line(s):
    return (f"t={s['time']:.0f}s tempo={_tempo(s)} clock={s['clock']} conf={s['confidence']:.2f} mode={s['mode']} "
            f"gen={s['generation_ms']:.1f}ms q={s['quality']:.2f} frames={s['frames']} late={s['late']} "
            f"dropped={s['dropped']} held={s['held']} nan={s['bad_slices']} jitter_p99={s['jitter_p99_ms']:.2f}ms "
            f"beats={s['beats']} | " + "; ".join(s["sinks"]))


def panel(s, width=32):
    """The multi-line terminal view."""
    filled = int(s["phase"] * width)
    beats = "".join("■" if i == s["beat_in_bar"] else "□" for i in range(4))
    tempo = (f"{_tempo(s)}  {beats}  [{'#' * filled}{'.' * (width - filled)}]" if not s["listening"]
             else _tempo(s))
    return "\n".join([
        f"onbeat  {s['time']:7.1f} s   dancing {s['mode']:<10} quality {s['quality']:.2f}",
        f"{tempo}   clock {s['clock']:<4}   confidence {s['confidence']:.2f}",
        f"generation {s['generation_ms']:6.1f} ms/slice   bad slices {s['bad_slices']}   control errors "
        f"{s['control_errors']}",
        f"frames {s['frames']}   late {s['late']}   dropped {s['dropped']}   held {s['held']}   "
        f"jitter p99 {s['jitter_p99_ms']:.2f} ms   beats sent {s['beats']}",
        *(f"  → {sink}" for sink in s["sinks"]),
    ])


LEGEND = "\n".join(f"  {name}: {meaning}" for name, meaning in FIELDS.items() if name in ("late", "dropped", "held"))


class Dashboard:
    """Shows `engine` on its own thread until `close()`: a live panel on a terminal (log lines go above it),
    else a plain line every `interval` s on `stream`."""

    def __init__(self, engine, quiet=False, stream=None, interval=None):
        import sys
        self.engine, self.stream = engine, stream or sys.stdout
        self.live = not quiet and self.stream.isatty()
        self.interval = interval or (0.25 if self.live else 5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="onbeat-dashboard", daemon=True)
        self._display = None

    def start(self):
        if self.live:
            # Live redirects sys.stdout and sys.stderr while it runs: log lines print above the panel.
            self._display = Live(Text("onbeat: starting"), console=Console(file=self.stream), auto_refresh=False,
                                 redirect_stdout=True, redirect_stderr=True)
            self._display.start()
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            if self.engine.running:
                self.draw()

    def draw(self):
        s = snapshot(self.engine)
        if self._display is not None:
            self._display.update(Group(Text(panel(s)), Text(LEGEND, style="dim")), refresh=True)
        else:
            self.stream.write(plain_line(s) + "\n")
            self.stream.flush()

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._display is not None:
            self._display.stop()
