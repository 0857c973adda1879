"""`Motion`: one dance on the SMPL-24 skeleton, the value every part of onbeat passes around.

Numpy only, so the live engine needs no torch. Rotations are local (each joint relative to its parent) unit
quaternions (w, x, y, z); joint 0's rotation is the root's orientation in the world. The root translation is the
world position of the Pelvis in metres, y up.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.skeleton import FOOT_JOINTS, MIRROR_INDEX, NUM_JOINTS, PARENTS, REST_OFFSETS


@dataclass
class Motion:
    fps: float
    root_translation: np.ndarray  # (T, 3) metres
    rotations: np.ndarray  # (T, 24, 4) local quaternions (w, x, y, z)
    offsets: np.ndarray = field(default_factory=lambda: REST_OFFSETS.copy())  # (24, 3) bone offsets, metres
    # (T, 4) foot contacts of skeleton.FOOT_JOINTS (0..1) where the motion's maker predicted them (a model's rows),
    # else None; the live post-process (choreographers.feet) detects them itself when they are missing.
    contacts: np.ndarray | None = None

    def __post_init__(self):
        self.root_translation = np.asarray(self.root_translation, dtype=np.float64)
        self.rotations = np.asarray(self.rotations, dtype=np.float64)
        self.offsets = np.asarray(self.offsets, dtype=np.float64)
        if self.contacts is not None:
            self.contacts = np.asarray(self.contacts, dtype=np.float64)
        problem = _shape_problem(self)
        if problem:
            raise OnbeatError(f"invalid motion: {problem}")
        self.rotations = R.quat_normalize(self.rotations)

    @property
    def num_frames(self) -> int:
        return self.rotations.shape[0]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    # --- other rotation forms -------------------------------------------------------------------------------
    @classmethod
    def from_axis_angle(cls, fps: float, root_translation: np.ndarray, axis_angle: np.ndarray,
                        offsets: np.ndarray | None = None) -> "Motion":
        """axis_angle: (T, 24, 3) or (T, 72), as SMPL stores poses."""
        axis_angle = np.asarray(axis_angle, dtype=np.float64).reshape(len(axis_angle), NUM_JOINTS, 3)
        return cls(fps, root_translation, R.quat_from_axis_angle(axis_angle), *_optional(offsets))

    @classmethod
    def from_6d(cls, fps: float, root_translation: np.ndarray, six_d: np.ndarray,
                offsets: np.ndarray | None = None) -> "Motion":
        return cls(fps, root_translation, R.quat_from_6d(np.asarray(six_d, dtype=np.float64)), *_optional(offsets))

    def axis_angle(self) -> np.ndarray:
        return R.quat_to_axis_angle(self.rotations)

    def matrices(self) -> np.ndarray:
        return R.quat_to_matrix(self.rotations)

    def six_d(self) -> np.ndarray:
        return R.quat_to_6d(self.rotations)

    # --- kinematics -----------------------------------------------------------------------------------------
    def global_rotations(self) -> np.ndarray:
        """(T, 24, 4) world orientation of each joint."""
        world = np.empty_like(self.rotations)
        for j, p in enumerate(PARENTS):
            world[:, j] = self.rotations[:, j] if p < 0 else R.quat_multiply(world[:, p], self.rotations[:, j])
        return world

    def positions(self) -> np.ndarray:
        """Forward kinematics: (T, 24, 3) world joint positions in metres."""
        return forward_kinematics(self.root_translation, self.rotations, self.offsets)

    def lowest_foot_height(self) -> np.ndarray:
        """(T,) height of the lowest foot joint in each frame, for putting the dancer on the floor."""
        return self.positions()[:, list(FOOT_JOINTS), 1].min(axis=1)

    # --- time -----------------------------------------------------------------------------------------------
    def frames(self, start: int | None, stop: int | None = None) -> "Motion":
        contacts = None if self.contacts is None else self.contacts[start:stop]
        return Motion(self.fps, self.root_translation[start:stop], self.rotations[start:stop], self.offsets, contacts)

    def resample(self, fps: float) -> "Motion":
        """Same dance at another frame rate: slerp for rotations, linear for the root."""
        if fps <= 0:
            raise OnbeatError(f"fps must be positive, got {fps}")
        if np.isclose(fps, self.fps):
            return Motion(fps, self.root_translation.copy(), self.rotations.copy(), self.offsets)
        count = max(1, int(np.floor((self.num_frames - 1) * fps / self.fps + 1e-9)) + 1)
        source_time = np.arange(count) * (self.fps / fps)  # in source frames
        i0 = np.minimum(np.floor(source_time).astype(int), self.num_frames - 1)
        i1 = np.minimum(i0 + 1, self.num_frames - 1)
        alpha = source_time - i0
        root = (1 - alpha)[:, None] * self.root_translation[i0] + alpha[:, None] * self.root_translation[i1]
        rots = R.quat_slerp(self.rotations[i0], self.rotations[i1], alpha[:, None])
        return Motion(fps, root, rots, self.offsets)

    # --- files ----------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write an .npz that `Motion.load` reads back exactly, to `path` as named (numpy would add '.npz' to a
        name ending in '.NPZ')."""
        with open(path, "wb") as f:
            np.savez(f, fps=np.float64(self.fps), root_translation=self.root_translation,
                     rotations=self.rotations, offsets=self.offsets)

    @classmethod
    def load(cls, path: str | Path) -> "Motion":
        try:
            with np.load(path) as data:
                missing = {"fps", "root_translation", "rotations"} - set(data.files)
                if missing:
                    raise OnbeatError(f"{path}: not an onbeat motion file (missing {', '.join(sorted(missing))})")
                offsets = data["offsets"] if "offsets" in data.files else None
                return cls(float(data["fps"]), data["root_translation"], data["rotations"], *_optional(offsets))
        except OnbeatError as e:
            raise OnbeatError(f"{path}: {e}" if str(path) not in str(e) else str(e)) from None
        except (OSError, ValueError, EOFError) as e:
            raise OnbeatError(f"{path}: cannot read motion file ({e})") from None


