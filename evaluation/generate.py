"""Dances for the evaluation, generated the way users see them.

- Live path (default): the song goes through `onbeat play`'s pipeline on a simulated clock (`Engine.simulate`): the
  file is read block by block into the ear (features and beat tracking online, causal), the engine generates
  slices from `future_features` (predicted beats), queues them on the output timeline, blends jumps and falls
  back to the idle groove when it hears no music, and the exported ONNX choreographer (`choreographers.runtime`)
  dances. The output is taken at 30 fps, the models' own rate, so no output interpolation is measured. Faster
  than real time, deterministic for a seed (the choreographer's noise seed; the ear is deterministic).
- Torch path (`--path torch`, for training-time checks): the trained checkpoint's `generate` on the whole song's
  feature rows at once (offline features: the true future music, no engine).

Key poses: `key_pose_times` ask for the named poses (`keyposes.KEY_POSES`, in turn) at those output times, as
`/onbeat/keypose` would; the engine hands each on for its next downbeat, and the shown pose at that downbeat is
compared with the requested one (`keyposes.reach_cm`, the measure the runtime's landing is built to meet).
"""
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.keyposes import KEY_POSES, reach_cm
from onbeat.core.motion import forward_kinematics
from onbeat.core.music import FEATURE_FPS
from onbeat.stream.sinks import Sink

FPS = FEATURE_FPS  # evaluation frame rate: the models' own


@dataclass
class Dance:
    """One generated (or real) dance: positions (T, 24, 3) and local rotations (T, 24, 4), at `fps`."""
    positions: np.ndarray
    rotations: np.ndarray
    fps: float
    wall_seconds: float = 0.0  # time it took to generate (the whole live path)
    model_seconds: float = 0.0  # of which in the choreographer
    dance_start: float = 0.0  # output time the engine first heard music (before it: the idle)
    key_poses: list = field(default_factory=list)  # (downbeat time, pose name, distance in cm)

    @property
    def seconds(self):
        return len(self.positions) / self.fps


class TimedChoreographer:
    """A choreographer whose `next_slice` calls are timed on the wall clock (the engine's clock is simulated)."""

    def __init__(self, choreographer):
        self.inner = choreographer
        self.fps, self.slice_frames = choreographer.fps, choreographer.slice_frames
        self.seconds = 0.0

    def next_slice(self, music, energy=1.0, key_pose=None):
        began = time.perf_counter()
        try:
            return self.inner.next_slice(music, energy=energy, key_pose=key_pose)
        finally:
            self.seconds += time.perf_counter() - began

    def reset(self):
        self.inner.reset()

    def set_quality(self, level):
        if hasattr(self.inner, "set_quality"):
            self.inner.set_quality(level)


class _Recording(Sink):
    """The engine's sink here: the frames shown, whether the engine was on the idle, key-pose requests sent."""

    def __init__(self, engine_box, requests):
        self.engine_box, self.requests = engine_box, list(requests)
        self.roots, self.rotations, self.silent = [], [], []

    def send(self, frame):
        engine = self.engine_box[0]
        self.roots.append(frame.root_translation)
        self.rotations.append(frame.rotations)
        self.silent.append(engine.silent)
        while self.requests and self.requests[0][0] <= frame.time + 1e-9:
            engine.controls.key_pose = self.requests.pop(0)[1]


def load_live(name: str):
    """The live path's choreographer for a `--models` entry, as `onbeat play --model` loads it: default, badm,
    codes or an exported .onnx path (None: the groove)."""
    from onbeat.choreographers.library import Library
    return None if name == "groove" else Library().load(name)


def live_dance(audio: Path, choreographer, seconds: float, seed: int, key_pose_times=()) -> Dance:
    """The dance `onbeat play AUDIO` would show (see the module doc), for `seconds` or to the song's end."""
    from onbeat.ear.sources import FileSource
    from onbeat.stream.engine import Engine
    if choreographer is not None:
        choreographer.seed = seed
        choreographer.reset()
    # the groove dances as the engine's own idle when it is the model
    timed = TimedChoreographer(choreographer if choreographer is not None else GrooveChoreographer())
    names = list(KEY_POSES)
    requests = [(t, names[i % len(names)]) for i, t in enumerate(sorted(key_pose_times))]
    engine_box: list[Engine] = []
    recording = _Recording(engine_box, requests)
    dancers = {"model": timed} if choreographer is not None else {}
    engine = Engine(FileSource(audio, play=False, realtime=False), dancers, [recording],
                    idle=None if choreographer is not None else timed, rate=FPS)
    engine_box.append(engine)
    began = time.perf_counter()
    engine.simulate(seconds)
    wall = time.perf_counter() - began
    roots, rotations = np.array(recording.roots), np.array(recording.rotations)
    positions = forward_kinematics(roots, rotations)
    heard = np.flatnonzero(~np.array(recording.silent, dtype=bool))
    key_poses = [(t, name, reach_cm(rotations[round(t * FPS)], name))
                 for t, name in engine.stats.key_poses if round(t * FPS) < len(positions)]
    return Dance(positions, rotations, FPS, wall, timed.seconds,
                 heard[0] / FPS if len(heard) else float("nan"), key_poses)


def load_torch(kind: str, checkpoint: Path):
    import torch

    from onbeat.models.checkpoint import load_model
    torch.set_num_threads(1)
    return load_model(checkpoint, kind)


def torch_dance(model, music: np.ndarray, seed: int) -> Dance:
    """The trained model's `generate` on the song's feature rows (the torch path)."""
    from onbeat.core.representation import decode
    began = time.perf_counter()
    rows = model.generate(np.asarray(music, np.float32), seed=seed)
    wall = time.perf_counter() - began
    motion = decode(rows, FPS)
    return Dance(motion.positions(), motion.rotations, FPS, wall, wall)
