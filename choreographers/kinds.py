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

A kind may also be data rather than a trained graph (`graph`, a motion database): no torch model, and its export
is `.npz` files (`suffix`) read by `onbeat.choreographers.datafile.DataFile`, handed to the runtime factory in
place of the graph callables. Such a file carries the same metadata, so `--model PATH` finds its kind the same way.
"""
import glob
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onbeat.choreographers.base import Choreographer
from onbeat.choreographers.datafile import DataFile
from onbeat.choreographers.onnx import MetadataSchema, OnnxStep, Step
from onbeat.core import paths
from onbeat.core.errors import OnbeatError

Part = Step | DataFile  # one file of an export: an ONNX graph as a callable, or a data file


@dataclass(frozen=True)
class Kind:
    name: str  # the `onbeat_kind` of its exported files, the word `onbeat train` and `onbeat export` take
    graphs: tuple[str, ...]  # the parts an export writes (one file each): ONNX graphs, or data files
    runtime: str  # "module:callable": (steps, metadata, seed) -> Choreographer, numpy only
    model: str | None  # "module:Class" of the torch model; None for a data kind (nothing to train or export)
    metadata: str = ""  # "module:NAME" of the `onnx.MetadataSchema` of the values the runtime reads ("": none)
    suffix: str = ".onnx"  # the file type of its parts: ".onnx" graphs, ".npz" data files

    def runtime_factory(self) -> Callable[[Mapping[str, Part], dict[str, Any], int | None], Choreographer]:
        return _import(self.runtime)

    def model_class(self) -> Any:
        if self.model is None:
            raise OnbeatError(f"{self.name} is data, not a trained model: nothing to train or export "
                              f"(its database is built by `onbeat {self.name} build`)")
        return _import(self.model)

    def metadata_schema(self) -> MetadataSchema | None:
        return _import(self.metadata) if self.metadata else None

    def check_metadata(self, path: str | Path, metadata: dict[str, Any]) -> None:
        """OnbeatError naming the first value of an export's `metadata` the runtime cannot run with."""
        schema = self.metadata_schema()
        if schema is not None:
            schema.check(Path(path), metadata)

    def graph_paths(self, output: str | Path) -> dict[str, Path]:
        """The files of an export at `output`: `output` itself for a one-graph kind, else `NAME.<graph>.onnx`
        beside it for each graph (`-o codes.onnx` → codes.gpt.onnx + codes.decoder.onnx)."""
        output = Path(output)
        if len(self.graphs) == 1:
            return {self.graphs[0]: output}
        base = output.name.removesuffix(self.suffix)
        return {graph: output.with_name(f"{base}.{graph}{self.suffix}") for graph in self.graphs}


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


register(Kind("badm", ("step",), "onbeat.choreographers.badm:BadmChoreographer", "onbeat.models.badm:BADM",
              "onbeat.choreographers.badm:METADATA"))
register(Kind("codes", ("gpt", "decoder"), "onbeat.choreographers.codes:CodesChoreographer",
              "onbeat.models.codes:Codes", "onbeat.choreographers.codes:METADATA"))
register(Kind("graph", ("database",), "onbeat.choreographers.graph:GraphChoreographer", None, suffix=".npz"))


def trainable_kinds() -> list[str]:
    """The kinds with a torch model: what `onbeat train` and `onbeat export` take."""
    return sorted(name for name, kind in KINDS.items() if kind.model is not None)


# --- exported files --------------------------------------------------------------------------------------------

def open_part(path: Path, threads: int = 1, device: str = "auto") -> OnnxStep | DataFile:
    """One file of an export, by its type: a data file (.npz) or an ONNX graph."""
    return DataFile(path) if path.suffix.lower() == ".npz" else OnnxStep(path, threads, device)


def open_steps(path: str | Path, threads: int = 1, device: str = "auto") -> tuple[Kind, dict[str, OnnxStep | DataFile]]:
    """(kind, {graph: OnnxStep or DataFile}) of the export named by `path`: one of its files, or for a several-graph
    kind the name it was exported under (`codes.onnx` for codes.gpt.onnx + codes.decoder.onnx). The kind is read
    from the file's own metadata, never guessed from its name."""
    path = Path(path)
    stem = glob.escape(path.name.removesuffix(".onnx"))
    siblings = [] if path.is_file() else sorted(path.parent.glob(stem + ".*.onnx"))
    first = siblings[0] if siblings else path  # nothing there: opening it names the missing file as given
    step = open_part(first, threads, device)
    kind = kind_named(step.kind)
    if step.graph not in kind.graphs:
        raise OnbeatError(f"{first}: graph {step.graph!r} is not one of the {kind.name} model's "
                          f"({', '.join(kind.graphs)})")
    base = first.name.removesuffix(f".{step.graph}.onnx").removesuffix(".onnx")
    output = first.with_name(base + ".onnx") if len(kind.graphs) > 1 else first
    steps = {}
    for graph, graph_path in kind.graph_paths(output).items():
        steps[graph] = other = step if graph == step.graph else open_part(graph_path, threads, device)
        if (other.kind, other.graph) != (kind.name, graph):
            raise OnbeatError(f"{graph_path}: a {other.kind} {other.graph} graph, expected {kind.name} {graph}")
    return kind, steps  # in the kind's graph order


def load_choreographer(path: str | Path, threads: int = 1, device: str = "auto",
                       seed: int | None = None) -> Choreographer:
    """The live choreographer of the export at `path` (see `open_steps`)."""
    kind, steps = open_steps(path, threads, device)
    metadata = next(iter(steps.values())).metadata
    kind.check_metadata(path, metadata)
    return kind.runtime_factory()(steps, metadata, seed)


def installed_models() -> dict[str, Path]:
    """{kind: its export} for the kinds this installation has one of: the one the user built (`user_models()`,
    e.g. the full `graph` database, made from data onbeat may not ship) before the one shipped in the assets."""
    found = {}
    for name, kind in KINDS.items():
        for folder in (paths.user_models(), paths.ASSETS):
            export = folder / f"{name}{kind.suffix}"
            if all(p.is_file() for p in kind.graph_paths(export).values()):
                found[name] = export
                break
    return found
