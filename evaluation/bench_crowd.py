"""`onbeat bench crowd`: a crowd of N dancers from one engine, N = 1, 2, 4, ... 64 in one run.

For each size the full live pipeline runs for `seconds` (synthetic drums → ear → crowd → 60 Hz output), every
dancer sending VMC to its own UDP port on this machine (sockets that only receive: the sending costs what it
costs live). It reports frames delivered and on time, held and dropped frames, generation per slice (and per
dancer), the output's send lateness (p50/p99/max: jitter), and resident memory after warm-up and at the end.
Then the batched model step alone, at each size: onnxruntime (the shipped export's dynamic batch) against torch
eager (the checkpoint's denoiser), CUDA with IO binding where onnxruntime has it.
`clock_sizes`: sizes also run with the output clock at normal priority (`Engine(real_time=False)`), before the
steadier clock, for the comparison side by side; `in_process_sizes`: sizes also run with the crowd's maker in the
engine's process (the GIL shared with the output thread). The machine may be shared: the load average is printed.
"""
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from onbeat.choreographers.kinds import installed_models, open_steps
from onbeat.choreographers.library import Library
from onbeat.choreographers.onnx import OnnxStep, available_devices
from onbeat.core.music import MASK_GROUPS
from onbeat.ear.sources import SyntheticSource
from onbeat.evaluation.bench_live import rss_mb
from onbeat.stream.crowd import CrowdEngine, CrowdMaker, CrowdProcess, crowd_of
from onbeat.stream.sinks import Sink, VmcSink

SIZES = (1, 2, 4, 8, 16, 32, 64)
WARM_UP_S = 3.0  # the first seconds (sessions, buffers, the beat lock) are not counted for memory


def run_crowd(count, seconds, model="badm", mode="free", real_time=True, in_process=False):
    """One crowd of `count` dancers for `seconds` (its maker in a child process, as a show runs it, unless
    `in_process`): a dict of what was measured."""
    recipe = dict(model=model, count=count, shape="grid", mode=mode, seed=0)
    maker = CrowdMaker({model: crowd_of(Library(), **recipe)}) if in_process else CrowdProcess(recipe)
    drains = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for drain in drains:
        drain.bind(("127.0.0.1", 0))
    dancer_sinks: list[list[Sink]] = [[VmcSink("127.0.0.1", drain.getsockname()[1])] for drain in drains]
    engine = CrowdEngine(SyntheticSource(bpm=120.0), maker, dancer_sinks, real_time=real_time)
    rss = {}
    try:
        def watch():
            time.sleep(WARM_UP_S)
            rss["start"] = rss_mb() + child_rss_mb(maker)
        threading.Thread(target=watch, daemon=True).start()
        began = time.perf_counter()
        stats = engine.run(seconds)
        wall = time.perf_counter() - began
        rss["end"] = rss_mb() + child_rss_mb(maker)
    finally:
        maker.close()
        for sinks in dancer_sinks:
            for sink in sinks:
                sink.close()
        for drain in drains:
            drain.close()
    generation = np.array(stats.generation_ms)
    due = stats.frames + stats.dropped
    crowd: Any = maker.crowds[model] if isinstance(maker, CrowdMaker) else maker  # a Crowd, or the process's answers
    return {"dancers": count, "lanes": crowd.lanes if not in_process else len(crowd.lanes), "batched": crowd.batched,
            "where": "in-process" if in_process else "child process", "wall": wall,
            "frames": stats.frames, "due": due, "on_time": (stats.frames - stats.late) / max(due, 1),
            "late": stats.late, "dropped": stats.dropped, "held": stats.held, "quality": engine.quality_level,
            "generation_ms": float(np.median(generation)), "per_dancer_ms": float(np.median(generation)) / count,
            "p50": stats.jitter_ms(50), "p99": stats.jitter_ms(99), "max": 1000 * stats.max_jitter,
            "rss_start": rss.get("start", float("nan")), "rss_end": rss["end"]}


def child_rss_mb(maker):
    """Resident memory (MB) of a `CrowdProcess`'s child (0 for a maker in this process; NaN off Linux)."""
    if not isinstance(maker, CrowdProcess):
        return 0.0
    try:
        status = Path(f"/proc/{maker.pid}/status").read_text()
    except OSError:
        return float("nan")
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def print_run(r, label=""):
    print(f"{label}N={r['dancers']:3d} lanes={r['lanes']:2d}{' batched' if r['batched'] else '        '} "
          f"frames {r['frames']}/{r['due']} on time {100 * r['on_time']:6.2f}% (late {r['late']}, dropped "
          f"{r['dropped']}, held {r['held']}); generation/slice {r['generation_ms']:6.1f} ms = "
          f"{r['per_dancer_ms']:5.2f} ms/dancer, quality {r['quality']:.2f}; send lateness p50 {r['p50']:.2f} "
          f"p99 {r['p99']:.2f} max {r['max']:.2f} ms; RSS (engine + crowd process) {r['rss_start']:.0f} → "
          f"{r['rss_end']:.0f} MB", flush=True)


