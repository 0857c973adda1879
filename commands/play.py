"""`onbeat play [FILE | --demo]` and `onbeat live [--device D]`: dance in real time, stream the poses over OSC.

`play` dances to a file (heard through the speakers unless `--silent`) or to the built-in synthetic drum track
(`--demo`, for a machine with no sound card); `live` dances to a sound input device. Both send VMC to
127.0.0.1:39539 (`--vmc`, `--no-vmc`), optionally plain onbeat OSC (`--osc`), optionally record the session
(`--record`), listen for control messages on 127.0.0.1:39540 (see `onbeat.stream.control`), and serve the
browser stage, the dance on a 3D avatar, at http://127.0.0.1:39542/ (`--no-stage`; see `onbeat.stream.stage`).
The beat clock can follow a DJ's: `--link` (Ableton Link), `--midi-clock` (see `onbeat.ear.clocks`).
`--dancers N` dances a crowd from this one process (see `onbeat.stream.crowd`): each dancer its own VMC port.
"""
import logging
from pathlib import Path

from onbeat.choreographers.base import choose_style
from onbeat.choreographers.library import Library, first_choice
from onbeat.commands.arguments import finite_float, output_rate, port
from onbeat.commands.cli import graceful_stop
from onbeat.core.errors import OnbeatError
from onbeat.stream.control import DEFAULT_CONTROL_PORT, Controls, ControlServer
from onbeat.stream.dashboard import Dashboard, plain_line, snapshot
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import DEFAULT_OSC, DEFAULT_VMC, OnbeatOscSink, Recorder, Sink, Speakers, VmcSink, parse_target
from onbeat.stream.stage import DEFAULT_STAGE_PORT, Stage

logger = logging.getLogger(__name__)
MOTION_SUFFIXES = (".npz", ".bvh", ".pkl")


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
                        help="'default' (the shipped model, else the groove), 'groove', 'badm', 'codes', 'graph' or an "
                             "export's path (.onnx, .npz)")
    parser.add_argument("--style", help="dance style, for a model that knows styles (`onbeat info` lists each model's; "
                                        "/onbeat/style changes it while dancing)")
    parser.add_argument("--vmc", action="append", metavar="HOST:PORT",
                        help=f"VMC target, repeat for several (default {DEFAULT_VMC[0]}:{DEFAULT_VMC[1]})")
    parser.add_argument("--no-vmc", action="store_true", help="do not send VMC")
    parser.add_argument("--vmc-upper-chest", action="store_true",
                        help="the avatars have an UpperChest bone: send it on its own (default: its turn is folded "
                             "into Chest, right on every humanoid)")
    parser.add_argument("--osc", metavar="HOST:PORT", help=f"also send the plain onbeat OSC schema (e.g. "
                                                           f"{DEFAULT_OSC[0]}:{DEFAULT_OSC[1]})")
    parser.add_argument("--record", metavar="OUT.npz|OUT.bvh", help="save the dance (and the audio as .wav)")
    parser.add_argument("--control-host", default="127.0.0.1",
                        help="address the OSC control input listens on (default %(default)s: this machine only)")
    parser.add_argument("--control-port", type=port, default=DEFAULT_CONTROL_PORT,
                        help="OSC control input port (default %(default)s; 0 = off)")
    parser.add_argument("--link", action="store_true",
                        help="join the Ableton Link session: its tempo and beat lead the dance while it has peers")
    parser.add_argument("--link-lead", action="store_true",
                        help="join the Link session and publish onbeat's own tempo and beat to it")
    parser.add_argument("--midi-clock", nargs="?", const="", metavar="PORT",
                        help="follow MIDI beat clock from this input (name or part of it; default the first)")
    add_stage_arguments(parser)
    parser.add_argument("--no-stage", action="store_true", help="do not serve the browser stage")
    parser.add_argument("--rate", type=output_rate, default=60.0, help="output frames per second (default 60)")
    parser.add_argument("--quiet", action="store_true", help="a plain status line every few seconds")
    add_crowd_arguments(parser)


