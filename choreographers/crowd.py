"""A crowd: several dancers from one choreographer kind, placed on the floor in a formation, dancing together.

`Crowd.next_slice` gives each dancer's next slice (already mirrored and placed on the floor); the engine finishes
each dancer's slice on its own (`onbeat.choreographers.finishing`) and shows them all
(`onbeat.stream.crowd.CrowdEngine`). The moves come from *lanes*, the independent dance streams:
- free: a lane per dancer, each its own seed, style and energy;
- unison: one lane, every dancer the same moves at once;
- canon: one lane, dancer i dances it `offset` beats after dancer i - 1 (a ripple along the formation);
- leader: one lane, the leader's (dancer 0); the followers dance it `offset` beats after the leader.
Lanes of the shipped models step together, one batched graph call per step (`BadmChoreographer.next_slices`:
per denoising step; `CodesChoreographer.next_slices`: per GPT step and one decoder call); others (the groove,
graph) step lane by lane. A delayed dancer (canon, leader) shows
its lane's frames from a delay line; until the lane has danced that long it stands in the lane's first pose.
Each dancer keeps to its place: the dance's travel is tethered (the root's slow drift is taken out, its steps and
bounce kept), then the dancer is turned to its facing and moved to its place.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from onbeat.choreographers.base import Choreographer
from onbeat.choreographers.conditioning import Conditioned
from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion, mirror_pose

MODES = ("unison", "canon", "free", "leader")
FORMATIONS = ("line", "circle", "grid")
MAX_DANCERS = 256  # one engine's output thread sends every dancer's frame each 1/60 s: far more is not live
MIN_SPACING = 0.8  # metres between two dancers' places: arms' reach, so neighbours do not run into each other
TETHER_SECONDS = 2.0  # time constant of the drift taken out of each dancer's travel


def formation(shape: str, count: int, spacing: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """(places (count, 2) as floor (x, z) metres, facings (count,) radians about y, 0 = towards +z, the
    audience) of `count` dancers at least `spacing` apart: a line across the stage, a circle facing its centre,
    or a grid of rows (as square as it gets)."""
    if shape not in FORMATIONS:
        raise OnbeatError(f"unknown formation {shape!r}: choose one of {', '.join(FORMATIONS)}")
    if not spacing >= MIN_SPACING:
        raise OnbeatError(f"spacing {spacing:g} m: dancers need at least {MIN_SPACING:g} m between them")
    facings = np.zeros(count)
    if shape == "line":
        places = np.stack([(np.arange(count) - (count - 1) / 2) * spacing, np.zeros(count)], axis=1)
    elif shape == "circle":
        # Neighbours on the circle are a chord apart: 2 r sin(pi / n) >= spacing.
        radius = spacing / (2 * math.sin(math.pi / count)) if count > 1 else 0.0
        angles = 2 * math.pi * np.arange(count) / count
        places = radius * np.stack([np.sin(angles), np.cos(angles)], axis=1)
        facings = angles + math.pi if count > 1 else facings  # towards the centre
    else:
        columns = math.ceil(math.sqrt(count))
        rows = math.ceil(count / columns)
        index = np.arange(count)
        places = np.stack([(index % columns - (columns - 1) / 2) * spacing,
                           ((rows - 1) / 2 - index // columns) * spacing], axis=1)  # first row downstage
    return places, facings


def min_distance(places: np.ndarray) -> float:
    """The smallest distance between two of `places` (inf for fewer than two)."""
    if len(places) < 2:
        return math.inf
    distances = np.linalg.norm(places[:, None] - places[None], axis=-1)
    return float(distances[~np.eye(len(places), dtype=bool)].min())


@dataclass
class Dancer:
    """One dancer of the crowd: what it does with the moves it is given, and where."""
    seed: int | None = None
    style: str | None = None  # for a model that knows styles (None: its default)
    energy: float = 1.0  # times the show's energy (its own lane's: free mode)
    mirror: bool = False
    place: tuple[float, float] = (0.0, 0.0)  # floor (x, z), metres
    facing: float = 0.0  # radians about y; 0 faces +z
    _drift: np.ndarray | None = field(default=None, repr=False)  # the tether's low-pass of the root's (x, z)

    def stage(self, motion: Motion, fps: float) -> Motion:
        """`motion` mirrored if asked, its travel tethered, turned to the facing and moved to the place."""
        root, rotations = motion.root_translation, motion.rotations
        if self.mirror:
            root, rotations = mirror_pose(root, rotations)
        alpha = 1.0 - math.exp(-1.0 / (TETHER_SECONDS * fps))
        drift = np.empty((len(root), 2))
        current = root[0, [0, 2]] if self._drift is None else self._drift
        for i, point in enumerate(root[:, [0, 2]]):
            current = drift[i] = current + alpha * (point - current)
        self._drift = current
        turn = R.quat_from_axis_angle(np.array([0.0, self.facing, 0.0]))
        local = np.stack([root[:, 0] - drift[:, 0], root[:, 1], root[:, 2] - drift[:, 1]], axis=1)
        placed = R.quat_apply(turn, local) + np.array([self.place[0], 0.0, self.place[1]])
        rotations = rotations.copy()
        rotations[:, 0] = R.quat_multiply(turn, rotations[:, 0])
        return Motion(motion.fps, placed, rotations, motion.offsets, motion.contacts)


class DelayLine:
    """The recent frames of one lane, to show them again `delay` frames later."""

    def __init__(self, keep: int):
        self.keep = keep
        self.motion: Motion | None = None

    def push(self, motion: Motion) -> None:
        if self.motion is None:
            self.motion = motion
            return
        previous = self.motion
        contacts = (None if previous.contacts is None or motion.contacts is None
                    else np.concatenate([previous.contacts, motion.contacts])[-self.keep:])
        root = np.concatenate([previous.root_translation, motion.root_translation])[-self.keep:]
        rotations = np.concatenate([previous.rotations, motion.rotations])[-self.keep:]
        self.motion = Motion(motion.fps, root, rotations, motion.offsets, contacts)

    def window(self, frames: int, delay: int) -> Motion:
        """The `frames` frames that ended `delay` frames before the newest; the first frame stands in for what
        the lane had not danced yet."""
        m = self.motion
        assert m is not None, "window() before push()"
        end = m.num_frames - delay
        index = np.clip(np.arange(end - frames, end), 0, m.num_frames - 1)
        return Motion(m.fps, m.root_translation[index], m.rotations[index], m.offsets,
                      None if m.contacts is None else m.contacts[index])


class Crowd:
    """N dancers from lanes of one choreographer (see the module docstring). `make_lane(seed, style)` makes one
    lane's Choreographer. Implements the Choreographer protocol's `reset`, `set_quality`, `fps`, `slice_frames`;
    its `next_slice` returns one Motion per dancer."""

    def __init__(self, make_lane: Callable[[int | None, str | None], Choreographer], dancers: list[Dancer],
                 mode: str = "free", offset_beats: float = 1.0, bpm: float = 120.0):
        check_crowd(len(dancers), mode, offset_beats, [dancer.energy for dancer in dancers])
        self.dancers, self.mode, self.offset_beats = dancers, mode, offset_beats
        leads = dancers if mode == "free" else dancers[:1]
        self.lanes = [make_lane(dancer.seed, dancer.style) for dancer in leads]
        self.fps, self.slice_frames = self.lanes[0].fps, self.lanes[0].slice_frames
        # Lanes of a runtime with `next_slices` (badm, codes) over graphs with a batch dimension step together.
        kind = type(self.lanes[0])
        self.batched = (len(self.lanes) > 1 and hasattr(kind, "next_slices")
                        and all(type(lane) is kind for lane in self.lanes) and _batched_graphs(self.lanes[0]))
        self.bpm = bpm
        self._delays = self._delays_at(bpm)
        self._lines = [DelayLine(max(self._delays) + self.slice_frames)] if max(self._delays) else []

    def beats_behind(self, index: int) -> float:
        """How many beats dancer `index` dances behind its lane."""
        if self.mode == "canon":
            return index * self.offset_beats
        return self.offset_beats if self.mode == "leader" and index > 0 else 0.0

    def _delays_at(self, bpm):
        return [round(self.beats_behind(i) * 60.0 / bpm * self.fps) for i in range(len(self.dancers))]

    def follow_tempo(self, bpm: float) -> None:
        """Delays in beats follow the tempo; they are re-measured when it moves by more than 3 %."""
        if self._lines and abs(bpm - self.bpm) > 0.03 * self.bpm:
            self.bpm = bpm
            self._delays = self._delays_at(bpm)
            self._lines[0].keep = max(self._delays) + self.slice_frames

    def next_slice(self, music: np.ndarray, energy: float = 1.0, key_pose: str | None = None) -> list[Motion]:
        """Each dancer's next slice: the lanes step (batched where they can), then each dancer takes its lane's
        moves (delayed in canon and leader modes) and is placed."""
        energies = [energy * self.dancers[i].energy for i in range(len(self.lanes))]
        if self.batched:
            kind: Any = type(self.lanes[0])  # a runtime with `next_slices` (checked in `batched`)
            moves = kind.next_slices(self.lanes, music, energies, key_pose)
        else:
            moves = [lane.next_slice(music, energy=e, key_pose=key_pose)
                     for lane, e in zip(self.lanes, energies, strict=True)]
        if self._lines:
            self._lines[0].push(moves[0])
            shown = [self._lines[0].window(self.slice_frames, delay) for delay in self._delays]
        else:
            shown = moves if self.mode == "free" else moves * len(self.dancers)
        return [dancer.stage(motion, self.fps) for dancer, motion in zip(self.dancers, shown, strict=True)]

    def reset(self) -> None:
        for lane in self.lanes:
            lane.reset()
        for line in self._lines:
            line.motion = None
        for dancer in self.dancers:
            dancer._drift = None

    def set_quality(self, level: float) -> None:
        for lane in self.lanes:
            lane.set_quality(level)


def check_count(count: Any) -> None:
    """OnbeatError unless `count` is a number of dancers one engine can show."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_DANCERS:
        raise OnbeatError(f"--dancers {count}: choose 1..{MAX_DANCERS}")