def cost_curve(runs):
    """Lines of per-dancer generation cost against N, relative to N = 1 (a bar per size)."""
    first = runs[0]["per_dancer_ms"]
    lines = []
    for r in runs:
        share = r["per_dancer_ms"] / first
        lines.append(f"  N={r['dancers']:3d} {r['per_dancer_ms']:6.2f} ms/dancer {share:5.2f}x N=1  "
                     + "#" * max(1, round(20 * share)))
    return lines


def step_inputs(batch, metadata, rng):
    """One batched denoiser call's inputs for an export with this metadata (a styled model also takes the music
    mask and a style id per dancer)."""
    frames, dim = metadata["slice_frames"], metadata["pose_dim"]
    music_rows, music_dim = 2 * frames, len(metadata["feature_names"].split(","))
    pose = lambda: rng.standard_normal((batch, frames, dim)).astype(np.float32)  # noqa: E731
    music = rng.random((batch, music_rows, music_dim)).astype(np.float32)
    key_mask = np.zeros((batch, frames), np.float32)
    inputs: tuple[np.ndarray, ...] = (pose(), np.full(batch, 0.5, np.float32), pose(), pose(), music, pose(), key_mask)
    if metadata.get("styles"):
        inputs += (np.ones((batch, music_rows, len(MASK_GROUPS)), np.float32),
                   rng.integers(0, len(metadata["styles"]), batch).astype(np.int64))
    return inputs


def median_ms(call, repeats):
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def batched_step_costs(sizes, device="cpu", repeats=20):
    """{size: {runtime: ms per batched denoiser call}} for the shipped badm export and its checkpoint."""
    path = installed_models()["badm"]
    step = cast(OnnxStep, open_steps(path, device="cpu")[1]["step"])
    torch_step = _torch_step()
    cuda = _cuda_step(path) if device == "cuda" else None
    costs = {}
    for size in sizes:
        inputs = step_inputs(size, step.metadata, np.random.default_rng(size))
        row = {"onnxruntime cpu": median_ms(lambda inputs=inputs: step(*inputs), repeats)}
        if torch_step is not None:
            row["torch eager cpu"] = median_ms(lambda inputs=inputs: torch_step(*inputs), repeats)
        if cuda is not None:
            row["onnxruntime cuda (IO binding)"] = median_ms(cuda(inputs), repeats)
        costs[size] = row
    return costs


def _torch_step():
    """The checkpoint's denoiser as a numpy callable (None without torch: the `train` extra)."""
    try:
        import torch

        from onbeat.core.paths import shipped_checkpoint
        from onbeat.models.checkpoint import load_model
    except ImportError:
        return None
    torch.set_num_threads(1)
    return load_model(shipped_checkpoint("badm"), "badm").step_callables()["step"]


def _cuda_step(path):
    """`bind(inputs)` → a call running the graph on CUDA with the inputs and outputs bound on the device (IO
    binding: no copies per call), or None where onnxruntime has no CUDA here."""
    if "cuda" not in available_devices():
        return None
    import onnxruntime as ort

    session = cast(OnnxStep, open_steps(path, device="cuda")[1]["step"]).session

    def bind(inputs):
        binding = session.io_binding()
        for meta, value in zip(session.get_inputs(), inputs, strict=True):
            binding.bind_ortvalue_input(meta.name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for meta in session.get_outputs():
            binding.bind_output(meta.name, "cuda", 0)

        def call():
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
        return call
    return bind


def bench(sizes=SIZES, seconds=10.0, clock_sizes=(1, 32), model="badm", mode="free", device="cpu",
          in_process_sizes=(32,)):
    load = os.getloadavg()
    print(f"bench crowd: {model}, mode {mode}, {seconds:g} s per size, {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    for size in clock_sizes:
        plain = run_crowd(size, seconds, model, mode, real_time=False)
        steady = run_crowd(size, seconds, model, mode, real_time=True)
        print(f"output clock at N={size}: send lateness p99 {plain['p99']:.2f} ms (normal priority) → "
              f"{steady['p99']:.2f} ms (real-time threads); max {plain['max']:.2f} → {steady['max']:.2f} ms; "
              f"on time {100 * plain['on_time']:.2f}% → {100 * steady['on_time']:.2f}%; load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    runs = []
    for size in sizes:
        runs.append(run_crowd(size, seconds, model, mode))
        print_run(runs[-1])
    for size in in_process_sizes:
        print_run(run_crowd(size, seconds, model, mode, in_process=True), "in-process maker (the GIL shared): ")
    print("per-dancer generation cost (median slice / N):")
    print("\n".join(cost_curve(runs)))
    print("the batched denoiser step alone (ms per call, median; per dancer in brackets):")
    costs = batched_step_costs(sizes, device)
    for size, row in costs.items():
        print(f"  N={size:3d} " + "; ".join(f"{name} {ms:7.2f} ({ms / size:.3f})" for name, ms in row.items()))
    if device == "cuda" and "cuda" not in available_devices():
        print("  onnxruntime cuda: unmeasured (no CUDA execution provider here: onnxruntime-gpu and a GPU)")
    if not any("torch" in name for name in costs[sizes[0]]):
        print("  torch eager: unmeasured (torch is not installed: the train extra)")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return runs
