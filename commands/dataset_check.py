"""`onbeat dataset check`: rotation pops and FK errors of the imported data, per collection (and motion beats)."""
from pathlib import Path

from onbeat.core.errors import OnbeatError


def add_arguments(parser):
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the shared data)")
    parser.add_argument("--beats", action="store_true",
                        help="also score beats estimated from the motion against Motorica's music beats")


def run(args):
    from onbeat.core.paths import data_root
    from onbeat.evaluation.data_check import report
    root = args.data or data_root()
    if root is None or not Path(root).is_dir():
        raise OnbeatError(f"{args.data or 'shared data'}: data folder not found (pass --data or set ONBEAT_DATA)")
    for line in report(Path(root), beats=args.beats):
        print(line, flush=True)
    return 0
