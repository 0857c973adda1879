"""`onbeat eval dance`: score real dancers and models on a test set of dances with music (see
`onbeat.evaluation.dance`), print the table, optionally write JSON, a report folder and the model cards."""
import json
import logging
import shlex
import sys
from pathlib import Path

from onbeat.core.errors import OnbeatError

logger = logging.getLogger(__name__)


def add_arguments(parser):
    from onbeat.core.paths import data_root
    root = data_root()
    default = root / "ballroom" if root is not None else None
    parser.add_argument("--data", type=Path, default=default, required=default is None,
                        help="a dataset file (its validation split) or any folder of dances with music (ballroom "
                             "layout, BVH/AIST++/.npz motion files with audio of the same stem)"
                             + (f"; default {default}" if default else ""))
    parser.add_argument("--models", default=None,
                        help="comma-separated: live path: a model name (default, badm, codes, graph, groove) or "
                             "an exported .onnx/.npz path (default: default, the other shipped kind, groove); "
                             "torch path: badm, codes or kind=checkpoint.pt (default: badm,codes)")
    parser.add_argument("--path", choices=("live", "torch"), default="live",
                        help="live: onbeat play's pipeline on a simulated clock (default); torch: the checkpoint's "
                             "generate on the song's features (training-time checks)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each dance (default 60, or the song)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per model (0, 1, ...; default 2)")
    parser.add_argument("--songs", type=int, help="only the first N songs (by name)")
    parser.add_argument("--kinetic", choices=("onbeat", "published"), default="onbeat",
                        help="kinetic features: onbeat's (true acceleration) or Bailando's published code")
    parser.add_argument("--no-key-poses", action="store_true", help="skip the key-pose runs (live path)")
    parser.add_argument("--json", type=Path, help="write every number with its interval here")
    parser.add_argument("--report", type=Path, help="write plots and a clip per model into this folder")
    parser.add_argument("--cards", type=Path, help="rewrite the metrics of the model cards in this folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_models(text, path):
    """[(row name, spec)]: live specs are names or .onnx paths; torch specs are (kind, checkpoint)."""
    from onbeat.choreographers.library import DEFAULT, Library
    from onbeat.core.paths import SHIPPED_CHECKPOINTS, shipped_checkpoint
    names = Library().names() if path == "live" else []  # what the live path can load by name
    # the default, the other shipped kinds, then the groove
    live = ",".join(["default", *(kind for kind in SHIPPED_CHECKPOINTS if kind != DEFAULT), "groove"])
    items = [s.strip() for s in (text or (live if path == "live" else "badm,codes")).split(",") if s.strip()]
    models = []
    for item in items:
        if path == "live":
            exported = item.lower().endswith((".onnx", ".npz"))
            if not exported and item not in names:
                raise OnbeatError(f"--models: unknown model {item!r} (choose {', '.join(names)} or an exported "
                                  ".onnx/.npz path)")
            models.append((Path(item).stem if exported else item, item))
            continue
        from onbeat.choreographers.kinds import KINDS
        kind, _, checkpoint = item.partition("=")
        if kind not in KINDS:
            raise OnbeatError(f"--models: unknown model {kind!r} (choose {', '.join(sorted(KINDS))})")
        checkpoint = Path(checkpoint) if checkpoint else shipped_checkpoint(kind)
        if not checkpoint.is_file():
            raise OnbeatError(f"{checkpoint}: no such checkpoint for {kind}")
        models.append((kind, (kind, checkpoint)))
    if len({name for name, _ in models}) != len(models):
        raise OnbeatError("--models: each model once")
    return models


def run(args):
    if args.path == "torch":
        import torch  # noqa: F401 - the train extra: a user without it is told which extra, before any work
    from onbeat.evaluation.dance import evaluate, format_table, to_json
    from onbeat.evaluation.songs import describe, load_songs
    if args.seconds <= 0:
        raise OnbeatError(f"--seconds must be positive, got {args.seconds}")
    if args.seeds < 1:
        raise OnbeatError(f"--seeds must be at least 1, got {args.seeds}")
    models = parse_models(args.models, args.path)  # checked before the (slow) data loading
    songs = load_songs(args.data, args.songs)
    logger.info("%d songs from %s; dancing %s", len(songs), args.data, ", ".join(name for name, _ in models) or "-")
    evaluation = evaluate(songs, models, args.seconds, tuple(range(args.seeds)), args.path,
                          args.kinetic == "published", not args.no_key_poses, quiet=args.quiet)
    meta = evaluation.meta
    meta["test_set"] = describe(args.data)
    print(f"{len(songs)} songs, {meta['test_set']}; {args.seconds:g} s each (or the song), seeds "
          f"{', '.join(map(str, meta['seeds']))}, {args.path} path at {meta['fps']} fps; kinetic features: "
          f"{meta['kinetic']}; intervals: {meta['intervals']}; load average "
          f"{', '.join(f'{x:.1f}' for x in meta['load_average'])}")
    print(format_table(evaluation))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(evaluation), indent=1))
        print(f"wrote {args.json}")
    if args.report:
        from onbeat.evaluation.report import write_report
        written = write_report(evaluation, args.report)
        print(f"wrote {len(written)} files into {args.report}")
    if args.cards:
        from onbeat.evaluation.cards import write_cards
        command = "onbeat " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else \
            "onbeat eval dance"
        for card in write_cards(evaluation, args.cards, command):
            print(f"wrote {card}")
    return 0
