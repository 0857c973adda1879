"""`onbeat bench beats`: onbeat's online beat tracker next to madmom's online tracker (when installed apart)."""
import json
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.core.paths import data_root
from onbeat.evaluation.bench_beats import bench, print_bench


def add_arguments(parser):
    parser.add_argument("--data", type=Path, help="folder of audio + <name>.beats annotations, or the shared "
                        "data folder (its gtzan-dev/; the default)")
    parser.add_argument("--clips", type=int, help="only the first N clips (sorted by name)")
    parser.add_argument("--madmom", type=Path, help="a Python that imports madmom (default: $ONBEAT_MADMOM_PYTHON, "
                        "else madmom-env/venv/bin/python beside the checkout or in the home folder)")
    parser.add_argument("--json", type=Path, help="also write all numbers to this JSON file")


def run(args):
    data_dir = args.data or data_root()
    if data_dir is None:
        raise OnbeatError("no data folder: pass --data or set ONBEAT_DATA")
    result = bench(data_dir, args.clips, args.madmom)
    print_bench(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0
