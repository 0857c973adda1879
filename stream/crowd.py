"""A crowd on the live engine: one ear, one clock and one output thread for N dancers.

`CrowdEngine` is the `Engine` dancing crowds (`onbeat.choreographers.crowd`) in place of choreographers. Its output
queue holds every dancer's 30 fps frames stacked (frames x dancers), so sampling, slerp and blending run once for
all of them. Each output frame goes to the dancer's own sinks (`dancer_sinks[i]`: its VMC target, its onbeat OSC
with the dancer index, its recorder); of the shared `sinks`, those that show a crowd (the stage: `shows_crowd`) get
every dancer in one frame, the others (the speakers) dancer 0's; they and dancer 0's sinks get the audio and the
beats.

The slices are made by a `CrowdMaker`: every crowd of the show (the model's, the idle grooves') and each dancer's
`Finishing` (its feet; the key poses every dancer strikes together). A crowd's slice is a lot of numpy (each
dancer's decoding, feet and placing) that holds the GIL, which the output thread then waits for: measured, 32
dancers in the engine's process made frames late. So the show runs its maker in a child process
(`CrowdProcess`): the generation thread only waits on a pipe. `CrowdMaker` itself runs in-process too (tests,
`Engine.simulate`).
"""
import dataclasses
import multiprocessing
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onbeat.choreographers.crowd import Crowd, Dancer, check_crowd, formation, lane_maker
from onbeat.choreographers.finishing import Finishing
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.library import Library
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import mirror_pose
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS
from onbeat.ear.sources import Source
from onbeat.stream.engine import WORKER_PRIORITY, Engine, _finite, real_time_priority
from onbeat.stream.sinks import PoseFrame, QueuedSink, Sink


@dataclass
class Stacked:
    """Every dancer's frames of one slice: root (frames, dancers, 3), rotations (frames, dancers, 24, 4)."""
    fps: float
    root_translation: np.ndarray
    rotations: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.rotations)


@dataclass
class SliceRequest:
    """What the engine asks a `CrowdMaker` for: the next slice of crowd `name`, and what changed since the last."""
    name: str
    music: np.ndarray
    energy: float
    key_pose: str | None
    start: float = 0.0  # output time of the slice's first frame
    jump: bool = False  # it does not continue the previous slice
    strikes: list = field(default_factory=list)  # (key pose, hit time) asked for since the last request
    bpm: float | None = None
    quality: float = 1.0
    reset: bool = False


class CrowdMaker:
    """The crowds of a show by name (a crowd of grooves, "groove", is added for the idle) and each dancer's
    Finishing, shared by them all as the engine's is by its choreographers."""

    def __init__(self, crowds: dict[str, Crowd]):
        first = next(iter(crowds.values()))
        idle = Crowd(lambda seed, style: GrooveChoreographer(), [dataclasses.replace(d) for d in first.dancers],
                     "unison")
        self.crowds = {"groove": idle, **crowds}
        self.names = tuple(self.crowds)
        self.dancers = first.dancers
        self.fps, self.slice_frames = first.fps, first.slice_frames
        self.finishings = [Finishing() for _ in self.dancers]

    def make(self, request: SliceRequest) -> Stacked | None:
        """The finished slice of every dancer, stacked; None when one has NaN/Inf."""
        crowd = self.crowds[request.name]
        if request.reset:
            crowd.reset()
        crowd.set_quality(request.quality)
        if request.bpm:
            crowd.follow_tempo(request.bpm)
        for name, hit_time in request.strikes:
            for finishing in self.finishings:
                finishing.strike(name, hit_time)
        motions = crowd.next_slice(request.music, request.energy, request.key_pose)
        if not all(_finite(motion) for motion in motions):
            return None
        finished = [finishing(motion, request.start, continues=not request.jump)
                    for finishing, motion in zip(self.finishings, motions, strict=True)]
        return Stacked(FEATURE_FPS, np.stack([m.root_translation for m in finished], axis=1),
                       np.stack([m.rotations for m in finished], axis=1))

    def close(self) -> None:
        pass


