"""A crowd on the live engine: one ear, one clock, one generation thread and one output thread for N dancers.

`CrowdEngine` is the `Engine` with a `Crowd` (`onbeat.choreographers.crowd`) in place of each choreographer. The
output queue holds every dancer's 30 fps frames stacked (frames x dancers), so sampling, slerp and blending run once
for all of them; each dancer's slice is finished on its own (`Finishing`: its feet, the key poses every dancer
strikes together). Each output frame goes to the dancer's own sinks (`dancer_sinks[i]`: its VMC target, its
onbeat OSC with the dancer index, its recorder); the shared `sinks` (the stage, the speakers) get dancer 0's frames
and, with dancer 0's sinks, the audio and the beats.
"""
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from onbeat.choreographers.crowd import Crowd, Dancer, check_count, formation, lane_maker
from onbeat.choreographers.finishing import Finishing
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.library import Library
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import mirror_pose
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS
from onbeat.ear.sources import Source
from onbeat.stream.engine import Engine, _finite
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


class CrowdFinishing:
    """The engine's `finishing` for a crowd: a key pose is struck by every dancer, on the same downbeat."""

    def __init__(self, count: int):
        self.dancers = [Finishing() for _ in range(count)]
        self.landing = self.dancers[0].landing  # when poses land is the same for all

    def strike(self, name, hit_time):
        replaced = [finishing.strike(name, hit_time) for finishing in self.dancers]
        return replaced[0]


class CrowdEngine(Engine):
    def __init__(self, source: Source, crowds: dict[str, Crowd], dancer_sinks: list[list[Sink]],
                 sinks: Iterable[Sink] = (), **options):
        """`crowds`: {name: Crowd} (as `Engine`'s choreographers; an idle crowd of grooves is made to match);
        `dancer_sinks[i]`: dancer i's own sinks. `options`: `Engine`'s (no `library`: a crowd switches only
        between the crowds it was given)."""
        first = next(iter(crowds.values()))
        count = len(first.dancers)
        if len(dancer_sinks) != count:
            raise ValueError(f"{len(dancer_sinks)} lists of sinks for {count} dancers")
        self.dancer_sinks = [[QueuedSink(s) if s.may_block else s for s in own] for own in dancer_sinks]
        idle = Crowd(lambda seed, style: GrooveChoreographer(), [dataclasses.replace(d) for d in first.dancers],
                     "unison")
        super().__init__(source, crowds, [*sinks, *self.dancer_sinks[0]], idle=idle, **options)
        self.finishing = CrowdFinishing(count)

    @property
    def crowd_size(self) -> int:
        return len(self.dancer_sinks)

    def _generation_step(self):
        beat = self.beat
        if beat is not None:
            for crowd in self.choreographers.values():
                crowd.follow_tempo(beat.bpm)
        return super()._generation_step()

    def _finished(self, motions, start, jump):
        if not all(_finite(motion) for motion in motions):
            return None
        finished = [finishing(motion, start, continues=not jump)
                    for finishing, motion in zip(self.finishing.dancers, motions, strict=True)]
        return Stacked(FEATURE_FPS, np.stack([m.root_translation for m in finished], axis=1),
                       np.stack([m.rotations for m in finished], axis=1))

    def _held_slice(self, frames):
        root, rotations = self._last_good or self._rest_pose()
        return Stacked(FEATURE_FPS, np.repeat(root[None], frames, 0), np.repeat(rotations[None], frames, 0))

    def _rest_pose(self):
        """Each dancer in the groove's idle stance, at its place."""
        rest = GrooveChoreographer().next_slice(np.zeros((1, FEATURE_DIM), np.float32), energy=0.0)
        placed = [dataclasses.replace(dancer, _drift=None).stage(rest, FEATURE_FPS)
                  for dancer in self.idle.dancers]
        return (np.stack([m.root_translation[0] for m in placed]), np.stack([m.rotations[0] for m in placed]))

    def _emit(self, t, index, pose):
        roots, rotations = pose
        if self.controls.mirror:
            roots, rotations = mirror_pose(roots, rotations)
        for dancer, sinks in enumerate([self.sinks, *self.dancer_sinks[1:]]):
            frame = PoseFrame(t, roots[dancer], rotations[dancer], index=index)
            for sink in sinks:
                sink.send(frame)
        self.stats.frames += 1


def dancer_ports(base: int, step: int, count: int, avoid: Iterable[int] = ()) -> list[int]:
    """`count` UDP ports for the dancers' own targets: base, base + step, ..., skipping the ports in `avoid` (this
    machine's control input and stage); OnbeatError when they would run past 65535."""
    if not 1 <= step <= 1000:
        raise OnbeatError(f"port step {step}: choose 1..1000")
    avoid, ports, port = set(avoid), [], base
    while len(ports) < count:
        if port > 65535:
            raise OnbeatError(f"{count} dancers from port {base} in steps of {step} run past port 65535")
        if port not in avoid:
            ports.append(port)
        port += step
    return ports


def crowd_of(library: Library, model: str, count: int, shape: str = "line", spacing: float = 1.5,
             mode: str = "free", offset_beats: float = 1.0, styles: list[str | None] = (None,),
             energies: list[float] = (1.0,), mirrors: list[bool] = (False,), seed: int | None = None,
             device: str = "auto") -> Crowd:
    """A crowd of `count` dancers of `model` in formation `shape`; dancer i gets seed `seed + i` (a random base
    when None) and the i-th style, energy and mirror of those lists (repeated as needed)."""
    check_count(count)
    places, facings = formation(shape, count, spacing)
    base = int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else seed
    dancers = [Dancer(seed=base + i, style=styles[i % len(styles)], energy=energies[i % len(energies)],
                      mirror=mirrors[i % len(mirrors)], place=(float(x), float(z)), facing=float(facing))
               for i, ((x, z), facing) in enumerate(zip(places, facings, strict=True))]
    return Crowd(lane_maker(library, model, device), dancers, mode, offset_beats)
