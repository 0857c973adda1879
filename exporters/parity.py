"""Torch vs onnxruntime on the same inputs: each exported graph for one step, and a whole rollout of the numpy
sampling loop driven once by the torch callables and once by the ONNX ones (same seed, same music).

Used by `onbeat export --check` and the tests; the target is a max abs difference ≤ 1e-4.
"""
import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.choreographers import runtime
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES

TOLERANCE = 1e-4
ROLLOUT_SECONDS = 20.0


def synthetic_music(seconds, bpm=120.0, seed=0):
    """(frames, FEATURE_DIM) float32 feature rows: random audio descriptors on a steady beat grid (4/4)."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * FEATURE_FPS))
    music = rng.random((frames, FEATURE_DIM)).astype(np.float32)
    beats = np.arange(frames) / FEATURE_FPS * bpm / 60.0
    phase, bar_phase = beats % 1.0, (beats / 4.0) % 1.0
    columns = {"beat_phase_sin": np.sin(2 * np.pi * phase), "beat_phase_cos": np.cos(2 * np.pi * phase),
               "beat_distance": 2 * np.minimum(phase, 1 - phase),
               "bar_phase_sin": np.sin(2 * np.pi * bar_phase), "bar_phase_cos": np.cos(2 * np.pi * bar_phase)}
    for name, values in columns.items():
        music[:, FEATURE_NAMES.index(name)] = values
    return music


def torch_steps(kind, model):
    """{graph kind: numpy callable} backed by the torch model (what training and evaluation use)."""
    if kind == "badm":
        return {"badm": model.denoise_fn()}
    return dict(zip(("codes.gpt", "codes.decoder"), model.sampler_callables()))


def onnx_steps(kind, output, threads=1, device="cpu"):
    """{graph kind: OnnxStep} for the files `onbeat export` wrote at `output` (style and mask inputs filled in as
    the runtime fills them)."""
    from onbeat.exporters.onnx_export import graph_paths
    return {name: runtime.conditioned_step(runtime.OnnxStep(path, name, threads, device))
            for name, path in graph_paths(kind, output).items()}


def choreographer(kind, steps, metadata, seed=0):
    """The runtime's choreographer of `kind` around `steps` (torch or ONNX callables)."""
    if kind == "badm":
        return runtime.BadmChoreographer(steps["badm"], metadata, seed)
    return runtime.CodesChoreographer(steps["codes.gpt"], steps["codes.decoder"], metadata, seed)


def random_inputs(name, metadata, seed=0):
    """Valid inputs for one call of graph `name`, away from the start state (codes: a wrapped-around cache)."""
    rng = np.random.default_rng(seed)
    m = metadata
    if name == "badm":
        frames, dim = m["slice_frames"], m["pose_dim"]
        pose = lambda: rng.standard_normal((1, frames, dim)).astype(np.float32)  # noqa: E731
        mask = np.zeros((1, frames), np.float32)
        mask[0, frames // 2] = 1.0
        return (pose(), rng.random(1).astype(np.float32), pose(), pose(),
                rng.random((1, 2 * frames, FEATURE_DIM)).astype(np.float32), pose(), mask)
    codes = lambda *shape: rng.integers(0, m["codebook_size"], shape).astype(np.int64)  # noqa: E731
    if name == "codes.gpt":
        kv = 0.5 * rng.standard_normal((m["layers"], 2, 1, m["heads"], m["context"], m["head_dim"]))
        return (codes(1), codes(1), rng.random((1, m["rate"], FEATURE_DIM)).astype(np.float32),
                kv.astype(np.float32), np.array([2 * m["context"] + 3], np.int64))
    return codes(1, m["decode_window"]), codes(1, m["decode_window"])


def max_difference(a, b):
    """Max abs difference over (nested tuples of) arrays."""
    if isinstance(a, tuple):
        return max(max_difference(x, y) for x, y in zip(a, b))
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def step_parity(kind, reference, candidate, metadata):
    """{graph kind: max abs difference of one call on the same random inputs}."""
    return {name: max_difference(reference[name](*random_inputs(name, metadata)),
                                 candidate[name](*random_inputs(name, metadata))) for name in reference}


def rollout(kind, steps, metadata, music, seed=0):
    """(frames, POSE_DIM) raw rows the choreographer makes for `music`, slice after slice (lookahead given)."""
    dancer = choreographer(kind, steps, metadata, seed)
    frames = dancer.slice_frames
    count = len(music) // frames
    padded = np.concatenate([music, np.repeat(music[-1:], frames, 0)])
    return np.concatenate([dancer.next_rows(padded[k * frames:(k + 2) * frames]) for k in range(count)])


def rollout_parity(kind, reference, candidate, metadata, seconds=ROLLOUT_SECONDS, seed=0):
    """Max abs difference of the raw rows of a `seconds` rollout, same music and seed."""
    music = synthetic_music(seconds, seed=seed)
    return max_difference(rollout(kind, reference, metadata, music, seed),
                          rollout(kind, candidate, metadata, music, seed))


def check_parity(kind, checkpoint, output, report=print, tolerance=TOLERANCE, seconds=ROLLOUT_SECONDS):
    """Compare the torch model in `checkpoint` with its export at `output` (one step of each graph, a `seconds`
    rollout); raise OnbeatError above `tolerance`."""
    from onbeat.exporters.onnx_export import load_model

    model = load_model(kind, checkpoint)
    reference, candidate = torch_steps(kind, model), onnx_steps(kind, output)
    metadata = candidate[next(iter(candidate))].metadata
    results = {f"{name} step": value for name, value in step_parity(kind, reference, candidate, metadata).items()}
    results[f"{kind} {seconds:g} s rollout"] = rollout_parity(kind, reference, candidate, metadata, seconds)
    for what, value in results.items():
        report(f"parity {what}: max abs difference {value:.2e} ({'ok' if value <= tolerance else 'TOO LARGE'})")
    worst = max(results, key=results.get)
    if results[worst] > tolerance:
        raise OnbeatError(f"{output}: onnxruntime differs from torch by {results[worst]:.2e} in the {worst} "
                          f"(tolerance {tolerance:.0e})")
    return results