class CrowdProcess:
    """A `CrowdMaker` in a child process: `crowd_of(**recipe)` is built there (its ONNX sessions too); `make`
    sends the request through a pipe and waits for the slice (the GIL free meanwhile). The child runs at the
    engine's worker real-time priority where the OS allows it."""

    def __init__(self, recipe: dict[str, Any]):
        check_recipe(**recipe)  # a mistake is said at once, not after the child has started
        self.names = ("groove", recipe["model"])
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, recipe), name="onbeat-crowd", daemon=True)
        self._process.start()
        self.pid = self._process.pid
        child.close()
        ready = self._receive()
        self.dancers, self.fps, self.slice_frames = ready["dancers"], ready["fps"], ready["slice_frames"]
        self.lanes, self.batched = ready["lanes"], ready["batched"]

    def make(self, request: SliceRequest) -> Stacked | None:
        self._pipe.send(request)
        return self._receive()

    def _receive(self):
        try:
            kind, value = self._pipe.recv()
        except EOFError:
            raise OnbeatError("the crowd's process ended unexpectedly") from None
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._pipe.send(None)
            except OSError:
                pass
            self._process.join(timeout=10)
        self._pipe.close()


def _serve(pipe, recipe):
    """The child process: build the crowd, say it is ready, then make slices until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent ends the show
    real_time_priority(WORKER_PRIORITY, quiet=True)
    try:
        crowd = crowd_of(Library(), **recipe)
        crowd.next_slice(np.zeros((2 * crowd.slice_frames, FEATURE_DIM), np.float32))  # onnxruntime allocates for
        crowd.reset()  # the crowd's batch on its first call, which must not delay the first live slice
        maker = CrowdMaker({recipe["model"]: crowd})
        pipe.send(("ok", {"dancers": maker.dancers, "fps": maker.fps, "slice_frames": maker.slice_frames,
                          "lanes": len(crowd.lanes), "batched": crowd.batched}))
    except Exception as e:  # noqa: BLE001 - handed to the parent, which raises it (an OnbeatError: one line)
        pipe.send(("error", e))
        return
    while (request := pipe.recv()) is not None:
        try:
            pipe.send(("ok", maker.make(request)))
        except Exception as e:  # noqa: BLE001 - the engine counts a failed slice and dances on
            pipe.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))


class CrowdView:
    """One crowd of a maker as the engine's Choreographer: `next_slice` returns the request, which the engine's
    `_finished` completes (output time, key poses, tempo) and has the maker make."""

    def __init__(self, name: str, maker: CrowdMaker | CrowdProcess):
        self.name, self.fps, self.slice_frames = name, maker.fps, maker.slice_frames
        self.quality, self._reset = 1.0, False

    def next_slice(self, music, energy=1.0, key_pose=None):
        request = SliceRequest(self.name, np.asarray(music, np.float32), float(energy), key_pose,
                               quality=self.quality, reset=self._reset)
        self._reset = False
        return request

    def reset(self) -> None:
        self._reset = True

    def set_quality(self, level: float) -> None:
        self.quality = level


class CrowdFinishing:
    """The engine's `finishing` for a crowd: it schedules key poses (when they land is the same for every
    dancer) and hands each strike on to the maker with the next request."""

    def __init__(self):
        self.schedule = Finishing()
        self.landing = self.schedule.landing
        self.strikes = []

    def strike(self, name, hit_time):
        replaced = self.schedule.strike(name, hit_time)
        if replaced is not None:
            self.strikes.append((name, hit_time))
        return replaced


class CrowdEngine(Engine):
    finishing: Any  # a CrowdFinishing: what the engine uses of Finishing, plus the strikes for the maker

    def __init__(self, source: Source, maker: CrowdMaker | CrowdProcess, dancer_sinks: list[list[Sink]],
                 sinks: Iterable[Sink] = (), **options):
        """`maker`: makes the crowds' slices (the first crowd it was given dances first); `dancer_sinks[i]`:
        dancer i's own sinks. `options`: `Engine`'s (no `library`: a crowd switches only between its maker's
        crowds)."""
        if len(dancer_sinks) != len(maker.dancers):
            raise ValueError(f"{len(dancer_sinks)} lists of sinks for {len(maker.dancers)} dancers")
        self.maker = maker
        self.dancer_sinks = [[QueuedSink(s) if s.may_block else s for s in own] for own in dancer_sinks]
        views = {name: CrowdView(name, maker) for name in maker.names}
        idle = views.pop("groove")
        super().__init__(source, views or {"groove": idle}, [*sinks, *self.dancer_sinks[0]], idle=idle, **options)
        self.finishing = CrowdFinishing()
        # Sinks that show the whole crowd (the stage) get every dancer in one frame; the others dancer 0's.
        self._crowd_views = [sink for sink in self.sinks if getattr(sink, "shows_crowd", False)]
        self._first_dancer = [sink for sink in self.sinks if sink not in self._crowd_views]

    @property
    def crowd_size(self) -> int:
        return len(self.dancer_sinks)

    def _finished(self, request, start, jump):
        beat = self.beat
        strikes, self.finishing.strikes = self.finishing.strikes, []
        request = dataclasses.replace(request, start=start, jump=jump, strikes=strikes,
                                      bpm=beat.bpm if beat is not None else None)
        return self.maker.make(request)

    def _held_slice(self, frames):
        root, rotations = self._last_good or self._rest_pose()
        return Stacked(FEATURE_FPS, np.repeat(root[None], frames, 0), np.repeat(rotations[None], frames, 0))

    def _rest_pose(self):
        """Each dancer in the groove's idle stance, at its place."""
        rest = GrooveChoreographer().next_slice(np.zeros((1, FEATURE_DIM), np.float32), energy=0.0)
        placed = [dataclasses.replace(dancer, _drift=None).stage(rest, FEATURE_FPS) for dancer in self.maker.dancers]
        return (np.stack([m.root_translation[0] for m in placed]), np.stack([m.rotations[0] for m in placed]))

    def _emit(self, t, index, pose):
        roots, rotations = pose
        if self.controls.mirror:
            roots, rotations = mirror_pose(roots, rotations)
        for dancer, sinks in enumerate([self._first_dancer, *self.dancer_sinks[1:]]):
            frame = PoseFrame(t, roots[dancer], rotations[dancer], index=index)
            for sink in sinks:
                sink.send(frame)
        everyone = PoseFrame(t, roots, rotations, index=index)
        for sink in self._crowd_views:
            sink.send(everyone)
        self.stats.frames += 1