def add_crowd_arguments(parser):
    from onbeat.choreographers.crowd import FORMATIONS, MODES
    crowd = parser.add_argument_group("crowd (--dancers N > 1)")
    crowd.add_argument("--dancers", type=int, default=1, help="how many dancers (default 1); dancer i sends VMC "
                                                              "to the --vmc port + i x --vmc-step")
    crowd.add_argument("--formation", choices=FORMATIONS, default="line", help="where they stand (default line)")
    crowd.add_argument("--spacing", type=finite_float, default=1.5, help="metres between neighbours (default 1.5)")
    crowd.add_argument("--crowd-mode", choices=MODES, default="free",
                       help="free: each its own dance; unison: the same moves; canon: each --offset-beats after the "
                            "one before; leader: the others follow dancer 0 --offset-beats later (default free)")
    crowd.add_argument("--offset-beats", type=finite_float, default=1.0, help="canon and leader delay (default 1)")
    crowd.add_argument("--vmc-step", type=int, default=1, help="port step between the dancers' VMC targets")
    crowd.add_argument("--energies", default="1", metavar="E[,E...]",
                       help="each dancer's energy (0..2, times the show's), repeated over the dancers")
    crowd.add_argument("--mirrors", default="0", metavar="0|1[,...]", help="mirror each dancer, e.g. 0,1 alternates")
    crowd.add_argument("--seed", type=int, help="dancer i dances seed SEED + i (default: a new dance each time)")


def add_stage_arguments(parser):
    """The stage's options, shared with `onbeat view`."""
    parser.add_argument("--stage-host", default="127.0.0.1",
                        help="address the stage page listens on (default %(default)s: this machine only; on any "
                             "other address its controls need the token printed at start)")
    parser.add_argument("--stage-port", type=port, help=f"stage page port (default {DEFAULT_STAGE_PORT}, or a free "
                                                       "one if that is taken; 0 = any free port)")
    parser.add_argument("--avatar", metavar="FILE.vrm|mannequin",
                        help="the dancer on the stage: your own VRM avatar, or the built-in mannequin (default: the "
                             "shipped wooden VRM avatar)")


def run(args):
    if args.seconds is not None and args.seconds <= 0:
        raise OnbeatError(f"--seconds {args.seconds}: must be positive")
    library = Library()
    model = first_choice(library, args.model)
    if args.dancers != 1:
        return run_crowd(args, library, model)
    styles = tuple(getattr(library.load(model), "styles", ()))
    if args.style is not None:
        try:
            choose_style(library.load(model), args.style)
        except OnbeatError as e:
            raise OnbeatError(f"--style {args.style} (model {model}): {e}") from None
    controls = Controls(model=model, style=args.style)
    sinks, clocks, control, source = [], [], None, None
    try:
        sinks = open_sinks(args)
        clocks = open_clocks(args)
        source, speakers = open_source(args)
        if speakers is not None:
            sinks.append(speakers)
        # The stage last: other mistakes are reported alone.
        stage = None if args.no_stage else open_stage(args, controls, styles)
        if stage is not None:
            sinks.append(stage)
        engine = Engine(source, {model: library.load(model)}, sinks, controls=controls, rate=args.rate,
                        library=library, clocks=clocks)
        if stage is not None:
            stage.attach(engine)
        if args.control_port:
            control = ControlServer(controls, args.control_host, args.control_port)
        # From here on a stop signal ends the show the way --seconds does: the recording is finished.
        with graceful_stop(engine.stop):
            try:
                dashboard = Dashboard(engine, quiet=args.quiet).start()
                try:
                    engine.run(args.seconds)
                finally:
                    dashboard.close()
                print(plain_line(snapshot(engine)), flush=True)
            finally:
                close_all([control, source, *clocks, *sinks])
                control, source, clocks, sinks = None, None, [], []
        return 0
    finally:
        close_all([control, source, *clocks, *sinks])


