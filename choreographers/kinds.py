"""Model kinds: one registration joins a kind's torch model (training, export, evaluation) and its numpy runtime
(the live path), and an exported file names its kind in its own metadata (`onbeat_kind`).

A kind is
- its torch model class (`model`, imported only where torch is: training, export, torch-path evaluation), with
  `PRESETS`, `CONFIG`, `from_config(cfg, stats)`, `loss(batch)`, `metadata()`, `export_graphs()` ({graph: (module,
  example inputs, output names)}), `step_callables()` ({graph: numpy callable backed by torch}) and
  `parity_inputs(graph, metadata, rng)` (valid arguments for one call of a graph), and
- its runtime factory (`runtime`, numpy only): `(steps: {graph: callable}, metadata, seed) -> Choreographer`,
  fed ONNX sessions live and the torch callables in training-time checks, so the sampling loop exists once.
Adding a kind is writing those two and one `register(Kind(...))`; `onbeat train/export/play/eval` then know it.
"""
import glob
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from onbeat.core.errors import OnbeatError
from onbeat.core import paths
from onbeat.choreographers.base import Choreographer
from onbeat.choreographers.onnx import OnnxStep, Step


@dataclass(frozen=True)
class Kind:
    name: str  # the `onbeat_kind` of its exported files, the word `onbeat train` and `onbeat export` take
    graphs: tuple[str, ...]  # the ONNX graphs an export writes (one file each)
    runtime: str  # "module:callable": (steps, metadata, seed) -> Choreographer, numpy only
    model: str  # "module:Class" of the torch model

    def runtime_factory(self) -> Callable[[dict[str, Step], dict[str, Any], int | None], Choreographer]:
        return _import(self.runtime)

    def model_class(self) -> Any:
        return _import(self.model)

    def graph_paths(self, output: str | Path) -> dict[str, Path]:
        """The files of an export at `output`: `output` itself for a one-graph kind, else `NAME.<graph>.onnx`
        beside it for each graph (`-o codes.onnx` → codes.gpt.onnx + codes.decoder.onnx)."""
        output = Path(output)
        if len(self.graphs) == 1:
            return {self.graphs[0]: output}
        base = output.name.removesuffix(".onnx")
        return {graph: output.with_name(f"{base}.{graph}.onnx") for graph in self.graphs}


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def kind_named(name: str) -> Kind:
    if name not in KINDS:
        raise OnbeatError(f"unknown model kind {name!r} (known: {', '.join(sorted(KINDS))})")
    return KINDS[name]


def _import(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


register(Kind("badm", ("step",), "onbeat.choreographers.badm:BadmChoreographer", "onbeat.models.badm:BADM"))
register(Kind("codes", ("gpt", "decoder"), "onbeat.choreographers.codes:CodesChoreographer",
              "onbeat.models.codes:Codes"))


# --- exported files --------------------------------------------------------------------------------------------

def open_steps(path: str | Path, threads: int = 1, device: str = "auto") -> tuple[Kind, dict[str, OnnxStep]]:
    """(kind, {graph: OnnxStep}) of the export named by `path`: one of its files, or for a several-graph kind
    the name it was exported under (`codes.onnx` for codes.gpt.onnx + codes.decoder.onnx). The kind is read
    from the file's own metadata, never guessed from its name."""
    path = Path(path)
    siblings = [] if path.is_file() else sorted(path.parent.glob(glob.escape(path.name.removesuffix(".onnx")) + ".*.onnx"))
    first = siblings[0] if siblings else path  # nothing there: OnnxStep names the missing file as given
    step = OnnxStep(first, threads, device)
    kind = kind_named(step.kind)
    if step.graph not in kind.graphs:
        raise OnbeatError(f"{first}: graph {step.graph!r} is not one of the {kind.name} model's "
                          f"({', '.join(kind.graphs)})")
    base = first.name.removesuffix(f".{step.graph}.onnx").removesuffix(".onnx")
    output = first.with_name(base + ".onnx") if len(kind.graphs) > 1 else first
    steps = {}
    for graph, graph_path in kind.graph_paths(output).items():
        steps[graph] = other = step if graph == step.graph else OnnxStep(graph_path, threads, device)
        if (other.kind, other.graph) != (kind.name, graph):
            raise OnbeatError(f"{graph_path}: a {other.kind} {other.graph} graph, expected {kind.name} {graph}")
    return kind, steps  # in the kind's graph order


def load_choreographer(path: str | Path, threads: int = 1, device: str = "auto",
                       seed: int | None = None) -> Choreographer:
    """The live choreographer of the export at `path` (see `open_steps`)."""
    kind, steps = open_steps(path, threads, device)
    return kind.runtime_factory()(steps, next(iter(steps.values())).metadata, seed)


def shipped_models() -> dict[str, Path]:
    """{kind: its export in the package's assets} for the kinds onbeat ships a trained model of."""
    return {name: paths.ASSETS / f"{name}.onnx" for name, kind in KINDS.items()
            if all(p.is_file() for p in kind.graph_paths(paths.ASSETS / f"{name}.onnx").values())}
