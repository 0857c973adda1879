"""The `onbeat` command.

Each subcommand lives in its own module, which defines `add_arguments(parser)` and `run(args) -> int`. Only
the chosen command's module is imported, so `onbeat play` never pays for torch and `onbeat --help` is instant.
"""
import argparse
import importlib
import logging
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any

from onbeat.commands.arguments import require_finite_floats
from onbeat.core.errors import OnbeatError

logger = logging.getLogger(__name__)

# What `systemctl stop`, `docker stop`, a closed SSH session and Ctrl-C send: all three stop onbeat the same way.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# The packages of the optional extras: a command that needs one says which extra to install.
EXTRA_OF = {"torch": "train", "onnx": "train", "onnxscript": "train", "pandas": "train", "mir_eval": "train",
            "onnxruntime": "cpu", "aalink": "clock", "mido": "clock", "rtmidi": "clock"}

# command words -> (module, one-line help)
COMMANDS = {
    ("info",): ("onbeat.commands.info", "versions, ONNX providers, audio devices, data and model locations"),
    ("play",): ("onbeat.commands.play",
                "dance to a file (heard through the speakers) or the --demo track, stream over OSC"),
    ("live",): ("onbeat.commands.play", "dance to live input from a sound device, stream over OSC"),
    ("view",): ("onbeat.commands.view",
                "replay a motion (.npz/.bvh) on the browser stage, with play/pause and scrubbing"),
    ("render",): ("onbeat.commands.render",
                  "draw a motion (.npz/.bvh) as a skeleton video (.mp4/.gif), optionally with music"),
    ("export-bvh",): ("onbeat.commands.export_bvh", "write a motion file (.npz/.bvh or a data set sequence) as BVH"),
    ("export",): ("onbeat.commands.export", "export a trained model's streaming step to ONNX"),
    ("dataset", "build"): ("onbeat.commands.dataset", "build the cached training windows from the real data sets"),
    ("dataset", "check"): ("onbeat.commands.dataset_check", "rotation pops and FK errors of the data, per collection"),
    ("graph", "build"): ("onbeat.commands.graph", "build the graph choreographer's motion database (research data or "
                                                  "the shipped models' dances)"),
    ("train",): ("onbeat.commands.train", "train a choreographer (badm or codes)"),
    ("train-beats",): ("onbeat.commands.train_beats",
                       "train the ear's beat activation networks on annotated clips (gtzan-dev)"),
    ("eval", "beats"): ("onbeat.commands.eval_beats",
                        "beat-tracking scores on annotated clips (mir_eval), cross-validated"),
    ("eval", "dance"): ("onbeat.commands.eval_dance",
                        "dance metrics (FID, diversity, beat alignment, freeze) for real data and models"),
    ("bench", "beats"): ("onbeat.commands.bench_beats",
                         "onbeat's online beat tracker next to madmom's (when installed apart)"),
    ("bench", "model"): ("onbeat.commands.bench_model", "per-step latency: torch eager vs onnxruntime"),
    ("bench", "live"): ("onbeat.commands.bench_live", "output jitter and audio-to-OSC latency of the live engine"),
    ("bench", "soak"): ("onbeat.commands.bench_live",
                        "long run of the full pipeline: frames, late frames, jitter, memory"),
    ("bench", "crowd"): ("onbeat.commands.bench_crowd",
                          "N dancers from one engine: frames on time, cost per dancer, jitter"),
    ("bench", "feet"): ("onbeat.commands.bench_feet",
                        "cost of the finishing every slice gets (key poses, grounded feet)"),
    ("bench", "fuzz"): ("onbeat.commands.bench_fuzz",
                        "structure-aware fuzzing of control datagrams, WAV/FLAC files, ONNX metadata"),
}


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Says "(default: X)" after every option whose help does not already say its default (None and False are
    not worth saying)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument mistake is one line in the CLI's voice, like any other user mistake."""

    def error(self, message):
        raise OnbeatError(f"{message} (see {self.prog} --help)")


def build_parser(argv):
    """The parser for `argv`: all commands are listed, only the one being run gets its own arguments."""
    parser = _Parser(prog="onbeat", description="Real-time, music-driven 3D dance generation.")
    groups: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="command", metavar="COMMAND", required=True)}
    chosen = None
    for words, (module, help_text) in COMMANDS.items():
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                group_parser = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} subcommands")
                groups[prefix] = group_parser.add_subparsers(dest="_".join(prefix), metavar="WHAT", required=True)
        sub = groups[words[:-1]].add_parser(words[-1], help=help_text, description=help_text, formatter_class=_Help)
        sub.set_defaults(_module=module, _words=words)
        if tuple(argv[:len(words)]) == words:
            chosen = (sub, module)
    if chosen:
        sub, module = chosen
        importlib.import_module(module).add_arguments(sub)
        require_finite_floats(sub)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is at the time of the message (a test may swap it)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_Prefixed())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


class _Prefixed(logging.Formatter):
    """'onbeat: warning: ...' for warnings, 'onbeat: ...' for information: the CLI's one voice."""

    def format(self, record):
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"onbeat: {level}{record.getMessage()}"


def configure_logging():
    """One handler on the `onbeat` logger, to stderr; every module logs through `logging.getLogger(__name__)`."""
    logger = logging.getLogger("onbeat")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def graceful_stop(stop):
    """While the show runs: the first of SIGINT, SIGTERM or SIGHUP calls `stop` (the engine ends its output loop
    and everything closes as at the end of --seconds, so a recording is finished), later ones only say that
    onbeat is finishing. Outside, SIGTERM and SIGHUP interrupt like Ctrl-C (`main`)."""
    received: list[int] = []

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if received:
            logger.info("%s: already stopping, finishing up", name)
        else:
            logger.info("%s: stopping, finishing up", name)
            # Not `stop()` in here: it takes a lock that the interrupted code of this thread may be holding.
            threading.Thread(target=stop, name="onbeat-stop", daemon=True).start()
        received.append(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield received
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    configure_logging()
    in_main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS[1:]} if in_main_thread else {}
    try:
        args = build_parser(argv).parse_args(argv)
        return importlib.import_module(args._module).run(args) or 0
    except ModuleNotFoundError as e:
        extra = EXTRA_OF.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        words = next((" ".join(w) for w in COMMANDS if tuple(argv[:len(w)]) == w), "")
        print(f"onbeat: error: `onbeat {words}` needs {e.name}: install the {extra} extra "
              f"(pip install 'onbeat[{extra}]')", file=sys.stderr)
        return 2
    except OnbeatError as e:
        print(f"onbeat: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onbeat: stopped", file=sys.stderr)
        return 130
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


if __name__ == "__main__":
    sys.exit(main())
