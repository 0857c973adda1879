"""`onbeat bench live` and `onbeat bench soak`: the live engine measured end to end."""
import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.evaluation.bench_live import after_lock, beat_errors, jack_latency, report_output, run_pipeline, soak


def add_arguments(parser):
    if parser.prog.split()[-1] == "soak":
        parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
        parser.add_argument("--attack", action="store_true", help="flood the control input with grammar-built OSC "
                                                                  "from another process during the run")
    else:
        parser.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
        parser.add_argument("--jack", action="store_true", help="clicks through a private JACK server instead of "
                                                                 "the synthetic track (needs jackd, jack_metro)")
    parser.add_argument("--bpm", type=float, default=120.0, help="tempo of the synthetic track (default 120)")
    parser.add_argument("--model", default="default", help="'default', 'groove', 'badm', 'codes' or an .onnx path")
    parser.add_argument("--rate", type=float, default=60.0, help="output frames per second (default 60)")


def run(args):
    if args._words == ("bench", "soak"):
        return soak(args)
    if not args.seconds > 2:
        raise OnbeatError(f"--seconds {args.seconds}: run at least 3 seconds")
    if args.jack:
        return jack_latency(args)
    engine, source, received = run_pipeline(args.seconds, args.bpm, args.model, args.rate)
    report_output(engine, received, args.rate)
    beats = received["beats"]
    if len(beats) == 0:
        print("beat events: none received (the beat tracker never locked)")
        return 1
    lock = beats[0, 1]
    errors = beat_errors(after_lock(beats) - engine.started_wall, source.beat_times(args.seconds + 1.0))
    if len(errors) == 0:
        print(f"beat events: {len(beats)}, first at {lock:.2f} s; too few after lock to score")
        return 1
    within = np.mean(np.abs(errors) <= 50.0)
    print(f"beat events: {len(beats)}, first at {lock:.2f} s; from 2 s after lock: {len(errors)} events, "
          f"arrival - true beat: median {np.median(errors):+.1f} ms, p95 |err| {np.percentile(np.abs(errors), 95):.1f} "
          f"ms, max |err| {np.abs(errors).max():.1f} ms, within ±50 ms: {100 * within:.0f}%")
    return 0
