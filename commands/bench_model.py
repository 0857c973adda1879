"""`onbeat bench model`: per-step latency, torch eager vs onnxruntime."""
import os
from pathlib import Path

from onbeat.choreographers.kinds import KINDS, installed_models
from onbeat.core.errors import OnbeatError
from onbeat.core.paths import shipped_checkpoint
from onbeat.evaluation.bench_model import bench_data, bench_model, format_table


def add_arguments(parser):
    parser.add_argument("--model", choices=[*sorted(KINDS), "all"], default="all",
                        help="model kind to bench (default: all of them, each with its shipped checkpoint)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of dance per configuration and round")
    parser.add_argument("--rounds", type=int, default=2, help="turns each configuration takes (interleaved)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--checkpoint", help="checkpoint to bench (one model only; for graph its database .npz); "
                                             "default: the shipped one")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    installed = installed_models()
    kinds = [kind for kind in sorted(KINDS) if shipped_checkpoint(kind).is_file() or (
        KINDS[kind].model is None and kind in installed)] if args.model == "all" else [args.model]
    if args.checkpoint and len(kinds) > 1:
        raise OnbeatError("--checkpoint needs one --model")
    try:
        threads = [int(n) for n in args.threads.split(",")]
    except ValueError:
        raise OnbeatError(f"--threads {args.threads!r}: expected comma-separated numbers like 1,2") from None
    rows = []
    for kind in kinds:
        if KINDS[kind].model is None:  # data, not a trained model: its numpy runtime alone
            if not args.checkpoint and kind not in installed:
                raise OnbeatError(f"{kind}: no database installed (build one with `onbeat {kind} build`)")
            rows += bench_data(kind, Path(args.checkpoint) if args.checkpoint else installed[kind], args.seconds,
                               args.rounds)
            continue
        checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_checkpoint(kind)
        rows += bench_model(kind, checkpoint, args.seconds, args.rounds, threads, args.quiet)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPU cores, load average {load} (the real-time factors assume these cores are free)")
    print(format_table(rows))
    return 0
