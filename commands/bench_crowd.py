"""`onbeat bench crowd`: a crowd of N dancers from one engine: frames, cost per dancer, jitter, at N = 1 ... 64."""
from onbeat.choreographers.crowd import MODES, check_count
from onbeat.commands.arguments import finite_float
from onbeat.core.errors import OnbeatError
from onbeat.evaluation.bench_crowd import SIZES, bench


def add_arguments(parser):
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="crowd sizes (default %(default)s)")
    parser.add_argument("--seconds", type=finite_float, default=10.0, help="seconds per size (default 10)")
    parser.add_argument("--clock-sizes", default="1,32", help="sizes also run at normal priority, to compare the "
                                                              "output clock (default %(default)s; '' for none)")
    parser.add_argument("--in-process-sizes", default="32", help="sizes also run with the model in the engine's "
                                                                  "process (default %(default)s; '' for none)")
    parser.add_argument("--model", default="badm", help="the dancers' model (default badm: its step is batched)")
    parser.add_argument("--crowd-mode", choices=MODES, default="free", help="how they dance (default free)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="also time the batched step on CUDA (IO binding) where onnxruntime has it")


def run(args):
    if not args.seconds >= 3:
        raise OnbeatError(f"--seconds {args.seconds}: run at least 3 seconds")
    sizes = _sizes(args.sizes)
    clock_sizes = _sizes(args.clock_sizes) if args.clock_sizes else []
    in_process = _sizes(args.in_process_sizes) if args.in_process_sizes else []
    bench(sizes, args.seconds, clock_sizes, args.model, args.crowd_mode, args.device, in_process)
    return 0


def _sizes(text):
    try:
        sizes = [int(size) for size in text.split(",")]
    except ValueError:
        raise OnbeatError(f"{text!r}: give crowd sizes separated by commas") from None
    for size in sizes:
        check_count(size)
    return sizes
