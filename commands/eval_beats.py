"""`onbeat eval beats`: beat-tracking scores on annotated clips, cross-validated."""
import json
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.core.paths import data_root
from onbeat.evaluation.beats import evaluate, print_report


def add_arguments(parser):
    parser.add_argument("--data", type=Path, help="folder of audio + <name>.beats annotations (beside them or in "
                        "beats/), or the shared data folder (its gtzan-dev/; the default)")
    parser.add_argument("--clips", type=int, help="evaluate only the first N clips (sorted by name)")
    parser.add_argument("--no-cv", action="store_true", help="score the shipped parameters instead of "
                        "cross-validating the filter parameters")
    parser.add_argument("--json", type=Path, help="also write all numbers to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args):
    data_dir = args.data or data_root()
    if data_dir is None:
        raise OnbeatError("no data folder: pass --data or set ONBEAT_DATA")
    result = evaluate(data_dir, args.clips, cross_validate=not args.no_cv, quiet=args.quiet)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0
