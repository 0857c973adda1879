"""BVH motion capture files: reading any skeleton (no retargeting; see `onbeat.core.importers`), writing SMPL-24.

A BVH file is a joint hierarchy (HIERARCHY: nested ROOT/JOINT blocks with an OFFSET and CHANNELS each) followed
by one line of channel values per frame (MOTION). Rotation channels are intrinsic Euler angles in degrees, applied
in the order the file lists them (`Zrotation Xrotation Yrotation` means R = Rz Rx Ry). Position channels are the
joint's translation from its parent and replace its OFFSET in that frame (how Blender and most tools read them).

`End Site` blocks are not joints: their offsets are kept in `BvhFile.end_sites`, keyed by the joint they end.
Lengths stay in the file's units (usually centimetres).

Writing (`write_bvh`): the file follows the layout Blender's importer (io_anim_bvh) reads line by line: `{`,
OFFSET and CHANNELS each on their own line after ROOT/JOINT, `End Site` blocks for leaves, one line per frame.
Lengths are in centimetres (import into Blender with scale 0.01 for metres). The root has 6 channels (position,
then Z X Y rotation), the other joints 3 (Z X Y rotation), the usual mocap order.
"""
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.skeleton import JOINT_NAMES, PARENTS

if TYPE_CHECKING:  # motion.py reads BVH files through this module
    from onbeat.core.motion import Motion

CHANNEL_NAMES = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")


@dataclass
class BvhFile:
    names: list  # joint names, parents before children
    parents: np.ndarray  # (J,) int, -1 for the root
    offsets: np.ndarray  # (J, 3) rest offsets from the parent, as written in the file
    channels: list  # per joint, a tuple of channel names in file order
    frame_time: float  # seconds per frame
    # (T, J, 3) per-frame offset from the parent (OFFSET unless the joint has position channels)
    translations: np.ndarray
    rotations: np.ndarray  # (T, J, 4) local rotations, quaternions (w, x, y, z)
    end_sites: dict = field(default_factory=dict)  # joint index -> (3,) offset of the End Site below it

    @property
    def fps(self) -> float:
        """Frames per second; `Frame Time: 0.0333333` reads as 30, not 30.00003."""
        fps = 1.0 / self.frame_time
        return float(round(fps)) if abs(fps - round(fps)) < 1e-3 else fps

    @property
    def num_frames(self) -> int:
        return self.rotations.shape[0]

    @property
    def root_positions(self) -> np.ndarray:
        """(T, 3) world position of the root joint, in file units."""
        return self.translations[:, 0]

    def global_rotations(self) -> np.ndarray:
        """(T, J, 4) world orientation of each joint."""
        world = np.empty_like(self.rotations)
        for j, p in enumerate(self.parents):
            world[:, j] = self.rotations[:, j] if p < 0 else R.quat_multiply(world[:, p], self.rotations[:, j])
        return world

    def positions(self, world: np.ndarray | None = None) -> np.ndarray:
        """Forward kinematics: (T, J, 3) world joint positions in file units (`world`: the global rotations,
        when the caller has them already)."""
        world = self.global_rotations() if world is None else world
        pos = np.empty_like(self.translations)
        for j, p in enumerate(self.parents):
            if p < 0:
                pos[:, j] = self.translations[:, j]
            else:
                pos[:, j] = pos[:, p] + R.quat_apply(world[:, p], self.translations[:, j])
        return pos


