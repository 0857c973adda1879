"""The crowd: many dancers from one engine (`onbeat.choreographers.crowd`, `onbeat.stream.crowd`)."""
import numpy as np
import pytest

from onbeat.choreographers.kinds import installed_models, open_steps
from onbeat.models.badm import BADM
from onbeat.models.codes import Codes

pytest.importorskip("onnxruntime")


def _stack(single_inputs, axes):
    """One batched call's inputs from several single calls' (each input on its batch axis; None: shared)."""
    return [inputs[0] if axis is None else np.concatenate(inputs, axis=axis)
            for inputs, axis in zip(zip(*single_inputs, strict=True), axes, strict=True)]


@pytest.mark.parametrize("kind, model", [("badm", BADM), ("codes", Codes)])
def test_the_shipped_graphs_step_a_batch_as_its_dancers_one_by_one(kind, model):
    _, steps = open_steps(installed_models()[kind], device="cpu")
    for graph, step in steps.items():
        assert step.batched, f"{kind} {graph} has no dynamic batch dimension: re-export it"
        names = [name for name, _ in step.inputs]
        axes = [model.BATCH_AXES.get(name, 0) for name in names]
        singles = [model.parity_inputs(graph, step.metadata, np.random.default_rng(seed)) for seed in range(5)]
        shared = [i for i, axis in enumerate(axes) if axis is None]
        for inputs in singles:  # an input shared by the batch is the same for every dancer
            for i in shared:
                inputs[i][...] = singles[0][i]
        batched = step(*_stack(singles, axes))
        batched = batched if isinstance(batched, tuple) else (batched,)
        for dancer, inputs in enumerate(singles):
            alone = step(*inputs)
            alone = alone if isinstance(alone, tuple) else (alone,)
            for output, (one, many) in enumerate(zip(alone, batched, strict=True)):
                axis = 2 if (graph, output) == ("gpt", 2) else 0  # the cache keeps its batch on axis 2
                np.testing.assert_allclose(np.take(many, [dancer], axis=axis), one, atol=1e-5, rtol=0,
                                           err_msg=f"{kind} {graph} output {output} dancer {dancer}")
