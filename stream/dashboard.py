"""A live terminal view of the engine: redrawn in place on a terminal, a plain log line every few seconds
otherwise (`--quiet`, pipes, CI)."""
import sys
import threading


def snapshot(engine):
    """The numbers worth watching, as a dict (also what `--quiet` logs)."""
    stats, beat = engine.stats, engine.beat
    generation = sorted(stats.generation_ms)
    return {
        "time": engine.now(),
        "bpm": beat.bpm if beat else 0.0,
        "phase": beat.phase if beat else 0.0,
        "beat_in_bar": beat.bar_position if beat else 0,
        "confidence": beat.confidence if beat else 0.0,
        "mode": "idle" if engine.silent else engine.controls.model,
        "quality": engine.quality_level,
        "generation_ms": generation[len(generation) // 2] if generation else 0.0,
        "frames": stats.frames, "late": stats.late, "dropped": stats.dropped, "held": stats.held,
        "bad_slices": stats.bad_slices, "jitter_p99_ms": stats.jitter_ms(99), "beats": stats.beats_sent,
        "sinks": [sink.status for sink in engine.sinks],
        "control_errors": engine.controls.malformed,
    }


def plain_line(s):
    return (f"t={s['time']:.0f}s bpm={s['bpm']:.1f} conf={s['confidence']:.2f} mode={s['mode']} "
            f"gen={s['generation_ms']:.1f}ms q={s['quality']:.2f} frames={s['frames']} late={s['late']} "
            f"dropped={s['dropped']} held={s['held']} nan={s['bad_slices']} jitter_p99={s['jitter_p99_ms']:.2f}ms "
            f"beats={s['beats']} | " + "; ".join(s["sinks"]))


def panel(s, width=32):
    """The multi-line terminal view."""
    filled = int(s["phase"] * width)
    beats = "".join("■" if i == s["beat_in_bar"] else "□" for i in range(4))
    return "\n".join([
        f"onbeat  {s['time']:7.1f} s   mode {s['mode']:<10} quality {s['quality']:.2f}",
        f"BPM {s['bpm']:6.1f}  {beats}  [{'#' * filled}{'.' * (width - filled)}]  confidence {s['confidence']:.2f}",
        f"generation {s['generation_ms']:6.1f} ms/slice   bad slices {s['bad_slices']}   control errors "
        f"{s['control_errors']}",
        f"frames {s['frames']}   late {s['late']}   dropped {s['dropped']}   held {s['held']}   "
        f"jitter p99 {s['jitter_p99_ms']:.2f} ms   beats sent {s['beats']}",
        *(f"  → {sink}" for sink in s["sinks"]),
    ])


class Dashboard:
    """Draws `engine` every `interval` s on its own thread until `close()`."""

    def __init__(self, engine, quiet=False, stream=None, interval=None):
        self.engine, self.stream = engine, stream or sys.stdout
        self.live = not quiet and self.stream.isatty()
        self.interval = interval or (0.25 if self.live else 5.0)
        self._lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="onbeat-dashboard", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            if self.engine.running:
                self.draw()

    def draw(self):
        s = snapshot(self.engine)
        if self.live:
            text = panel(s)
            # Move up over the previous panel and clear to the end of the screen, then redraw.
            self.stream.write((f"\x1b[{self._lines}F" if self._lines else "") + "\x1b[J" + text + "\n")
            self._lines = text.count("\n") + 1
        else:
            self.stream.write(plain_line(s) + "\n")
        self.stream.flush()

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