def forward_kinematics(root_translation: np.ndarray, rotations: np.ndarray,
                       offsets: np.ndarray = REST_OFFSETS) -> np.ndarray:
    """World joint positions (..., 24, 3) from root positions (..., 3) and local rotations (..., 24, 4).

    One function for whole clips and for the live engine's single frame, 60 times a second: rotation matrices
    composed down the tree keep the per-call overhead small (~0.1 ms a frame)."""
    return forward_kinematics_with_matrices(root_translation, rotations, offsets)[0]


def forward_kinematics_with_matrices(root_translation: np.ndarray, rotations: np.ndarray,
                                     offsets: np.ndarray = REST_OFFSETS) -> tuple[np.ndarray, np.ndarray]:
    """(positions (..., 24, 3), world rotation matrices (..., 24, 3, 3)): `forward_kinematics` and the world
    orientation of every joint it composed on the way (what inverse kinematics starts from)."""
    local = R.quat_to_matrix(rotations)
    world = np.empty_like(local)
    positions = np.empty(local.shape[:-2] + (3,))
    for j, p in enumerate(PARENTS):
        if p < 0:
            world[..., j, :, :] = local[..., j, :, :]
            positions[..., j, :] = root_translation + offsets[j]
        else:
            world[..., j, :, :] = world[..., p, :, :] @ local[..., j, :, :]
            positions[..., j, :] = positions[..., p, :] + world[..., p, :, :] @ offsets[j]
    return positions, world


_MIRROR_JOINTS = list(MIRROR_INDEX)
_MIRROR_ROOT, _MIRROR_QUATERNION = np.array([-1.0, 1.0, 1.0]), np.array([1.0, 1.0, -1.0, -1.0])


def mirror_pose(root: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left/right mirror image of root positions (..., 3) and local rotations (..., 24, 4): swap the sides,
    reflect x (quaternion (w, x, y, z) → (w, x, -y, -z))."""
    return root * _MIRROR_ROOT, rotations[..., _MIRROR_JOINTS, :] * _MIRROR_QUATERNION


def _optional(offsets):
    return () if offsets is None else (offsets,)


def _shape_problem(m):
    if not np.isfinite(m.fps) or m.fps <= 0:
        return f"fps must be positive, got {m.fps}"
    if m.rotations.ndim != 3 or m.rotations.shape[1:] != (NUM_JOINTS, 4):
        return f"rotations must have shape (frames, {NUM_JOINTS}, 4), got {m.rotations.shape}"
    if m.rotations.shape[0] == 0:
        return "no frames"
    if m.root_translation.shape != (m.rotations.shape[0], 3):
        return f"root_translation must have shape ({m.rotations.shape[0]}, 3), got {m.root_translation.shape}"
    if m.offsets.shape != (NUM_JOINTS, 3):
        return f"offsets must have shape ({NUM_JOINTS}, 3), got {m.offsets.shape}"
    if m.contacts is not None and m.contacts.shape != (m.rotations.shape[0], len(FOOT_JOINTS)):
        return f"contacts must have shape ({m.rotations.shape[0]}, {len(FOOT_JOINTS)}), got {m.contacts.shape}"
    for name in ("rotations", "root_translation", "offsets"):
        bad = ~np.isfinite(getattr(m, name))
        if bad.any():
            frame = np.argwhere(bad)[0][0]
            return f"{name} has NaN or infinite values (first at index {frame})"
    if np.any(np.linalg.norm(m.rotations, axis=-1) < 1e-6):
        return "rotations contain zero-length quaternions"
    return None