def read_bvh(path: str | Path) -> BvhFile:
    """Parse a BVH file; any problem with it raises OnbeatError naming the file and the line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise OnbeatError(f"{path}: cannot read BVH file ({e.strerror or e})") from None
    motion_line = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise OnbeatError(f"{path}: no MOTION section (truncated or not a BVH file)")
    skeleton = _Hierarchy(path, lines[:motion_line]).parse()
    frame_time, values = _read_motion(path, lines, motion_line, sum(len(c) for c in skeleton["channels"]))
    translations, rotations = _channels_to_pose(values, skeleton["channels"], skeleton["offsets"])
    return BvhFile(skeleton["names"], np.array(skeleton["parents"]), skeleton["offsets"], skeleton["channels"],
                   frame_time, translations, rotations, skeleton["end_sites"])


class _Hierarchy:
    """Recursive-descent reader of the HIERARCHY section, over (token, line number) pairs."""

    def __init__(self, path, lines):
        self.path = path
        # '#' starts a comment (one Perfume file has "Zrotation#").
        self.tokens = [(token, number) for number, line in enumerate(lines, 1) for token in line.split("#")[0].split()]
        self.position = 0
        self.names, self.parents, self.offsets, self.channels, self.end_sites = [], [], [], [], {}

    def parse(self):
        self._expect("HIERARCHY")
        self._expect("ROOT")
        self._joint(parent=-1)
        if self.position < len(self.tokens):
            self._fail(f"unexpected '{self._peek()}' after the root joint (only one ROOT is supported)")
        return dict(names=self.names, parents=self.parents, offsets=np.array(self.offsets).reshape(-1, 3),
                    channels=self.channels, end_sites=self.end_sites)

    def _joint(self, parent):
        name_tokens = []
        while self._peek() != "{":
            name_tokens.append(self._next("a joint name"))
        if not name_tokens:
            self._fail("joint without a name")
        self._expect("{")
        index = len(self.names)
        self.names.append(" ".join(name_tokens))
        self.parents.append(parent)
        self.offsets.append(None)
        self.channels.append(())
        while True:
            keyword = self._next("'}' closing joint " + self.names[index])
            if keyword == "OFFSET":
                self.offsets[index] = self._numbers(3, "OFFSET")
            elif keyword == "CHANNELS":
                self.channels[index] = self._channel_list()
            elif keyword == "JOINT":
                self._joint(parent=index)
            elif keyword == "End":
                self._expect("Site")
                self._expect("{")
                self._expect("OFFSET")
                self.end_sites[index] = np.array(self._numbers(3, "OFFSET"))
                self._expect("}")
            elif keyword == "}":
                break
            else:
                self._fail(f"unexpected '{keyword}' in joint {self.names[index]}", back=1)
        if self.offsets[index] is None:
            self._fail(f"joint {self.names[index]} has no OFFSET", back=1)

    def _channel_list(self):
        count_token = self._next("a channel count")
        if not count_token.isdigit():
            self._fail(f"CHANNELS count must be a number, got '{count_token}'", back=1)
        names = tuple(self._next("a channel name") for _ in range(int(count_token)))
        for name in names:
            if name not in CHANNEL_NAMES:
                self._fail(f"unknown channel '{name}' (expected one of {', '.join(CHANNEL_NAMES)})")
        return names

    def _numbers(self, count, what):
        tokens = [self._next(f"{count} numbers after {what}") for _ in range(count)]
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            self._fail(f"{what} needs {count} numbers, got '{' '.join(tokens)}'", back=1)
        if not np.all(np.isfinite(values)):
            self._fail(f"{what} has a NaN or infinite value", back=1)
        return values

    def _peek(self):
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def _next(self, wanted):
        if self.position >= len(self.tokens):
            self._fail(f"hierarchy ends early: expected {wanted}")
        self.position += 1
        return self.tokens[self.position - 1][0]

    def _expect(self, word):
        token = self._next(f"'{word}'")
        if token != word:
            self._fail(f"expected '{word}', got '{token}'", back=1)

    def _fail(self, problem, back=0):
        at = min(self.position - back, len(self.tokens) - 1)
        where = f"line {self.tokens[at][1]}: " if at >= 0 else ""
        raise OnbeatError(f"{self.path}: {where}{problem}")


def _read_motion(path, lines, motion_line, num_channels):
    """The `Frames:` and `Frame Time:` lines and the (T, num_channels) block of values below them."""
    after_motion = enumerate(lines[motion_line + 1:], motion_line + 1)
    header = list(islice(((i, line) for i, line in after_motion if line.strip()), 2))
    if len(header) < 2 or not header[0][1].strip().startswith("Frames:") \
            or not header[1][1].strip().startswith("Frame Time:"):
        raise OnbeatError(f"{path}: line {motion_line + 2}: expected 'Frames:' and 'Frame Time:' after MOTION")
    (frames_line, frames_text), (time_line, time_text) = header
    try:
        declared = int(frames_text.split(":", 1)[1])
        frame_time = float(time_text.split(":", 1)[1])
    except ValueError:
        raise OnbeatError(f"{path}: line {frames_line + 1}: cannot read the frame count and frame time") from None
    if declared <= 0:
        raise OnbeatError(f"{path}: line {frames_line + 1}: the file has no frames (Frames: {declared})")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise OnbeatError(f"{path}: line {time_line + 1}: Frame Time must be positive, got {frame_time}")

    rows = [(i, line.split()) for i, line in enumerate(lines[time_line + 1:], time_line + 1) if line.strip()]
    for i, tokens in rows:
        if len(tokens) != num_channels:
            raise OnbeatError(f"{path}: line {i + 1}: {len(tokens)} values, the hierarchy has {num_channels} channels")
    if len(rows) != declared:
        state = "truncated? " if len(rows) < declared else ""
        raise OnbeatError(f"{path}: {state}header says {declared} frames, found {len(rows)} frame lines")
    try:
        values = np.array([tokens for _, tokens in rows], dtype=np.float64).reshape(declared, num_channels)
    except ValueError:
        i, token = next((i, t) for i, tokens in rows for t in tokens if not _is_number(t))
        raise OnbeatError(f"{path}: line {i + 1}: '{token}' is not a number") from None
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        raise OnbeatError(f"{path}: line {rows[int(np.argmin(finite))][0] + 1}: NaN or infinite value")
    return frame_time, values


def _is_number(token):
    try:
        float(token)
        return True
    except ValueError:
        return False


def _channels_to_pose(values, channels, offsets):
    """Split the frame values into per-joint translations (T, J, 3) and quaternions (T, J, 4)."""
    frames, joints = len(values), len(channels)
    translations = np.broadcast_to(offsets, (frames, joints, 3)).copy()
    rotations = R.quat_identity((frames, joints))
    # rotation order -> [(joint, columns)]: one vectorised Euler conversion per distinct order
    by_order: dict[str, list] = {}
    column = 0
    for j, names in enumerate(channels):
        rotation_columns, order = [], ""
        for name in names:
            axis = "xyz".index(name[0].lower())
            if name.endswith("position"):
                translations[:, j, axis] = values[:, column]
            else:
                rotation_columns.append(column)
                order += name[0].lower()
            column += 1
        if order:
            by_order.setdefault(order, []).append((j, rotation_columns))
    for order, members in by_order.items():
        joint_ids = [j for j, _ in members]
        angles = values[:, [cols for _, cols in members]]  # (T, k, len(order))
        rotations[:, joint_ids] = R.quat_from_euler(angles, order)
    return translations, rotations


# --- writing SMPL-24 ---------------------------------------------------------------------------------------

CENTIMETRES = 100.0
ROTATION_ORDER = "zxy"
ROOT_CHANNELS = "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
JOINT_CHANNELS = "CHANNELS 3 Zrotation Xrotation Yrotation"
CHILDREN = [[c for c, p in enumerate(PARENTS) if p == j] for j in range(len(PARENTS))]


def write_bvh(motion: "Motion", path: str | Path) -> None:
    """Write `motion` to `path`; `onbeat.core.bvh.read_bvh` reads back the same joint positions."""
    order = _depth_first(0)  # BVH lists joints nested, parents first: not SMPL's index order
    offsets = motion.offsets * CENTIMETRES
    lines = ["HIERARCHY"]
    _hierarchy(0, offsets, lines, depth=0)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    # Unwrapping keeps each angle continuous in time, so Blender's keyframe interpolation never spins a joint.
    euler = np.unwrap(R.quat_to_euler(motion.rotations[:, order], ROTATION_ORDER), period=360.0, axis=0)
    root = (motion.root_translation + motion.offsets[0]) * CENTIMETRES
    values = np.concatenate([root, euler.reshape(motion.num_frames, -1)], axis=1)
    try:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
            np.savetxt(f, values, fmt="%.6f")
    except OSError as e:
        raise OnbeatError(f"{path}: cannot write BVH file ({e.strerror or e})") from None


def _depth_first(joint):
    return [joint] + [j for child in CHILDREN[joint] for j in _depth_first(child)]


def _hierarchy(joint, offsets, lines, depth):
    pad = "  " * depth
    lines += [f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {JOINT_NAMES[joint]}", f"{pad}{{",
              f"{pad}  OFFSET {_triple(offsets[joint])}", f"{pad}  {ROOT_CHANNELS if depth == 0 else JOINT_CHANNELS}"]
    for child in CHILDREN[joint]:
        _hierarchy(child, offsets, lines, depth + 1)
    if not CHILDREN[joint]:
        # Blender draws a leaf bone from the joint to its End Site: continue the last bone by half its length.
        lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_triple(offsets[joint] * 0.5)}", f"{pad}  }}"]
    lines.append(f"{pad}}}")


def _triple(xyz):
    return " ".join(f"{v:.6f}" for v in xyz)
