"""Torch vs onnxruntime on the same inputs: each exported graph for one step, and a whole rollout of the numpy
sampling loop driven once by the torch callables and once by the ONNX ones (same seed, same music).

Used by `onbeat export --check` and the tests; the target is a max abs difference ≤ 1e-4.
"""
from typing import cast

import numpy as np

from onbeat.choreographers.base import ModelChoreographer
from onbeat.choreographers.kinds import kind_named, open_steps
from onbeat.core.errors import OnbeatError
from onbeat.core.music import synthetic_music
from onbeat.models.checkpoint import load_model

TOLERANCE = 1e-4
ROLLOUT_SECONDS = 20.0


def max_difference(a, b):
    """Max abs difference over (nested tuples of) arrays."""
    if isinstance(a, tuple):
        return max(max_difference(x, y) for x, y in zip(a, b, strict=True))
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def step_parity(model, reference, candidate, metadata):
    """{graph: max abs difference of one call on the same random inputs}."""
    def inputs(graph):
        return model.parity_inputs(graph, metadata, np.random.default_rng(0))
    return {graph: max_difference(reference[graph](*inputs(graph)), candidate[graph](*inputs(graph)))
            for graph in reference}


def rollout(kind, steps, metadata, music, seed=0):
    """(frames, POSE_DIM) raw rows the choreographer makes for `music`, slice after slice (lookahead given)."""
    # an exported kind's runtime is a ModelChoreographer: it makes raw rows
    dancer = cast(ModelChoreographer, kind_named(kind).runtime_factory()(steps, metadata, seed))
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
    model = load_model(checkpoint, kind)
    reference, candidate = model.step_callables(), open_steps(output, device="cpu")[1]
    metadata = candidate[next(iter(candidate))].metadata
    results = {f"{kind} {graph} step": value
               for graph, value in step_parity(model, reference, candidate, metadata).items()}
    results[f"{kind} {seconds:g} s rollout"] = rollout_parity(kind, reference, candidate, metadata, seconds)
    for what, value in results.items():
        report(f"parity {what}: max abs difference {value:.2e} ({'ok' if value <= tolerance else 'TOO LARGE'})")
    worst = max(results, key=lambda what: results[what])
    if results[worst] > tolerance:
        raise OnbeatError(f"{output}: onnxruntime differs from torch by {results[worst]:.2e} in the {worst} "
                          f"(tolerance {tolerance:.0e})")
    return results
