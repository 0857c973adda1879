"""`onbeat graph build`: the `graph` choreographer's motion database, from the research data or the shipped models.

With the research data (`../shared/data`, or `--dataset FILE` from `onbeat dataset build`, `--split train` to keep
its validation takes out), the database holds their motion, which may not be redistributed: it is written for this
machine, by default where `--model graph` finds it first (`onbeat.core.paths.user_models()`). `--generated` builds
the database onbeat ships instead: dances of its own shipped models, no recorded motion.
"""
from pathlib import Path

from onbeat.core.errors import OnbeatError


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, default=None, help="data root (default: the shared data)")
    source.add_argument("--dataset", type=Path, help="a dataset file from `onbeat dataset build` instead")
    source.add_argument("--generated", action="store_true",
                        help="dances of the shipped models to the demo drums: the database onbeat may ship")
    parser.add_argument("--sources", default="ballroom,motorica,bvh", help="comma-separated data sets (with --data)")
    parser.add_argument("--split", choices=("all", "train"), default="all",
                        help="with --dataset: every take, or only the training split's (for evaluation)")
    parser.add_argument("--seconds", type=float, default=60.0, help="with --generated: seconds per model and tempo")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="database file (.npz); default: graph.npz where `--model graph` looks first")


def run(args):
    from onbeat.choreographers.datafile import save_data_file
    from onbeat.core.paths import data_root, user_models
    from onbeat.models import dataset, graph_database

    output = args.output or user_models() / "graph.npz"
    if output.suffix.lower() != ".npz":
        raise OnbeatError(f"{output}: a graph database is an .npz file")
    if args.generated:
        tracks = graph_database.generated_tracks(args.seconds, progress=True)
        contents = graph_database.GENERATED_CONTENTS.format(
            models=", ".join(graph_database.GENERATED_MODELS), seconds=args.seconds,
            bpm="/".join(f"{bpm:.0f}" for bpm in graph_database.GENERATED_BPM))
    else:
        if args.dataset:
            arrays = dataset.WindowData.load(args.dataset).arrays
            tracks = dataset.tracks_of(arrays, 0 if args.split == "train" else None)
        else:
            if args.split != "all":
                raise OnbeatError("--split train needs --dataset (the split is the dataset file's)")
            root = args.data or data_root()
            if root is None or not Path(root).is_dir():
                raise OnbeatError(f"{args.data or 'shared data'}: data folder not found (pass --data or set "
                                  "ONBEAT_DATA)")
            sources = [s.strip() for s in args.sources.split(",") if s.strip()]
            tracks = dataset.load_tracks(root, sources, progress=True)
        contents = graph_database.research_contents(tracks)
    arrays, metadata = graph_database.build(tracks, contents=contents)
    save_data_file(output, "graph", "database", metadata, arrays)
    print(graph_database.summary(arrays, metadata))
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB)")
    return 0
