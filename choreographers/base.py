"""The Choreographer contract, and the base every exported model's runtime shares.

Threading: the engine calls a choreographer from its generation thread only (never two calls at once), one slice
ahead of the output clock. `next_slice` should return well within the slice's own duration; when it does not,
the engine lowers `set_quality` until it does, and meanwhile holds the pose. Anything it raises, and any NaN or
Inf it returns, is counted and replaced by the last good pose (the choreographer is `reset()`).

Styles are optional: a choreographer that knows dance styles has `styles` (the names it knows) and
`set_style(name)` (None: any style), a blended change; `choose_style` is how the CLI and the engine ask for one.
"""
from typing import Any, Protocol

import numpy as np

from onbeat.choreographers.conditioning import Conditioned
from onbeat.choreographers.keyposes import key_pose_rotations, standing_height
from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS
from onbeat.core.representation import ROTATION_SLICE, decode, root_state
from onbeat.core.skeleton import NUM_JOINTS

NO_STYLES = "this model knows no styles (it was trained without them)"
MAX_SLICE_FRAMES = 300  # 10 s at 30 fps: the most a model's metadata may ask for a slice


class Choreographer(Protocol):
    @property
    def fps(self) -> float:
        """Frames per second of the motion it makes (the feature rate, 30)."""
        ...

    @property
    def slice_frames(self) -> int:
        """Frames per `next_slice`."""
        ...

    def next_slice(self, music: np.ndarray, energy: float = 1.0, key_pose: str | None = None) -> Motion:
        """The next `slice_frames` frames, continuing the previous slice. `music`: (>= slice_frames, FEATURE_DIM)
        feature rows of the slice, then lookahead rows where the engine has them. `energy` 0..2 scales the moves;
        `key_pose` names a pose of `keyposes.KEY_POSES` the engine lands on the slice's downbeat: a choreographer
        may move towards it (the engine's finishing lands it whatever the choreographer does)."""
        ...

    def reset(self) -> None:
        """Start a new dance (after a failure, or a switch back to this choreographer)."""
        ...

    def set_quality(self, level: float) -> None:
        """Do `level` (0..1] of the full work per slice; a choreographer with nothing to trade may ignore it."""
        ...


def choose_style(choreographer: Choreographer, name: str | None) -> None:
    """Ask `choreographer` to dance the style `name` (None: any); OnbeatError (one line) when it knows no styles
    or not that one."""
    if not getattr(choreographer, "styles", ()):
        raise OnbeatError(NO_STYLES)
    choreographer.set_style(name)  # type: ignore[attr-defined]  # optional part of the contract


class ModelChoreographer:
    """The Choreographer around a model's numpy sampler. Subclasses produce raw motion rows (`next_rows`); this
    class applies the energy control and decodes the rows into Motions that continue one another (root position
    and heading carried across slices). A subclass whose graph takes styles passes its `Conditioned` graph as
    `styled`: its styles are the choreographer's, and `set_style` blends into another."""

    fps = FEATURE_FPS
    ENERGY_SECONDS = 1.0  # time constant of the running mean pose the energy control scales motion around

    def __init__(self, slice_frames: int, seed: int | None = None, styled: Any = None):
        self.slice_frames = slice_frames
        self.seed = seed  # None: every reset starts a different dance
        self.styled = styled if isinstance(styled, Conditioned) else None
        self.reset()

    @property
    def styles(self) -> tuple[str, ...]:
        """The styles the model knows (its metadata's), () for a model trained without them."""
        return tuple(self.styled.styles) if self.styled else ()

    def set_style(self, name: str | None) -> None:
        """Blend into the named style (None: freestyle, "any"); OnbeatError when the model does not know it."""
        if self.styled is None:
            raise OnbeatError(NO_STYLES)
        if self._root is None:  # nothing danced since the start: no style to blend from
            self.styled.style = name
        else:
            self.styled.switch(name)

    def restart(self) -> None:
        """Reset the model's own sampling state."""
        raise NotImplementedError

    def next_rows(self, music: np.ndarray, key_pose: str | None = None) -> np.ndarray:
        """(slice_frames, POSE_DIM) raw rows of the next slice."""
        raise NotImplementedError

    def reset(self) -> None:
        self._root: Any = None
        self._mean_row: np.ndarray | None = None
        self.restart()

    def set_quality(self, level: float) -> None:
        pass

    def next_slice(self, music: np.ndarray, energy: float = 1.0, key_pose: str | None = None) -> Motion:
        music = np.asarray(music, dtype=np.float32)
        if music.ndim != 2 or music.shape[1] != FEATURE_DIM or len(music) < self.slice_frames:
            raise OnbeatError(f"music for a slice must have shape (>= {self.slice_frames}, {FEATURE_DIM}), got "
                              f"{music.shape}")
        return self.motion_from(self.next_rows(music, key_pose), energy)

    def motion_from(self, rows: np.ndarray, energy: float = 1.0) -> Motion:
        """The Motion of the next raw rows, continuing the previous slice, at `energy` (a crowd's batched step
        makes the rows of several dancers at once: `onbeat.choreographers.crowd`)."""
        if self.styled:
            self.styled.advance(self.slice_frames / self.fps)
        motion = decode(self._with_energy(rows, energy), self.fps, self._root)
        self._root = root_state(motion)
        return motion

    def _with_energy(self, rows: np.ndarray, energy: float) -> np.ndarray:
        """energy 1 leaves the dance as the model made it; below 1 calms it (height and joint rotations drawn
        towards the running mean pose, root speed scaled), above 1 exaggerates it. The model's state is untouched."""
        alpha = 1.0 - np.exp(-1.0 / (self.ENERGY_SECONDS * self.fps))
        means = np.empty_like(rows)
        for i, row in enumerate(rows):
            self._mean_row = row.copy() if self._mean_row is None else self._mean_row + alpha * (row - self._mean_row)
            means[i] = self._mean_row
        energy = float(np.clip(energy, 0.0, 2.0))
        if energy == 1.0:
            return rows
        out = rows.copy()
        out[:, :2] *= energy  # ground velocity
        pose = slice(2, ROTATION_SLICE.stop)  # height and joint rotations
        out[:, pose] = means[:, pose] + energy * (rows[:, pose] - means[:, pose])
        return out


def key_pose_row(name: str, base_row: np.ndarray) -> np.ndarray:
    """`base_row` (raw) in the named key pose (`keyposes.KEY_POSES`): every joint but the root turned as the pose
    has it, the pelvis at the pose's standing height; the root's turn, velocity and contacts kept."""
    row = np.array(base_row, dtype=np.float32)
    six_d = row[ROTATION_SLICE].reshape(NUM_JOINTS, 6)
    six_d[1:] = R.quat_to_6d(key_pose_rotations(name)[1:])
    row[ROTATION_SLICE] = six_d.reshape(-1)
    row[2] = standing_height(name)
    return row
