"""`onbeat bench feet`: the cost of the finishing every slice gets (key poses, grounded feet), ms per frame."""
import os

from onbeat.choreographers.library import Library
from onbeat.core.errors import OnbeatError
from onbeat.evaluation.bench_feet import bench_finishing, format_table


def add_arguments(parser):
    parser.add_argument("--models", default="groove,badm,codes",
                        help="comma-separated choreographers whose slices are finished (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of dance per choreographer")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the slices (default 3)")


def run(args):
    if not args.seconds > 0 or args.rounds < 1:
        raise OnbeatError("--seconds must be positive and --rounds at least 1")
    library = Library(seed=0)
    rows = {name: bench_finishing(library.load(name), args.seconds, args.rounds) for name in args.models.split(",")}
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPU cores, load average {load} (timings on a busy machine are upper bounds)")
    print(format_table(rows))
    return 0
