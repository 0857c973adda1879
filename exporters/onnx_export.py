"""A trained model's streaming graphs as ONNX files the live runtime loads with nothing else.

Each graph of the kind (`onbeat.choreographers.kinds`) becomes one file: a one-graph kind (badm) is written at
the given path, a several-graph kind (codes) beside it as `NAME.<graph>.onnx`. Every file carries the metadata the
runtime needs (`onbeat.choreographers.onnx.metadata_props`), its kind and graph included.

The graphs come from torch's torch.export-based ONNX exporter (`dynamo=True`, the default since torch 2.9; it needs
onnxscript), at fixed slice length, opset 18; the deprecated TorchScript exporter is not used. A model whose class
has `BATCH_AXES` ({input: its batch axis, or None for an input shared by the batch}; inputs not named: axis 0) gets
a dynamic batch dimension, so one call steps many dancers (`onbeat.choreographers.crowd`); others stay at batch 1.
"""
import hashlib
import importlib.util
import inspect
import warnings
from pathlib import Path

from onbeat.choreographers.kinds import kind_named
from onbeat.choreographers.onnx import metadata_props
from onbeat.core.errors import OnbeatError
from onbeat.core.logs import errors_only
from onbeat.models.checkpoint import load_model

OPSET = 18  # the torch.export-based exporter's native opset; onnxruntime ≥ 1.14 runs it
MAX_BATCH = 4096  # the dynamic batch dimension's upper bound


def export(kind, checkpoint, output):
    """Export `kind` from `checkpoint`; returns the written paths."""
    model = load_model(checkpoint, kind)
    digest = file_sha256(checkpoint)
    paths = kind_named(kind).graph_paths(output)
    batch_axes = getattr(model, "BATCH_AXES", None)
    for graph, (module, example_inputs, output_names) in model.export_graphs().items():
        export_graph(module, example_inputs, output_names, paths[graph],
                     metadata_props(kind, graph, model.metadata(), digest), batch_axes)
    return list(paths.values())


def export_graph(module, example_inputs, output_names, path, props, batch_axes=None):
    """Trace `module` on `example_inputs` ({forward argument name: tensor}) into `path` with metadata `props`,
    then validate it with the ONNX checker. `batch_axes` (see the module docstring): a dynamic batch dimension."""
    import onnx
    import torch

    if importlib.util.find_spec("onnxscript") is None:  # torch.onnx's torch.export-based exporter is built on it
        raise OnbeatError("onnx export needs onnxscript: pip install onnxscript")
    parameters = inspect.signature(module.forward).parameters
    names = list(parameters)[:len(example_inputs)]  # further arguments are optional inputs this graph leaves out
    optional = all(p.default is not inspect.Parameter.empty for p in list(parameters.values())[len(names):])
    if names != list(example_inputs) or not optional:
        raise ValueError(f"example inputs {list(example_inputs)} do not follow forward's arguments "
                         f"{list(parameters)}")
    path = Path(path)
    dynamic_shapes = None
    if batch_axes is not None:
        example_inputs, dynamic_shapes = _batched(example_inputs, batch_axes)
    with warnings.catch_warnings(), errors_only("torch.onnx"), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and registry chatter is not the user's business
        program = torch.onnx.export(module.eval(), tuple(example_inputs.values()), input_names=names,
                                    output_names=output_names, opset_version=OPSET, dynamo=True, verbose=False,
                                    optimize=True, dynamic_shapes=dynamic_shapes)
    assert program is not None  # dynamo=True always returns the program
    graph = program.model_proto
    del graph.metadata_props[:]
    for key, value in props.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph, full_check=True)
    try:
        onnx.save(graph, str(path))
    except OSError as e:
        raise OnbeatError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _batched(example_inputs, batch_axes):
    """(examples at batch 2, dynamic_shapes): torch.export specializes a dimension traced at size 1."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    examples, shapes = {}, {}
    for name, tensor in example_inputs.items():
        axis = batch_axes.get(name, 0)
        examples[name] = tensor if axis is None else torch.cat([tensor, tensor], dim=axis)
        shapes[name] = None if axis is None else {axis: batch}
    return examples, shapes


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
