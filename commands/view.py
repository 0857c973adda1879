"""`onbeat view dance.npz|dance.bvh [--audio song]`: replay a motion file on the browser stage, with play/pause
and scrubbing (the page of `onbeat play`, see `onbeat.stream.stage`)."""
import threading
from pathlib import Path

from onbeat.commands.play import add_stage_arguments
from onbeat.stream.stage import Stage


def add_arguments(parser):
    parser.add_argument("input", help="motion file: onbeat .npz, .bvh (any skeleton), or a data set sequence")
    parser.add_argument("--audio", help="music to play along (default: the .wav a recording left beside it)")
    add_stage_arguments(parser)
    parser.add_argument("--seconds", type=float, help="stop serving after this many seconds (default: Ctrl-C)")


def run(args):
    from onbeat.core.importers import load_motion
    motion = load_motion(args.input)
    audio = args.audio
    if audio is None and Path(args.input).with_suffix(".wav").is_file():
        audio = Path(args.input).with_suffix(".wav")  # what `--record` writes beside the motion
    with Stage(None, args.stage_host, args.stage_port, args.avatar, recording=motion, audio=audio) as stage:
        print(f"{args.input}: {motion.duration:.1f} s at {motion.fps:g} fps{f', with {audio}' if audio else ''}; "
              f"open {stage.url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait(args.seconds)
        except KeyboardInterrupt:
            pass
    return 0
