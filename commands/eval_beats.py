"""`onbeat eval beats`: beat-tracking scores on annotated clips."""
import json
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.core.paths import data_root
from onbeat.evaluation.beats import evaluate, print_report


def add_arguments(parser):
    parser.add_argument("--data", type=Path, help="shared data folder holding gtzan-dev/ (default: the shared data)")
    parser.add_argument("--clips", type=int, help="evaluate only the first N clips (sorted by name)")
    parser.add_argument("--json", type=Path, help="also write all numbers to this JSON file")


def run(args):
    data_dir = args.data or data_root()
    if data_dir is None:
        raise OnbeatError("no data folder: pass --data or set ONBEAT_DATA")
    result = evaluate(data_dir, args.clips)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
