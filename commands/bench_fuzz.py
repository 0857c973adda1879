"""`onbeat bench fuzz`: structure-aware fuzzing of what onbeat reads from outside: control datagrams, WAV and
FLAC files, ONNX metadata (see `onbeat.evaluation.fuzz`). Coverage-guided with atheris when it is installed
(`pip install onbeat[fuzz]`), else random; prints the cases tried and saves each failing input."""
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.evaluation.fuzz import TARGETS, atheris_available, replay, run_atheris, run_random


def add_arguments(parser):
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all", help="what to fuzz (default all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long per target (default 60)")
    parser.add_argument("--driver", choices=["atheris", "random"],
                        help="atheris (coverage-guided; the default when installed) or random")
    parser.add_argument("--out", default="runs/fuzz", help="folder for failing inputs (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random driver")
    parser.add_argument("--replay", metavar="FILE", help="run one saved failing input of --target again")


def run(args):
    if args.replay:
        if args.target == "all":
            raise OnbeatError("--replay: name the --target the input belongs to")
        print(f"{args.replay}: {replay(args.target, Path(args.replay))}")
        return 0
    if not args.seconds > 0:
        raise OnbeatError(f"--seconds {args.seconds}: must be positive")
    driver = args.driver or ("atheris" if atheris_available() else "random")
    if driver == "atheris" and not atheris_available():
        raise OnbeatError("--driver atheris: atheris is not installed (pip install onbeat[fuzz])")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for target in TARGETS if args.target == "all" else [args.target]:
        if driver == "atheris":
            report = run_atheris(target, args.seconds, out)
        else:
            report = run_random(target, args.seconds, out, args.seed)
        print("\n".join(report.lines()), flush=True)
        failures += len(report.failures)
    return 1 if failures else 0
