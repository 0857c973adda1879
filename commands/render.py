"""`onbeat render`: draw a motion file as a skeleton video (.mp4 or .gif), optionally with its music."""
from onbeat.core.errors import OnbeatError
from onbeat.exporters.render import GIF_FPS, render_positions


def add_arguments(parser):
    parser.add_argument("input", help="motion file: onbeat .npz, .bvh, or a data set sequence")
    parser.add_argument("-o", "--output", required=True, help="video to write, .mp4 or .gif")
    parser.add_argument("--audio", help="music to mux in (mp4 only), aligned with the motion's first frame")
    parser.add_argument("--fps", type=float, help=f"video frame rate (default: the motion's; {GIF_FPS:g} for .gif, "
                                                   "whose frame delays are whole centiseconds)")
    parser.add_argument("--start", type=float, default=0.0, help="first second of the motion to draw")
    parser.add_argument("--seconds", type=float, help="how many seconds to draw (default: to the end)")
    parser.add_argument("--beats", action="store_true", help="flash a dot on the music's beats (needs --audio)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from onbeat.core.importers import load_motion
    from onbeat.core.skeleton import JOINT_NAMES, PARENTS

    fps = args.fps or (GIF_FPS if args.output.lower().endswith(".gif") else None)
    motion = load_motion(args.input, fps)
    first = int(round(max(args.start, 0.0) * motion.fps))
    last = motion.num_frames if args.seconds is None else first + max(1, int(round(args.seconds * motion.fps)))
    if first >= motion.num_frames:
        raise OnbeatError(f"{args.input}: --start {args.start} is past the end ({motion.duration:.2f} s)")
    clip = motion.frames(first, last)
    beat_times = None
    if args.beats:
        if not args.audio:
            raise OnbeatError("--beats needs --audio: the beats are tracked in the music")
        from onbeat.ear.features import extract_file
        beat_times = extract_file(args.audio)[1]
    render_positions(clip.positions(), PARENTS, JOINT_NAMES, clip.fps, args.output, args.audio, first / motion.fps,
                     beat_times, quiet=args.quiet)
    print(f"wrote {args.output}: {clip.num_frames} frames, {clip.duration:.2f} s at {clip.fps:g} fps")
    return 0