def check_crowd(count: Any, mode: str, offset_beats: float, energies: Sequence[float]) -> None:
    """OnbeatError naming the first of these a crowd cannot dance with."""
    check_count(count)
    if mode not in MODES:
        raise OnbeatError(f"unknown crowd mode {mode!r}: choose one of {', '.join(MODES)}")
    if not 0 <= offset_beats <= 16:
        raise OnbeatError(f"offset {offset_beats:g} beats: choose 0..16")
    bad = next((energy for energy in energies if not 0.0 <= energy <= 2.0), None)  # NaN too
    if bad is not None:
        raise OnbeatError(f"dancer energy {bad:g}: choose 0..2")


def _batched_graphs(lane):
    """Whether the exported graphs a lane runs (`graphs`, style-conditioned or not) all have a batch dimension."""
    graphs = [getattr(step, "step", step) for step in getattr(lane, "graphs", ())]
    return bool(graphs) and all(getattr(graph, "batched", False) for graph in graphs)


def lane_maker(library: Any, name: str, device: str = "auto") -> Callable[[int | None, str | None], Choreographer]:
    """`make_lane(seed, style)` for the model `name` (as `Library` names it): the export is opened once, its graph
    sessions shared by every lane (a lane is the kind's runtime around them, with its own state)."""
    from onbeat.choreographers.groove import GrooveChoreographer
    from onbeat.choreographers.kinds import open_steps

    if name == "groove":
        return lambda seed, style: _styled(GrooveChoreographer(), style, name)
    path = library.path_of(name)
    kind, steps = open_steps(path, library.threads, device)
    metadata = next(iter(steps.values())).metadata
    kind.check_metadata(path, metadata)
    factory = kind.runtime_factory()
    return lambda seed, style: _styled(factory(steps, metadata, seed), style, name)


def _styled(lane, style, name):
    """`lane` dancing `style` (None: as it is); OnbeatError when its model has no such style, or none."""
    if style is None:
        return lane
    if hasattr(lane, "set_style"):
        lane.set_style(style)
    elif isinstance(getattr(lane, "denoise", None), Conditioned):
        lane.denoise.style = style
    else:
        raise OnbeatError(f"style {style}: the {name} model has no styles")
    return lane
