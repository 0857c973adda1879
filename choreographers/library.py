"""The choreographers a show can switch between by name: `groove` (procedural, always there), each model this
installation has (`badm`, `codes`, `graph`; `default` is the same model as `DEFAULT`; see `installed_models`), and
any export given by path (.onnx, or .npz for a data kind)."""
import logging
import threading
from pathlib import Path

from onbeat.choreographers.base import Choreographer
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.kinds import installed_models, load_choreographer
from onbeat.core.errors import OnbeatError

logger = logging.getLogger(__name__)

DEFAULT = "codes"  # the shipped model `--model default` dances: the best on the validation split (codes_v2.md)


def onnxruntime_missing() -> bool:
    try:
        import onnxruntime  # noqa: F401 - only to say clearly when it is missing
    except ImportError:
        return True
    return False


class Library:
    """Loads choreographers on first use and keeps them. Thread-safe: the engine loads a model the performer
    switches to on a worker thread while the current one dances on."""

    def __init__(self, threads: int = 1, device: str = "auto", seed: int | None = None):
        self.threads, self.device, self.seed = threads, device, seed
        self.loaded: dict[str, Choreographer] = {"groove": GrooveChoreographer()}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every name `load` accepts without a path: what `/onbeat/model` may switch to."""
        installed = [name for name, path in installed_models().items() if not _needs_onnxruntime(path)]
        default = ["default"] if DEFAULT in installed else []
        return list(dict.fromkeys(["groove", *default, *installed, *self.loaded]))

    def load(self, name: str) -> Choreographer:
        """The choreographer called `name` (see the module docstring) or exported at the path `name`."""
        with self._lock:
            if name in self.loaded:
                return self.loaded[name]
        choreographer = self._open(name)
        with self._lock:
            return self.loaded.setdefault(name, choreographer)

    def _open(self, name: str) -> Choreographer:
        path = self.path_of(name)
        logger.debug("model %s: %s", name, path)
        return load_choreographer(path, self.threads, self.device, self.seed)

    def path_of(self, name: str) -> Path:
        """The export `name` stands for (an installed model's name, `default`, or a path); OnbeatError when it
        cannot run here. (A crowd opens it once for all its dancers: `onbeat.stream.crowd`.)"""
        installed = installed_models()
        if name == "default" or name in installed:
            path = installed.get(DEFAULT if name == "default" else name)
            if path is None:
                raise OnbeatError(f"model {name}: not shipped with this installation")
        elif name.lower().endswith((".onnx", ".npz")):
            path = Path(name)
        else:
            raise OnbeatError(f"model {name}: choose one of {', '.join(self.names())} or an exported .onnx/.npz path")
        if _needs_onnxruntime(path):
            raise OnbeatError(f"model {name}: onnxruntime is not installed (pip install 'onbeat[cpu]')")
        return path


def _needs_onnxruntime(path: Path) -> bool:
    """An ONNX export needs onnxruntime, which may be missing; a data file (.npz) needs numpy alone."""
    return path.suffix.lower() == ".onnx" and onnxruntime_missing()


def first_choice(library: Library, model: str) -> str:
    """The name the show starts with for `--model`: `model` once it loads; for `default`, the groove (said once)
    when the shipped model cannot run here, so a bare install still dances."""
    try:
        library.load(model)
    except OnbeatError as e:
        if model != "default":
            raise
        logger.warning("%s; dancing with the built-in groove", e)
        return "groove"
    return model
