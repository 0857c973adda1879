"""`onbeat dataset build`: encode the real data sets into the cached training windows."""
from pathlib import Path

import pandas  # noqa: F401 - the train extra (Motorica's pickles): a user without it is told which extra, first

from onbeat.core.errors import OnbeatError
from onbeat.models.dataset import DEFAULT_SOURCES, build, load_tracks, save, summary


def add_arguments(parser):
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the shared data)")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES), help="comma-separated data sets")
    parser.add_argument("--window", type=int, default=120, help="frames per training window (30 fps)")
    parser.add_argument("--stride", type=int, default=30, help="frames between window starts")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of each style's takes held out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sequences (quick builds)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder for the songs' extracted features (default: OUTPUT's folder/feature-cache; "
                             "the extractor takes about a fifth of each song's length)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .npz")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from onbeat.core.paths import data_root
    root = args.data or data_root()
    if root is None or not Path(root).is_dir():
        raise OnbeatError(f"{args.data or 'shared data'}: data folder not found (pass --data or set ONBEAT_DATA)")
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    cache = args.cache or args.output.parent / "feature-cache"
    tracks = load_tracks(root, sources, progress=not args.quiet, limit=args.limit, cache=cache)
    arrays = build(tracks, args.window, args.stride, args.val_fraction, args.seed)
    save(args.output, arrays)
    print(summary(arrays))
    return 0
