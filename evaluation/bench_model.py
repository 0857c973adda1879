"""`onbeat bench model`: per-step latency and real-time factor, torch eager vs onnxruntime, side by side.

For each model and thread count, the runtime's choreographer generates `--seconds` of music slice by slice, once
with the torch callables and once with the ONNX sessions (CUDA too where onnxruntime has it). Every graph call is
timed; the real-time factor is seconds of dance per second of wall time for the whole slice loop (the numpy
sampler included; decoding the rows into a Motion, the same numpy for both, is not). The machine may be shared and
noisy, so the configurations take turns (A B A B, `--rounds`) and each one's numbers pool its rounds.
"""
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from onbeat.choreographers.kinds import open_steps
from onbeat.choreographers.onnx import available_devices
from onbeat.core.music import synthetic_music
from onbeat.core.progress import tracked
from onbeat.exporters import parity


def bench_model(kind, checkpoint, seconds, rounds, threads, quiet=False):
    """Table rows for one model: every configuration (runtime, threads) timed on the same music, interleaved."""
    import torch

    from onbeat.exporters.onnx_export import export
    from onbeat.models.checkpoint import load_model

    model = load_model(checkpoint, kind)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / f"{kind}.onnx"
        export(kind, checkpoint, output)
        configs = {("torch eager", n): model.step_callables() for n in threads}
        configs.update({("onnxruntime cpu", n): open_steps(output, n, "cpu")[1] for n in threads})
        if "cuda" in available_devices():
            configs[("onnxruntime cuda", 1)] = open_steps(output, 1, "cuda")[1]
        metadata = next(iter(configs[("onnxruntime cpu", threads[0])].values())).metadata
        music = synthetic_music(seconds)
        timings: dict[tuple[str, int], dict[str, Any]] = {
            config: {"calls": {name: [] for name in steps}, "wall": 0.0} for config, steps in configs.items()}
        # round 0 warms up and is not counted
        for round_index in tracked(range(rounds + 1), what=f"bench {kind}: rounds", quiet=quiet):
            for (name, count), steps in configs.items():
                torch.set_num_threads(count)
                result = timings[(name, count)]
                timed = {graph: _timed(step, result["calls"][graph] if round_index else [])
                         for graph, step in steps.items()}
                began = time.perf_counter()
                parity.rollout(kind, timed, metadata, music if round_index else music[:60], seed=round_index)
                if round_index:
                    result["wall"] += time.perf_counter() - began
    return [_row(kind, config, result, rounds * seconds, timings.get(("torch eager", config[1])))
            for config, result in timings.items()]


def bench_data(kind, path, seconds, rounds, tempos=(85.0, 120.0, 150.0)):
    """Table rows for a data kind (graph): its numpy runtime dancing `seconds` of music at each tempo, slice by
    slice (the first round warms up), timing every slice and, where the runtime reports them (`decision_ms`), the
    decisions inside (the graph's choice of the next segment, once per beat)."""
    from onbeat.choreographers.kinds import load_choreographer
    dancer = load_choreographer(path, seed=0)
    rows = []
    for bpm in tempos:
        music = synthetic_music(seconds, bpm)
        frames = dancer.slice_frames
        slices, wall = [], 0.0
        for round_index in range(rounds + 1):
            dancer.reset()
            if hasattr(dancer, "decision_ms"):
                dancer.decision_ms.clear()
            began = time.perf_counter()
            for k in range(0, len(music) - 2 * frames, frames):
                start = time.perf_counter()
                dancer.next_slice(music[k:k + 2 * frames])
                if round_index:
                    slices.append(time.perf_counter() - start)
            if round_index:
                wall += time.perf_counter() - began
        timings = [("slice", 1000 * np.median(slices), 1000 * np.percentile(slices, 99), float("nan"))]
        decisions = list(getattr(dancer, "decision_ms", []))
        if decisions:
            timings.append(("decision", np.median(decisions), np.percentile(decisions, 99), float("nan")))
        rows.append({"model": kind, "runtime": f"numpy {bpm:.0f} BPM", "threads": 1, "graphs": timings,
                     "realtime": rounds * seconds / wall})
    return rows


def _timed(step, times):
    def call(*arrays, **named):  # named: a styled graph's music mask and style, filled in by the runtime
        began = time.perf_counter()
        out = step(*arrays, **named)
        times.append(time.perf_counter() - began)
        return out
    return call


def _row(kind, config, result, dance_seconds, torch_result):
    name, threads = config
    reference = torch_result["calls"] if torch_result else None
    graphs = []
    for graph, times in result["calls"].items():
        median = np.median(times)
        speedup = np.median(reference[graph]) / median if reference else float("nan")
        graphs.append((graph, 1000 * median, 1000 * np.percentile(times, 99), speedup))
    return {"model": kind, "runtime": name, "threads": threads, "graphs": graphs,
            "realtime": dance_seconds / result["wall"]}


def format_table(rows):
    header = f"{'model':<6} {'runtime':<17} {'thr':>3}  {'graph':<14} {'median ms':>9} {'p99 ms':>8} " \
             f"{'vs torch':>8}  {'x real time':>11}"
    lines = [header, "-" * len(header)]
    for row in rows:
        for i, (graph, median, p99, speedup) in enumerate(row["graphs"]):
            realtime = f"{row['realtime']:11.1f}" if i == 0 else ""
            lines.append(f"{row['model']:<6} {row['runtime']:<17} {row['threads']:>3}  {graph:<14} {median:9.2f} "
                         f"{p99:8.2f} {f'{speedup:7.2f}x' if np.isfinite(speedup) else '       -'}  {realtime}")
    return "\n".join(lines)
