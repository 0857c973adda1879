"""`onbeat play [FILE | --demo]` and `onbeat live [--device D]`: dance in real time, stream the poses over OSC.

`play` dances to a file (heard through the speakers unless `--silent`) or to the built-in synthetic drum track
(`--demo`, for a machine with no sound card); `live` dances to a sound input device. Both send VMC to
127.0.0.1:39539 (`--vmc`, `--no-vmc`), optionally plain onbeat OSC (`--osc`), optionally record the session
(`--record`), and listen for control messages on 127.0.0.1:39540 (see `onbeat.stream.control`).
"""

from onbeat.core.errors import OnbeatError
from onbeat.stream.control import DEFAULT_CONTROL_PORT, ControlServer, Controls
from onbeat.stream.dashboard import Dashboard, plain_line, snapshot
from onbeat.stream.engine import Engine
from onbeat.choreographers.library import Library, first_choice
from onbeat.stream.sinks import DEFAULT_OSC, DEFAULT_VMC, OnbeatOscSink, Recorder, Speakers, VmcSink, parse_target


def add_arguments(parser):
    live = parser.prog.split()[-1] == "live"
    if live:
        parser.add_argument("--device", help="input device name (or part of it) or index; default: the system's")
    else:
        parser.add_argument("file", nargs="?", help="audio file to dance to (wav, flac, ogg, mp3, ...)")
        parser.add_argument("--demo", action="store_true", help="dance to the built-in synthetic drum track")
        parser.add_argument("--bpm", type=float, default=120.0, help="tempo of the --demo track (default 120)")
        parser.add_argument("--silent", action="store_true", help="do not play the music through the speakers")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: the whole file / "
                                                      "until Ctrl-C)")
    parser.add_argument("--model", default="default",
                        help="'default' (the shipped model, else the groove), 'groove', 'badm', 'codes' or an .onnx path")
    parser.add_argument("--vmc", default=f"{DEFAULT_VMC[0]}:{DEFAULT_VMC[1]}", metavar="HOST:PORT",
                        help="VMC target (default %(default)s)")
    parser.add_argument("--no-vmc", action="store_true", help="do not send VMC")
    parser.add_argument("--osc", metavar="HOST:PORT", help=f"also send the plain onbeat OSC schema (e.g. "
                                                           f"{DEFAULT_OSC[0]}:{DEFAULT_OSC[1]})")
    parser.add_argument("--record", metavar="OUT.npz|OUT.bvh", help="save the dance (and the audio as .wav)")
    parser.add_argument("--control-host", default="127.0.0.1",
                        help="address the OSC control input listens on (default %(default)s: this machine only)")
    parser.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT,
                        help="OSC control input port (default %(default)s; 0 = off)")
    parser.add_argument("--rate", type=float, default=60.0, help="output frames per second (default 60)")
    parser.add_argument("--quiet", action="store_true", help="a plain status line every few seconds")


def run(args):
    if not 1 <= args.rate <= 240:
        raise OnbeatError(f"--rate {args.rate}: choose 1..240 frames per second")
    if args.seconds is not None and args.seconds <= 0:
        raise OnbeatError(f"--seconds {args.seconds}: must be positive")
    library = Library()
    model = first_choice(library, args.model)
    controls = Controls(model=model)
    sinks, control, source = [], None, None
    try:
        sinks = open_sinks(args)
        source, speakers = open_source(args)
        if speakers is not None:
            sinks.append(speakers)
        engine = Engine(source, {model: library.load(model)}, sinks, controls=controls, rate=args.rate,
                        library=library)
        if args.control_port:
            control = ControlServer(controls, args.control_host, args.control_port)
        dashboard = Dashboard(engine, quiet=args.quiet).start()
        try:
            engine.run(args.seconds)
        except KeyboardInterrupt:
            engine.stop()
        finally:
            dashboard.close()
        print(plain_line(snapshot(engine)), flush=True)
        return 0
    finally:
        for closable in (control, source, *sinks):
            if closable is not None:
                closable.close()


def open_sinks(args):
    sinks = []
    if not args.no_vmc:
        sinks.append(VmcSink(*parse_target(args.vmc, DEFAULT_VMC)))
    if args.osc:
        sinks.append(OnbeatOscSink(*parse_target(args.osc, DEFAULT_OSC)))
    if args.record:
        sinks.append(Recorder(args.record, args.rate))
    return sinks


def open_source(args):
    """(source, speakers or None): the audio to dance to, and an output for the demo track."""
    from onbeat.ear import sources
    if args._words == ("live",):
        return sources.DeviceSource(args.device), None
    if args.file and args.demo:
        raise OnbeatError("give either a FILE or --demo, not both")
    if args.file:
        return sources.FileSource(args.file, play=not args.silent), None
    if not args.demo:
        raise OnbeatError("nothing to dance to: give an audio FILE, or --demo for the built-in track")
    source = sources.SyntheticSource(bpm=args.bpm)
    return source, None if args.silent else Speakers.open(source.sample_rate, source.channels)
