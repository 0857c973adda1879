"""`onbeat eval dance`: dance metrics for real data and models."""
import time
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.evaluation import metrics
from onbeat.evaluation.dance import beat_times, features_of, format_table, load_choreographer, parse_models, plot_speed, positions_of, scores, validation_songs


def add_arguments(parser):
    parser.add_argument("--data", type=Path, default=Path("data.npz"),
                        help="dataset file from `onbeat dataset build` (or a data folder to build it from)")
    parser.add_argument("--models", default="badm,codes", help="comma-separated kinds, or kind=checkpoint.pt")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated dance")
    parser.add_argument("--clips", type=int, default=None, help="only the first N validation songs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for generation (1 is fastest for these small models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="save the speed curve vs beats of the first song here (.png)")


def run(args):
    import torch
    torch.set_num_threads(args.threads)
    if args.seconds <= 0:
        raise OnbeatError(f"--seconds must be positive, got {args.seconds}")
    models = parse_models(args.models)  # checked before the (slow) data loading
    songs, train_dances, fps = validation_songs(args.data, args.clips)
    frames = int(args.seconds * fps)
    reference = [positions_of(rows[:frames], fps) for rows, _ in songs]
    reference_speed = float(np.median(np.concatenate([metrics.mean_joint_speed(p, fps) for p in reference])))
    reference_features = features_of(reference, fps)
    table = {"real (val)": scores(reference, songs, fps, reference_features, reference_speed, reference_features),
             "real (train)": scores([positions_of(r[:frames], fps) for r in train_dances], None, fps,
                                    reference_features, reference_speed)}
    dances = {"real": reference}
    for kind, checkpoint in models:
        model = load_choreographer(kind, checkpoint)
        generated, seconds = [], 0.0
        for index, (_, music) in enumerate(songs):
            started = time.perf_counter()
            rows = model.generate(music[:frames], seed=args.seed + index)
            seconds += time.perf_counter() - started
            generated.append(positions_of(rows, fps))
        table[kind] = scores(generated, songs, fps, reference_features, reference_speed)
        table[kind]["x realtime"] = sum(len(p) for p in generated) / fps / seconds
        dances[kind] = generated
    print(f"{len(songs)} validation songs, {args.seconds:g} s each, {fps:g} fps; generation: torch eager, "
          f"{args.threads} threads")
    print(format_table(table))
    if args.plot:
        plot_speed(args.plot, {name: d[0] for name, d in dances.items()}, beat_times(songs[0][1], fps), fps)
        print(f"wrote {args.plot}")
    return 0
