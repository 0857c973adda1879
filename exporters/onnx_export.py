"""`onbeat export badm|codes --checkpoint ... -o model.onnx`: a trained model's streaming step(s) as ONNX.

BADM exports one graph (the denoiser step) to the given path. Codes exports two graphs beside each other:
`-o codes.onnx` writes `codes.gpt.onnx` (the GPT step, KV cache as explicit inputs/outputs) and
`codes.decoder.onnx` (the VQ-VAE decoder). Every file carries the metadata the runtime needs (see
`onbeat.choreographers.runtime.metadata_props`), so `onbeat.choreographers.runtime` loads it with nothing else.

The graphs come from torch's torch.export-based ONNX exporter (`dynamo=True`, the default since torch 2.9; it needs
onnxscript), at batch 1 and fixed slice length, opset 18; the deprecated TorchScript exporter is not used.
"""
import contextlib
import hashlib
import importlib.util
import inspect
import logging
import warnings
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.core.paths import CHECKPOINTS
from onbeat.choreographers.runtime import codes_graph_paths, metadata_props

OPSET = 18  # the torch.export-based exporter's native opset; onnxruntime ≥ 1.14 runs it


def default_checkpoint(kind):
    return CHECKPOINTS / f"{kind}_small.pt"


def graph_paths(kind, output):
    """The files `onbeat export` writes for `kind` at `output`: {graph name: path}."""
    return {"badm": Path(output)} if kind == "badm" else codes_graph_paths(output)


def export(kind, checkpoint, output):
    """Export `kind` from `checkpoint`; returns the written paths."""
    model = load_model(kind, checkpoint)
    digest = file_sha256(checkpoint)
    paths = graph_paths(kind, output)
    for name, (module, example_inputs, output_names) in streaming_graphs(kind, model).items():
        export_graph(module, example_inputs, output_names, paths[name],
                     metadata_props(name, model.metadata(), digest))
    return list(paths.values())


def load_model(kind, checkpoint):
    """The torch model of `kind` stored in `checkpoint` (any checkpoint `onbeat train` writes), in eval mode."""
    from onbeat.models.train import load_model as load_trained

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise OnbeatError(f"{checkpoint}: no such checkpoint")
    model = load_trained(checkpoint)
    found = model.metadata()["model"]
    if found != kind:
        raise OnbeatError(f"{checkpoint}: a {found} checkpoint, not {kind}")
    return model


def streaming_graphs(kind, model):
    """{graph name: (module, {input name: example tensor}, output names)} for each graph `kind` exports."""
    if kind == "badm":
        return {"badm": (model.step_module(), badm_example_inputs(model.metadata()), ["x0", "next_x0"])}
    return {"codes.gpt": (model.gpt_step_module(), model.gpt_step_example_inputs(), model.gpt_step_output_names()),
            "codes.decoder": (model.decoder_module(), model.decoder_example_inputs(), ["pose"])}


def badm_example_inputs(metadata):
    """One batch-1 call of the BADM denoiser (see `onbeat.choreographers.badm_sampler`)."""
    import torch

    frames, dim, features = metadata["slice_frames"], metadata["pose_dim"], metadata["feature_dim"]
    generator = torch.Generator().manual_seed(0)
    pose = lambda: torch.randn(1, frames, dim, generator=generator)  # noqa: E731
    inputs = {"noisy": pose(), "t": torch.tensor([0.5]), "context": pose(), "next_noisy": pose(),
              "music": torch.rand(1, 2 * frames, features, generator=generator), "key_pose": pose(),
              "key_mask": torch.zeros(1, frames)}
    if metadata.get("styles"):  # a styled model: the music mask and the style id (see `models.badm`)
        inputs.update(music_mask=torch.ones(1, 2 * frames, len(metadata["music_mask"])),
                      style=torch.zeros(1, dtype=torch.long))
    return inputs


def export_graph(module, example_inputs, output_names, path, props):
    """Trace `module` on `example_inputs` ({forward argument name: tensor}) into `path` with metadata `props`,
    then validate it with the ONNX checker."""
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
    with warnings.catch_warnings(), _quiet_logger("torch.onnx"), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and registry chatter is not the user's business
        program = torch.onnx.export(module.eval(), tuple(example_inputs.values()), input_names=names,
                                    output_names=output_names, opset_version=OPSET, dynamo=True, verbose=False,
                                    optimize=True)
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


@contextlib.contextmanager
def _quiet_logger(name):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