def run_crowd(args, library, model):
    """`--dancers N`: one engine, each dancer its own VMC target (and OSC dancer index, recording)."""
    from onbeat.stream.crowd import CrowdEngine, CrowdProcess, check_recipe, dancer_ports
    recipe = dict(model=model, count=args.dancers, shape=args.formation, spacing=args.spacing, mode=args.crowd_mode,
                  offset_beats=args.offset_beats, styles=args.style.split(",") if args.style else [None],
                  energies=number_list(args.energies), mirrors=[bool(m) for m in number_list(args.mirrors)],
                  seed=args.seed)
    check_recipe(**recipe)
    controls = Controls(model=model)
    shared, clocks, control, source, maker = [], [], None, None, None
    dancer_sinks: list[list[Sink]] = [[] for _ in range(args.dancers)]
    try:
        if not args.no_vmc:
            if args.vmc and len(args.vmc) > 1:
                raise OnbeatError("a crowd takes one --vmc HOST:PORT: dancer i gets PORT + i x --vmc-step")
            host, base = parse_target((args.vmc or [f"{DEFAULT_VMC[0]}:{DEFAULT_VMC[1]}"])[0], DEFAULT_VMC)
            avoid = [args.control_port, args.stage_port or DEFAULT_STAGE_PORT]
            ports = dancer_ports(base, args.vmc_step, args.dancers, avoid)
            for sinks, vmc_port in zip(dancer_sinks, ports, strict=True):
                sinks.append(VmcSink(host, vmc_port, upper_chest=args.vmc_upper_chest))
        if args.osc:
            for index, sinks in enumerate(dancer_sinks):
                sinks.append(OnbeatOscSink(*parse_target(args.osc, DEFAULT_OSC), dancer=index))
        if args.record:
            inputs = [path for path in (getattr(args, "file", None), args.model) if path]
            for index, sinks in enumerate(dancer_sinks):
                sinks.append(Recorder(dancer_path(args.record, index), args.rate, inputs=inputs))
        clocks = open_clocks(args)
        source, speakers = open_source(args)
        if speakers is not None:
            shared.append(speakers)
        stage = None if args.no_stage else open_stage(args, controls)
        if stage is not None:
            shared.append(stage)
        maker = CrowdProcess(recipe)  # the dancers' model runs in a process of its own
        engine = CrowdEngine(source, maker, dancer_sinks, shared, controls=controls, rate=args.rate, clocks=clocks)
        if stage is not None:
            stage.attach(engine)
        if args.control_port:
            control = ControlServer(controls, args.control_host, args.control_port)
        with graceful_stop(engine.stop):
            dashboard = Dashboard(engine, quiet=args.quiet).start()
            try:
                engine.run(args.seconds)
            finally:
                dashboard.close()
            print(plain_line(snapshot(engine)) + f" dancers={args.dancers}", flush=True)
        return 0
    finally:
        close_all([control, source, maker, *clocks, *shared, *(sink for sinks in dancer_sinks for sink in sinks)])


def number_list(text):
    try:
        return [float(item) for item in text.split(",")]
    except ValueError:
        raise OnbeatError(f"{text!r}: give numbers separated by commas") from None


def dancer_path(path, index):
    """OUT.npz → OUT.dancer03.npz: a crowd records one file per dancer."""
    path = Path(path)
    return str(path.with_name(f"{path.stem}.dancer{index:02d}{path.suffix}"))


def close_all(closables):
    for closable in closables:
        if closable is not None:
            closable.close()


def open_sinks(args):
    sinks: list[Sink] = []
    if not args.no_vmc:
        for target in args.vmc or [f"{DEFAULT_VMC[0]}:{DEFAULT_VMC[1]}"]:
            sinks.append(VmcSink(*parse_target(target, DEFAULT_VMC), upper_chest=args.vmc_upper_chest))
    if args.osc:
        sinks.append(OnbeatOscSink(*parse_target(args.osc, DEFAULT_OSC)))
    if args.record:
        inputs = [getattr(args, "file", None), args.model]  # paths that must not be overwritten
        sinks.append(Recorder(args.record, args.rate, inputs=[path for path in inputs if path]))
    return sinks


def open_clocks(args):
    """The external beat clocks asked for, in order of precedence (Link, then MIDI clock)."""
    from onbeat.ear.clocks import ExternalClock, LinkClock, MidiClock
    if args.link and args.link_lead:
        raise OnbeatError("give --link (follow the session) or --link-lead (lead it), not both")
    clocks: list[ExternalClock] = []
    try:
        if args.link or args.link_lead:
            clocks.append(LinkClock(lead=args.link_lead))
        if args.midi_clock is not None:
            clocks.append(MidiClock(args.midi_clock or None))
    except OnbeatError:
        for clock in clocks:
            clock.close()
        raise
    return clocks


def open_stage(args, controls, styles=()):
    from onbeat.choreographers.keyposes import KEY_POSES
    stage = Stage(controls, args.stage_host, args.stage_port, args.avatar, key_poses=tuple(KEY_POSES), styles=styles,
                  rate=args.rate)
    logger.info("stage: %s (open it in a browser; ?overlay=1 for OBS)", stage.url)
    return stage


def open_source(args):
    """(source, speakers or None): the audio to dance to, and an output for the demo track."""
    from onbeat.ear import sources
    if args._words == ("live",):
        return sources.DeviceSource(args.device), None
    if args.file and args.demo:
        raise OnbeatError("give either a FILE or --demo, not both")
    if args.file:
        if Path(args.file).suffix.lower() in MOTION_SUFFIXES:
            raise OnbeatError(f"{args.file} is a motion file, not music: watch it with `onbeat view {args.file}`")
        return sources.FileSource(args.file, play=not args.silent), None
    if not args.demo:
        raise OnbeatError("nothing to dance to: give an audio FILE, or --demo for the built-in track")
    source = sources.SyntheticSource(bpm=args.bpm)
    return source, None if args.silent else Speakers.open(source.sample_rate, source.channels)