def dancer_ports(base: int, step: int, count: int, avoid: Iterable[int] = ()) -> list[int]:
    """`count` UDP ports for the dancers' own targets: base, base + step, ..., skipping the ports in `avoid` (this
    machine's control input and stage); OnbeatError when they would run past 65535."""
    if not 1 <= step <= 1000:
        raise OnbeatError(f"port step {step}: choose 1..1000")
    skipped, port = set(avoid), base
    ports: list[int] = []
    while len(ports) < count:
        if port > 65535:
            raise OnbeatError(f"{count} dancers from port {base} in steps of {step} run past port 65535")
        if port not in skipped:
            ports.append(port)
        port += step
    return ports


def check_recipe(model: str, count: int, shape: str = "line", spacing: float = 1.5, mode: str = "free",
                 offset_beats: float = 1.0, energies: Sequence[float] = (1.0,), **_: Any) -> None:
    """OnbeatError naming the first thing `crowd_of` would refuse in these arguments (the model aside)."""
    check_crowd(count, mode, offset_beats, energies)
    formation(shape, count, spacing)


def crowd_of(library: Library, model: str, count: int, shape: str = "line", spacing: float = 1.5,
             mode: str = "free", offset_beats: float = 1.0, styles: Sequence[str | None] = (None,),
             energies: Sequence[float] = (1.0,), mirrors: Sequence[bool] = (False,), seed: int | None = None,
             device: str = "auto") -> Crowd:
    """A crowd of `count` dancers of `model` in formation `shape`; dancer i gets seed `seed + i` (a random base
    when None) and the i-th style, energy and mirror of those lists (repeated as needed)."""
    check_recipe(model, count, shape, spacing, mode, offset_beats, energies)
    places, facings = formation(shape, count, spacing)
    base = int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else seed
    dancers = [Dancer(seed=base + i, style=styles[i % len(styles)], energy=energies[i % len(energies)],
                      mirror=mirrors[i % len(mirrors)], place=(float(x), float(z)), facing=float(facing))
               for i, ((x, z), facing) in enumerate(zip(places, facings, strict=True))]
    return Crowd(lane_maker(library, model, device), dancers, mode, offset_beats)
