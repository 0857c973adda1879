"""The `graph` choreographer: beat-synchronous motion matching over a database of real dances (after ChoreoMaster's
choreography graph and the motion matching of game engines), live.

The database (`onbeat.models.graph_database`, a data file: `onbeat.choreographers.datafile`) is every dance cut at
its beats. The live dance is a chain of segments, each one source beat played over one live beat (or two source
beats over one, or one over two, when the live tempo is far from every source's):
- **Beat clock**: every frame's live beat position u (beats, continuous) comes from the rows' beat phase; the
  segment playing spans live beats [start, start + live_beats) and reads its source at the same fraction of its
  source beats (linear between the source's beat frames): the dance is time-warped to the live tempo and its moves
  stay on the beat. Sources are only warped within `TEMPO_RANGE` (±25%).
- **Decision**, each time a segment ends (vectorised over the whole database, `decision_ms` keeps the cost): the
  next segment minimises pose and velocity continuity (the features stored at each beat: the end of the segment
  playing against each candidate's start; its own continuation costs nothing), tempo warp, bar position (a source
  downbeat on a live downbeat), music intensity (the segment's motion intensity rank against how busy the music is
  now, shifted by the energy control), style (the one asked for, or else staying in one), a small price on a jump
  and seeded noise (deterministic per seed). Novelty is a rule: no source beat again within `NOVELTY_BARS` bars.
- **Join**: a jump is blended by inertialization (the offset between the pose shown and the new segment's, with its
  velocity, decays as a critically damped spring of half-life `JOIN_HALF_LIFE_S`) and is foot-contact aware: the
  new segment is placed so that the feet down on both sides of the join land where they were shown, and each
  slice carries its sources' foot contacts (`Motion.contacts`), so the engine's finishing
  (`choreographers.finishing`: foot locking with leg IK) keeps a planted foot pinned across the join.
- **Structure** (after Lodge): bar by bar the music's chroma and timbre are averaged; when a bar starts a new
  section that sounds like one heard at least `NOVELTY_BARS` ago, the dancer returns to the phrase it danced there
  (or its mirror image, whichever joins better); a new section that sounds like nothing before brings other material.
- **Controls**: `set_style(name)` (the styles are in the database's metadata), `energy` (intensity of the material
  chosen and size of the upper body's moves); key poses and mirroring are the engine's (its finishing lands a key
  pose whatever the choreographer does).
Numpy only.
"""
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion, forward_kinematics, mirror_pose
from onbeat.core.music import BEATS_PER_BAR, FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES
from onbeat.core.representation import heading_angles
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX

logger = logging.getLogger(__name__)

GRAPH_FORMAT = 1  # the database layout (`onbeat.models.graph_database`) this runtime reads
SLICE_FRAMES = 8
TEMPO_RANGE = (0.8, 1.25)  # live beat / source beat durations a segment may be warped to
SPANS = ((1, 1), (2, 1), (1, 2))  # (source beats, live beats) of a segment: as recorded, double time, half time
DOUBLE_TIME_BPM, HALF_TIME_BPM = 90.0, 130.0  # below / above these live tempi the other spans are offered too
NOVELTY_BARS = 8  # a source beat is not danced again within this many bars
# Decision costs. The pose cost is the weighted mean squared difference of standardised features (similar poses:
# ~0.1; unrelated ones: ~2). Chosen on the CC music of the shared data (jerk against the sources', joins per minute,
# beat alignment), not on the validation songs.
VELOCITY_WEIGHT, CONTACT_WEIGHT = 0.5, 0.5  # per velocity / contact feature, against 1 per position feature
MIN_POSITION_SPREAD, MIN_VELOCITY_SPREAD = 0.05, 0.2  # m, m/s: the least spread a feature is standardised by
MIRROR_ASYMMETRY = 0.3  # a style further than this from its mirror image is one-sided (waltz 0.5, tango 0.35 here;
#                         the street styles 0.14-0.18, rumba and cha-cha 0.19-0.21)
TEMPO_COST = 4.0  # per log(warp)^2: 0.2 at the edge of the tempo range
BAR_COST = 0.3  # a source beat at another place in the bar than the live one (x its beats' trust)
MOTION_BEATS_TRUST = 0.3  # bar positions estimated from a dance without music are a guess
INTENSITY_COST = 0.5  # per squared difference of intensity ranks
STYLE_SWITCH_COST = 1.0  # leaving the style danced (no style asked for)
JUMP_COST = 0.5  # any segment but the continuation of the one playing
NOISE = 0.15  # uniform noise on every cost: the seed's part in the dance
NEW_SECTION_TAKE_COST = 1.0  # at a new section, staying in the take playing
RECALL_BONUS = 1.5  # the next segment of a recalled phrase
RECALL_BARS = 4  # a recalled phrase is this many bars long
SECTION_MATERIAL_COST = 0.5  # a source beat last danced in another section: each section keeps its own material
SECTION_NOVELTY, SECTION_MATCH = 0.08, 0.97  # bar descriptor: 1 - cosine to the bars before / to a past bar
JOIN_HALF_LIFE_S = 0.08  # inertialization: the join offset halves (roughly) this fast
JOIN_SECONDS = 0.5  # after this the offset is gone (e^-8 of it)
PLL_MAX_SPEEDUP = 0.25  # the live beat clock runs at most this much faster or slower than the music to catch up
PLL_SMOOTHING = 0.25  # per frame: how fast its tempo follows (a few frames: no kink in the time warp)
ACTIVITY_HISTORY_BEATS = 64  # how busy the music is now, ranked against this many past beats
UPPER_BODY = tuple(JOINT_INDEX[n] for n in ("Spine1", "Spine2", "Spine3", "Neck", "Head", "Left_Collar",
                                             "Right_Collar", "Left_Shoulder", "Right_Shoulder", "Left_Elbow",
                                             "Right_Elbow", "Left_Wrist", "Right_Wrist"))
ENERGY_MEAN_SECONDS = 1.0  # the running mean pose the energy control scales the upper body around
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_SECTION_COLUMNS = [_COLUMN[f"chroma_{i}"] for i in range(12)] + [_COLUMN[f"mel_{i}"] for i in range(8)]
_ACTIVITY_COLUMNS = [_COLUMN["onset_strength"], _COLUMN["spectral_flux"]]
_UP = np.array([0.0, 1.0, 0.0])
_CONTACT_MIRROR = [1, 0, 3, 2]  # FOOT_JOINTS (left ankle, right ankle, left foot, right foot) swap sides


def _phase(music, name):
    sin, cos = music[:, _COLUMN[f"{name}_sin"]], music[:, _COLUMN[f"{name}_cos"]]
    return (np.arctan2(sin, cos) / (2 * np.pi)) % 1.0, sin * sin + cos * cos > 0.25


def _yaw(angle):
    return R.quat_from_axis_angle(np.asarray(angle, np.float64)[..., None] * _UP)


def _style_key(name):
    return "".join(c for c in str(name).lower() if c.isalnum())


def _mirrored_features(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(column order, signs) that turn features named `Joint.axis` into their mirror image: left and right joints
    swap, x components change sign."""
    index = {name: i for i, name in enumerate(names)}
    order, signs = [], []
    for name in names:
        joint, _, what = name.partition(".")
        other = joint.replace("Left_", "#").replace("Right_", "Left_").replace("#", "Right_")
        order.append(index[f"{other}.{what}"])
        signs.append(-1.0 if what in ("x", "vx") else 1.0)
    return np.array(order), np.array(signs, np.float32)


class Database:
    """The database file's arrays, ready for decisions: both mirror images of every segment in one candidate table."""

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any], where: str = "graph database"):
        # The database checks what it reads itself (its kind has no ONNX metadata schema): format, rate, arrays.
        if metadata.get("graph_format") != GRAPH_FORMAT:
            raise OnbeatError(f"{where}: graph database format {metadata.get('graph_format')!r}, this onbeat reads "
                              f"{GRAPH_FORMAT}; rebuild it with `onbeat graph build`")
        if metadata.get("fps") != FEATURE_FPS:
            raise OnbeatError(f"{where}: graph database at {metadata.get('fps')!r} fps, not {FEATURE_FPS}")
        try:
            self.rotations = R.quat_normalize(arrays["rotations"].astype(np.float32))
            self.root = arrays["root"].astype(np.float32)
            self.contacts = arrays["contacts"].astype(bool)
            self.beat_frame = arrays["beat_frame"].astype(np.float64)
            sequence = arrays["beat_sequence"].astype(np.int64)
            self.styles = [str(s) for s in arrays["sequence_style"]]
            starts, frames = arrays["sequence_start"], arrays["sequence_frames"]
            music_beats = arrays["sequence_music_beats"].astype(bool)
            pose, velocity = arrays["beat_pose"].astype(np.float32), arrays["beat_velocity"].astype(np.float32)
            intensity = arrays["beat_intensity"].astype(np.float64)
            in_bar = arrays["beat_in_bar"].astype(np.int64)
        except KeyError as e:
            raise OnbeatError(f"{where}: not a graph database (no {e.args[0]!r} array)") from None
        except (ValueError, TypeError) as e:  # arrays of strings or objects where numbers belong
            raise OnbeatError(f"{where}: not a graph database ({str(e)[:200]})") from None
        problem = _inconsistency(self.rotations, self.root, self.contacts, self.beat_frame, sequence, starts, frames,
                                 music_beats, pose, velocity, intensity, in_bar, metadata)
        if problem:
            raise OnbeatError(f"{where}: damaged graph database ({problem})")
        self.sequence = sequence
        self.last_frame = (starts + frames - 1)[sequence]  # last frame of each beat's sequence
        self.style_names = sorted(set(self.styles))
        style_of_beat = np.array([self.style_names.index(s) for s in self.styles])[sequence]
        count = len(self.beat_frame)

        # Standardised matching features, for both mirror images: (2, B, D).
        try:
            pose_order, pose_signs = _mirrored_features(list(metadata["pose_features"]))
            velocity_order, velocity_signs = _mirrored_features(list(metadata["velocity_features"]))
        except (KeyError, TypeError) as e:  # a feature without its mirror image, or no names at all
            raise OnbeatError(f"{where}: damaged graph database (feature names: {e!s:.100})") from None
        contact = np.array([name.endswith(".contact") for name in metadata["pose_features"]])
        # Standardised, but a feature that hardly varies in this database is not blown up by its tiny spread.
        pose_scale = np.where(contact, 1.0, np.maximum(pose.std(0), MIN_POSITION_SPREAD))
        velocity_scale = np.maximum(velocity.std(0), MIN_VELOCITY_SPREAD)
        self.pose = np.stack([pose, pose[:, pose_order] * pose_signs]) / pose_scale.astype(np.float32)
        self.velocity = np.stack([velocity, velocity[:, velocity_order] * velocity_signs]) / velocity_scale.astype(
            np.float32)
        self.pose_weight = np.where(contact, CONTACT_WEIGHT, 1.0).astype(np.float32)
        self.weight_sum = float(self.pose_weight.sum() + VELOCITY_WEIGHT * velocity.shape[1])

        # Motion intensity per source beat (m per beat), ranked within its style: 0 calmest .. 1 busiest.
        duration = np.append(np.diff(self.beat_frame), 0.0)
        per_beat = intensity * duration
        rank = np.zeros(count)
        for style in range(len(self.style_names)):
            chosen = np.flatnonzero(style_of_beat == style)
            rank[chosen] = np.argsort(np.argsort(per_beat[chosen])) / max(len(chosen) - 1, 1)

        # A style whose dancers favour one side (a partner hold: waltz, tango) is not danced mirrored: its mean pose
        # is further from its mirror image than MIRROR_ASYMMETRY (standardised, root mean square).
        self.handed = np.array([np.sqrt(np.mean((self.pose[0][style_of_beat == style].mean(0)
                                                 - self.pose[1][style_of_beat == style].mean(0)) ** 2))
                                > MIRROR_ASYMMETRY for style in range(len(self.style_names))])

        # The candidate table: every (span, mirror, first beat) whose beats all lie in one sequence.
        columns: dict[str, list[np.ndarray]] = {k: [] for k in ("beat", "mirror", "source", "live", "duration")}
        for source_beats, live_beats in SPANS:
            for mirror in (0, 1):
                first = np.arange(count - source_beats)
                first = first[(sequence[first] == sequence[first + source_beats])
                              & ~(bool(mirror) & self.handed[style_of_beat[first]])]
                columns["beat"].append(first)
                columns["mirror"].append(np.full(len(first), mirror))
                columns["source"].append(np.full(len(first), source_beats))
                columns["live"].append(np.full(len(first), live_beats))
                columns["duration"].append(self.beat_frame[first + source_beats] - self.beat_frame[first])
        table = {k: np.concatenate(v) for k, v in columns.items()}
        if not len(table["beat"]):
            raise OnbeatError(f"{where}: the graph database has no segment (no two beats in one sequence)")
        self.beat, self.mirror = table["beat"], table["mirror"]
        self.source_beats, self.live_beats = table["source"], table["live"]
        self.duration = table["duration"]  # source frames
        self.style = style_of_beat[self.beat]
        self.bar = in_bar[self.beat]
        self.bar_trust = np.where(music_beats[sequence[self.beat]], 1.0, MOTION_BEATS_TRUST)
        self.rank = rank[self.beat]
        self.sequence_of = sequence[self.beat]
        self.candidate_of = {(int(b), int(m), int(s), int(v)): i for i, (b, m, s, v) in
                             enumerate(zip(self.beat, self.mirror, self.source_beats, self.live_beats, strict=True))}
        self._pools: dict[tuple[int | None, int], Pool] = {}

    def pool(self, style: int | None, span: int) -> "Pool":
        """The candidates of one span (an index of SPANS) and style (None: all), sorted by source duration."""
        key = (style, span)
        if key not in self._pools:
            source_beats, live_beats = SPANS[span]
            mask = (self.source_beats == source_beats) & (self.live_beats == live_beats)
            if style is not None:
                mask &= self.style == style
            ids = np.flatnonzero(mask)
            ids = ids[np.argsort(self.duration[ids], kind="stable")]
            pose = self.pose[self.mirror[ids], self.beat[ids]] * np.sqrt(self.pose_weight)
            velocity = self.velocity[self.mirror[ids], self.beat[ids]] * np.float32(np.sqrt(VELOCITY_WEIGHT))
            self._pools[key] = Pool(ids, self.duration[ids], self.beat[ids], pose, np.einsum("ij,ij->i", pose, pose),
                                    velocity, np.einsum("ij,ij->i", velocity, velocity), self.rank[ids],
                                    self.bar[ids], self.bar_trust[ids], self.style[ids], self.sequence_of[ids])
        return self._pools[key]

    def style_index(self, name: str) -> int:
        keys = [_style_key(s) for s in self.style_names]
        if _style_key(name) not in keys:
            raise OnbeatError(f"style {name!r}: this graph database knows {', '.join(self.style_names)}")
        return keys.index(_style_key(name))


def _inconsistency(rotations, root, contacts, beat_frame, sequence, starts, frames, music_beats, pose, velocity,
                   intensity, in_bar, metadata) -> str | None:
    """What makes a database's arrays disagree with one another (a damaged or foreign file), or None."""
    count, beats, sequences = len(rotations), len(beat_frame), len(starts)
    if rotations.shape[1:] != (24, 4) or root.shape != (count, 3) or contacts.shape != (count, len(FOOT_JOINTS)):
        return "frame arrays of mismatched shapes"
    if not (np.isfinite(rotations).all() and np.isfinite(root).all() and np.isfinite(beat_frame).all()):
        return "NaN or infinite values"
    if any(len(a) != beats for a in (sequence, pose, velocity, intensity, in_bar)) or len(frames) != sequences \
            or len(music_beats) != sequences:
        return "beat or sequence arrays of mismatched lengths"
    if pose.shape[1] != len(metadata["pose_features"]) or velocity.shape[1] != len(metadata["velocity_features"]):
        return "feature arrays that do not match the feature names"
    if sequences == 0 or (sequence < 0).any() or (sequence >= sequences).any():
        return "beats of sequences that are not there"
    if (starts < 0).any() or (frames < 1).any() or (starts + frames > count).any():
        return "sequences outside the frames"
    if (beat_frame < starts[sequence]).any() or (beat_frame > (starts + frames - 1)[sequence]).any():
        return "beats outside their sequences"
    return None


@dataclass
class Pool:
    """Candidates sorted by source duration, so the ones a live tempo may warp are one slice, with everything a
    decision reads about them in that order (a slice of each array is a view: no gathers). The matching features
    are pre-weighted (`pose`: by the square roots of the feature weights) with their squared norms, so the pose cost
    against a query is two matrix-vector products."""
    ids: np.ndarray  # into the database's candidate table
    duration: np.ndarray  # source frames
    beat: np.ndarray
    pose: np.ndarray
    pose_norm: np.ndarray
    velocity: np.ndarray
    velocity_norm: np.ndarray
    rank: np.ndarray
    bar: np.ndarray
    bar_trust: np.ndarray
    style: np.ndarray
    sequence: np.ndarray


@dataclass
class Segment:
    """A candidate being danced: from live beat `start` for `live_beats` beats, placed in the live world by turning
    its source (mirrored or not) by `yaw` about the vertical and shifting it by `offset`."""
    candidate: int
    start: float
    yaw: float = 0.0
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass
class Join:
    """Inertialization of one jump: rotation-vector offsets (24, 3) of the local rotations (the root's in the world)
    and of the root position (3,), with their velocities, decaying from output frame `frame` (fractional)."""
    frame: float
    rotation: np.ndarray
    rotation_velocity: np.ndarray
    position: np.ndarray
    position_velocity: np.ndarray

    def at(self, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
        """(rotation offsets (n, 24, 3), position offsets (n, 3)) at output frames `frames`."""
        t = np.maximum(np.asarray(frames, np.float64) - self.frame, 0.0) / fps
        damping = 2.0 * np.log(2.0) / JOIN_HALF_LIFE_S
        decay = np.exp(-damping * t)

        def spring(x0, v0):
            shape = (len(t),) + (1,) * x0.ndim
            return (x0 + (v0 + damping * x0) * t.reshape(shape)) * decay.reshape(shape)

        return spring(self.rotation, self.rotation_velocity), spring(self.position, self.position_velocity)

    def apply(self, roots: np.ndarray, rotations: np.ndarray, frames: np.ndarray, fps: float) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
        """Roots (n, 3) and local rotations (n, 24, 4) of the new segment with the offsets at `frames` added."""
        rotation, position = self.at(frames, fps)
        return roots + position, R.quat_multiply(R.quat_from_axis_angle(rotation), rotations)


class LiveBeats:
    """The live beat position of every frame (beats since the dance began, continuous): a phase-locked loop on the
    rows' beat phase. The rows the engine hands over are forecasts from the latest beat state, and the tracker
    re-phases them slice by slice; followed literally they would jump and stall the time warp (and shake the dance),
    so the position runs at the rows' tempo and takes up their phase error over about a beat, at most
    PLL_MAX_SPEEDUP faster or slower. Without a beat it runs on at the last tempo."""

    def __init__(self):
        self.position: float | None = None
        self.period = 15.0  # frames per beat (120 BPM) until the rows say otherwise
        self.rate = 1.0 / self.period  # beats per frame, as it runs

    def advance(self, music: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions (frames,), position in the bar of each frame's beat (frames,)) for the first `frames` rows;
        all rows (lookahead included) update the tempo."""
        phase, defined = _phase(music, "beat_phase")
        bar, bar_defined = _phase(music, "bar_phase")
        step = np.diff(phase) % 1.0
        steady = defined[1:] & defined[:-1] & (step < 0.5) & (step > 0)
        if steady.any():
            self.period = float(np.clip(1.0 / np.median(step[steady]), 5.0, 60.0))  # 30-360 BPM
        positions = np.empty(frames)
        in_bar = np.zeros(frames, np.int64)
        for i in range(frames):
            error = 0.0
            if self.position is None:
                self.position = float(phase[i]) if defined[i] else 0.0
            else:
                wanted = 1.0 / self.period
                if defined[i]:  # beats the rows are ahead of where we are about to be
                    error = (phase[i] - self.position - self.rate + 0.5) % 1.0 - 0.5
                    wanted *= 1.0 + np.clip(error, -PLL_MAX_SPEEDUP, PLL_MAX_SPEEDUP)  # taken up over about a beat
                self.rate += PLL_SMOOTHING * (wanted - self.rate)
                self.position += self.rate
                if defined[i]:
                    error = (phase[i] - self.position + 0.5) % 1.0 - 0.5
            positions[i] = self.position
            if bar_defined[i] and defined[i]:  # the bar phase, moved by our lag behind the rows
                in_bar[i] = int(np.round(BEATS_PER_BAR * bar[i] - error - self.position % 1.0)) % BEATS_PER_BAR
            else:
                in_bar[i] = int(np.floor(self.position)) % BEATS_PER_BAR
        return positions, in_bar

    @property
    def bpm(self) -> float:
        return 60.0 * FEATURE_FPS / self.period


class Sections:
    """Live structure: one descriptor per bar (chroma and mel bands, averaged). A bar unlike the one before starts a
    section; one that sounds like the start of a section heard at least NOVELTY_BARS ago is that section back, and
    takes its label (`label`: the section playing, 0, 1, ... in order of first appearance)."""

    def __init__(self):
        self.bars: list[np.ndarray] = []
        self.starts: list[bool] = []
        self.labels: list[int] = []
        self._sum, self._weight = np.zeros(len(_SECTION_COLUMNS)), 0.0

    @property
    def label(self) -> int:
        return self.labels[-1] if self.labels else 0

    def listen(self, row: np.ndarray, frames: int) -> None:
        self._sum += frames * np.asarray(row, np.float64)[_SECTION_COLUMNS]
        self._weight += frames

    def close_bar(self) -> tuple[bool, int | None]:
        """End the bar: (it starts a section, the earlier bar that section started at when it is one come back)."""
        descriptor = self._sum / max(self._weight, 1e-9)
        descriptor = descriptor / max(float(np.linalg.norm(descriptor)), 1e-9)
        self._sum, self._weight = np.zeros(len(_SECTION_COLUMNS)), 0.0
        new_section = not self.bars or (not self.starts[-1] and 1.0 - float(descriptor @ self.bars[-1])
                                         > SECTION_NOVELTY)  # one bar at a time: a change smeared over two is one
        self.bars.append(descriptor)
        self.starts.append(new_section)
        if not new_section:
            self.labels.append(self.label)
            return False, None
        earlier = [j for j in range(len(self.bars) - 1 - NOVELTY_BARS) if self.starts[j]]
        similarity = [float(descriptor @ self.bars[j]) for j in earlier]
        if similarity and max(similarity) >= SECTION_MATCH:
            back = earlier[int(np.argmax(similarity))]
            self.labels.append(self.labels[back])
            return True, back
        self.labels.append(max(self.labels, default=-1) + 1)
        return True, None


class GraphChoreographer:
    """The Choreographer over a graph database (see the module docstring). `steps`: {"database": its DataFile}."""

    fps = FEATURE_FPS
    slice_frames = SLICE_FRAMES

    def __init__(self, steps: dict[str, Any], metadata: dict[str, Any], seed: int | None = None):
        part = steps["database"]
        self.database = Database(part.arrays, metadata, str(getattr(part, "path", "graph database")))
        self.metadata = metadata
        self.styles = list(self.database.style_names)
        self.seed = seed
        self.decision_ms: deque[float] = deque(maxlen=4096)
        self.set_style(None)
        self.reset()

    # --- the Choreographer contract ----------------------------------------------------------------------------
    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.beats = LiveBeats()
        self.sections = Sections()
        self.segment: Segment | None = None
        self.join: Join | None = None
        self.frame = 0  # output frames made since the reset
        self._beat: int | None = None  # the live beat the last frame was in
        self.last_played = np.full(len(self.database.beat_frame), -np.inf)  # live beat each source beat was danced
        self.material = np.full(len(self.database.beat_frame), -1)  # the section it was danced in (-1: never)
        self.bar_segments: list[list[int]] = [[]]  # candidates started in each live bar
        self.recall: deque[int] = deque()
        self.new_section = False
        self.activity: deque[float] = deque(maxlen=ACTIVITY_HISTORY_BEATS)
        self._activity = [0.0, 0.0]  # onset + flux summed over this beat's frames, and the frames
        self._mean_upper: np.ndarray | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # last frame made: (root, rotations)
        self._pose_cost = 0.0
        self.joins: list[dict[str, float]] = []  # every jump: output frame, pose cost, offsets (for the evaluation)
        self.history: list[tuple[float, int]] = []  # (live beat, candidate) of every segment danced
        self.recalls: list[tuple[int, int]] = []  # (bar, earlier bar whose phrase it brings back) per section return

    def set_quality(self, level: float) -> None:
        """A decision costs well under a millisecond: nothing to trade."""

    def set_style(self, name: str | None) -> None:
        """Dance the named style of the database (any spelling: `hip-hop`, `hiphop`); None or "" for any."""
        self._style = None if not name else self.database.style_index(name)
        for span in range(len(SPANS)):
            self.database.pool(self._style, span)  # built now, not at a beat

    @property
    def style(self) -> str | None:
        return None if self._style is None else self.database.style_names[self._style]

    def next_slice(self, music: np.ndarray, energy: float = 1.0, key_pose: str | None = None) -> Motion:
        music = np.asarray(music, dtype=np.float32)
        frames = self.slice_frames
        if music.ndim != 2 or music.shape[1] != FEATURE_DIM or len(music) < frames:
            raise OnbeatError(f"music for a slice must have shape (>= {frames}, {FEATURE_DIM}), got {music.shape}")
        energy = float(np.clip(energy, 0.0, 2.0))
        positions, in_bar = self.beats.advance(music, frames)
        self.sections.listen(music[0], frames)  # the rows after the first are the ear's forecast: not heard yet
        self._activity[0] += frames * float(music[0, _ACTIVITY_COLUMNS].sum())
        self._activity[1] += frames
        segments: list[Segment] = []
        joins: list[Join | None] = []
        for i in range(frames):
            self._follow(positions[i], positions[i - 1] if i else None, in_bar[i], energy, self.frame + i)
            assert self.segment is not None  # _follow starts one on the first frame
            segments.append(self.segment)
            joins.append(self.join)
        roots, rotations, contacts = np.empty((frames, 3)), np.empty((frames, 24, 4)), np.empty((frames, 4), bool)
        for segment in {id(s): s for s in segments}.values():
            same = np.array([s is segment for s in segments])
            roots[same], rotations[same], contacts[same] = self._sample(segment, positions[same])
        output_frames = self.frame + np.arange(frames)
        roots, rotations = self._inertialized(roots, rotations, joins, output_frames)
        rotations = self._with_energy(rotations, energy)
        self.frame += frames
        self._last = (roots[-1].copy(), rotations[-1].copy())
        return Motion(self.fps, roots, rotations, contacts=contacts.astype(np.float64))

    # --- decisions ---------------------------------------------------------------------------------------------
    def _follow(self, position: float, previous: float | None, in_bar: int, energy: float, frame: int) -> None:
        """Start the next segment when the live beat reaches the end of the one playing (several, after a gap)."""
        beat = int(np.floor(position))
        if self._beat is not None and beat > self._beat:
            self._on_beat(in_bar)
        self._beat = beat
        if self.segment is None:
            self._start(self._decide(in_bar, energy), float(beat), float(frame))
            return
        for _ in range(BEATS_PER_BAR):
            end = self.segment.start + self.database.live_beats[self.segment.candidate]
            if position < end:
                return
            at = frame if previous is None or position <= previous else frame - 1 + (end - previous) / (
                position - previous)
            self._start(self._decide(in_bar, energy), end, float(at))
        self.segment.start = float(np.floor(position))  # far behind (the engine skipped ahead): on from this beat

    def _on_beat(self, in_bar: int) -> None:
        """Book-keeping at each live beat: how busy the music was; at a downbeat, the bar's place in the structure."""
        self.activity.append(self._activity[0] / max(self._activity[1], 1e-9))
        self._activity = [0.0, 0.0]
        if in_bar != 0:
            return
        new_section, recalled = self.sections.close_bar()
        self.bar_segments.append([])
        self.new_section = new_section and recalled is None
        if recalled is not None:
            self.recall = deque(c for bar in self.bar_segments[recalled + 1:recalled + 1 + RECALL_BARS] for c in bar)
            self.recalls.append((len(self.bar_segments) - 1, recalled + 1))

    def _mirrored(self, candidate: int) -> int:
        """The candidate's mirror image (itself for a style not danced mirrored)."""
        db = self.database
        return db.candidate_of.get((int(db.beat[candidate]), 1 - int(db.mirror[candidate]),
                                    int(db.source_beats[candidate]), int(db.live_beats[candidate])), candidate)

    def _decide(self, in_bar: int, energy: float) -> int:
        """The candidate of least cost to dance next (see the module docstring)."""
        began = time.perf_counter()
        db = self.database
        bpm, now = self.beats.bpm, float(np.floor(self.beats.position or 0.0))
        spans = [0] + [1] * (bpm <= DOUBLE_TIME_BPM) + [2] * (bpm >= HALF_TIME_BPM)
        current = self.segment
        if current is not None:
            c = current.candidate
            end, mirror = db.beat[c] + db.source_beats[c], db.mirror[c]
            query_pose = db.pose[mirror, end] * np.sqrt(db.pose_weight)
            query_velocity = db.velocity[mirror, end] * np.float32(np.sqrt(VELOCITY_WEIGHT) / self._warp(c))
            continuation = db.candidate_of.get((int(end), int(mirror), int(db.source_beats[c]),
                                                int(db.live_beats[c])), -1)
            recall = (self.recall[0], self._mirrored(self.recall[0])) if self.recall else ()
        recent = self.last_played > now - NOVELTY_BARS * BEATS_PER_BAR
        target = self._intensity_target(energy)
        best_cost, choice, choice_pose_cost = np.inf, -1, 0.0
        for span in spans:
            pool = db.pool(self._style, span)
            live_frames = SPANS[span][1] * self.beats.period
            lo, hi = np.searchsorted(pool.duration, [live_frames / TEMPO_RANGE[1], live_frames / TEMPO_RANGE[0]])
            if hi <= lo:  # nothing of this span in tempo: the least warped few
                lo, hi = max(lo - 32, 0), min(hi + 32, len(pool.ids))
            if hi <= lo:
                continue
            part = slice(lo, hi)
            inverse_warp = pool.duration[part] / live_frames
            cost = TEMPO_COST * np.log(inverse_warp) ** 2
            cost += INTENSITY_COST * (pool.rank[part] - target) ** 2
            cost += NOISE * self.rng.random(hi - lo)
            beats = pool.beat[part]
            stale = recent[beats]
            if SPANS[span][0] == 2:
                stale |= recent[beats + 1]
            else:
                cost += BAR_COST * pool.bar_trust[part] * (pool.bar[part] != in_bar)
            cost[stale] = np.inf
            material = self.material[beats]
            cost += SECTION_MATERIAL_COST * ((material >= 0) & (material != self.sections.label))
            pose_cost = np.zeros(hi - lo)
            if current is not None:
                # |p - q|^2 + |v / warp - u|^2 from the pool's norms and two matrix-vector products
                pose_cost = pool.pose_norm[part] - 2.0 * (pool.pose[part] @ query_pose) + query_pose @ query_pose
                pose_cost += (pool.velocity_norm[part] * inverse_warp ** 2
                              - 2.0 * inverse_warp * (pool.velocity[part] @ query_velocity)
                              + query_velocity @ query_velocity)
                pose_cost = np.maximum(pose_cost, 0.0) / db.weight_sum
                cost += pose_cost + JUMP_COST * (pool.ids[part] != continuation)
                if self._style is None:
                    cost += STYLE_SWITCH_COST * (0.3 if self.new_section else 1.0) * (pool.style[part] != db.style[c])
                if self.new_section:
                    cost += NEW_SECTION_TAKE_COST * (pool.sequence[part] == db.sequence_of[c])
                for wanted in recall:  # the phrase again, or (its variation) its mirror image: whichever joins better
                    cost -= RECALL_BONUS * (pool.ids[part] == wanted)
            best = int(np.argmin(cost))
            if cost[best] < best_cost:
                best_cost, choice, choice_pose_cost = cost[best], int(pool.ids[lo + best]), float(pose_cost[best])
        if choice < 0 or not np.isfinite(best_cost):  # everything danced lately: the oldest, in tempo or not
            choice = self._oldest()
        if self.recall:
            head = self.recall.popleft()
            if choice == self._mirrored(head):  # the mirror image it is, to the end of the phrase
                self.recall = deque(self._mirrored(c) for c in self.recall)
            elif choice != head:
                self.recall.clear()  # the phrase cannot go on here (tempo, style): new material instead
        self.new_section = False
        self._pose_cost = choice_pose_cost
        self.decision_ms.append(1000.0 * (time.perf_counter() - began))
        return choice

    def _warp(self, candidate: int) -> float:
        """Live beat duration / source duration of a candidate at the live tempo now."""
        db = self.database
        return float(db.live_beats[candidate] * self.beats.period / db.duration[candidate])

    def _oldest(self) -> int:
        """The normal-span candidate of the style whose beat was danced longest ago (a database too small for the
        novelty rule)."""
        pool = self.database.pool(self._style, 0)
        return int(pool.ids[np.argmin(self.last_played[self.database.beat[pool.ids]])])

    def _intensity_target(self, energy: float) -> float:
        """How busy the music is now (onsets and flux over the last bar, ranked against the bars before; 0.5 while
        the music keeps one level), moved by the energy control: 0 → calmest material, 2 → busiest."""
        target = 0.5
        if len(self.activity) >= 2 * BEATS_PER_BAR:
            bars = np.convolve(np.array(self.activity), np.full(BEATS_PER_BAR, 1.0 / BEATS_PER_BAR), mode="valid")
            if np.ptp(bars) > 1e-3:
                target = float(np.mean(bars < bars[-1]) + 0.5 * np.mean(bars == bars[-1]))
        return float(np.clip(target + 0.5 * (energy - 1.0), 0.0, 1.0))

    # --- playing segments ------------------------------------------------------------------------------------
    def _start(self, candidate: int, start: float, frame: float) -> None:
        """Dance `candidate` from live beat `start` (output frame `frame`): a continuation goes on in place, a jump
        is placed and blended (`_place`)."""
        db = self.database
        old, new = self.segment, Segment(candidate, start)
        if old is None:
            self._place_first(new)
        elif db.beat[candidate] == db.beat[old.candidate] + db.source_beats[old.candidate] and \
                db.mirror[candidate] == db.mirror[old.candidate]:
            new.yaw, new.offset = old.yaw, old.offset
        else:
            self._place(old, new, frame)
        self.last_played[db.beat[candidate]:db.beat[candidate] + db.source_beats[candidate]] = start
        self.material[db.beat[candidate]:db.beat[candidate] + db.source_beats[candidate]] = self.sections.label
        self.bar_segments[-1].append(candidate)
        self.history.append((start, candidate))
        self.segment = new

    def _place_first(self, segment: Segment) -> None:
        """The first segment stands where the last frame made stood (after a reset), else at the origin facing +z."""
        root, rotations, _ = self._sample(segment, np.array([segment.start]), placed=False)
        heading = 0.0 if self._last is None else float(heading_angles(self._last[1][0]))
        segment.yaw = heading - float(heading_angles(rotations[0, 0]))
        target = np.zeros(3) if self._last is None else self._last[0]
        segment.offset = (target - R.quat_apply(_yaw(segment.yaw), root[0])) * np.array([1.0, 0.0, 1.0])

    def _place(self, old: Segment, new: Segment, frame: float) -> None:
        """Place a jump where the old segment ends (heading kept; the feet down in both kept where they are shown,
        else the root), and inertialize from the pose shown to the new segment's."""
        delta = 0.05  # beats, for velocities
        seconds = delta * self.beats.period / self.fps
        boundary = new.start
        shown_root, shown_rotations, old_contacts = self._sample(old, np.array([boundary - delta, boundary]))
        if self.join is not None:
            shown_root, shown_rotations = self.join.apply(
                shown_root, shown_rotations, np.array([frame - delta * self.beats.period, frame]), self.fps)
        raw_root, raw_rotations, raw_contacts = self._sample(new, np.array([boundary]), placed=False)
        new.yaw = float(heading_angles(shown_rotations[1, 0]) - heading_angles(raw_rotations[0, 0]))
        down = (old_contacts[1] & raw_contacts[0]).reshape(2, 2).any(axis=0)  # per side: ankle or toes, in both
        ankles = [FOOT_JOINTS[side] for side in np.flatnonzero(down)]
        shown_feet = forward_kinematics(shown_root[1], shown_rotations[1])[ankles]
        if ankles:  # the new segment's feet land on the shown ones (on their middle, when both are down)
            turned_root, turned_rotations, _ = self._sample(new, np.array([boundary]))
            anchor = (shown_feet - forward_kinematics(turned_root[0], turned_rotations[0])[ankles]).mean(axis=0)
        else:
            anchor = shown_root[1] - R.quat_apply(_yaw(new.yaw), raw_root[0])
        new.offset = anchor * np.array([1.0, 0.0, 1.0])
        placed_root, placed_rotations, _ = self._sample(new, np.array([boundary, boundary + delta]))
        rotation = _rotation_offsets(shown_rotations[1], placed_rotations[0])
        rotation_velocity = (_rotation_offsets(shown_rotations[1], shown_rotations[0])
                             - _rotation_offsets(placed_rotations[1], placed_rotations[0])) / seconds
        position = shown_root[1] - placed_root[0]
        position_velocity = ((shown_root[1] - shown_root[0]) - (placed_root[1] - placed_root[0])) / seconds
        self.join = Join(frame, rotation, rotation_velocity, position, position_velocity)
        new_feet = forward_kinematics(placed_root[0], placed_rotations[0])[ankles]
        self.joins.append({"frame": frame, "pose_cost": self._pose_cost,
                           "rotation_degrees": float(np.degrees(np.linalg.norm(rotation, axis=-1)).max()),
                           "root_metres": float(np.linalg.norm(position)),
                           "feet_metres": float(np.abs((shown_feet - new_feet)[:, [0, 2]]).max(initial=0.0))})

    def _sample(self, segment: Segment, positions: np.ndarray, placed: bool = True) -> tuple[np.ndarray, np.ndarray,
                                                                                             np.ndarray]:
        """(roots (n, 3), local rotations (n, 24, 4), foot contacts (n, 4)) of a segment at live beat `positions`,
        read from its source at the same fraction of its beats, mirrored if it is, placed in the live world (or
        left in its source's: `placed=False`)."""
        db = self.database
        c = segment.candidate
        x = np.clip((positions - segment.start) / db.live_beats[c] * db.source_beats[c], 0.0, db.source_beats[c])
        beat = db.beat[c] + np.minimum(np.floor(x).astype(int), db.source_beats[c] - 1)
        source = db.beat_frame[beat] + (x - (beat - db.beat[c])) * (db.beat_frame[beat + 1] - db.beat_frame[beat])
        first = np.floor(source).astype(int)
        second = np.minimum(first + 1, db.last_frame[beat])
        share = source - first
        root = (1 - share)[:, None] * db.root[first] + share[:, None] * db.root[second]
        rotations = R.quat_slerp(db.rotations[first].astype(np.float64), db.rotations[second].astype(np.float64),
                                 share[:, None])
        contacts = db.contacts[np.where(share < 0.5, first, second)]
        if db.mirror[c]:
            root, rotations = mirror_pose(root, rotations)
            contacts = contacts[:, _CONTACT_MIRROR]
        if placed:
            turn = _yaw(segment.yaw)
            root = R.quat_apply(turn, root) + segment.offset
            rotations[:, 0] = R.quat_multiply(turn, rotations[:, 0])
        return root, rotations, contacts

    # --- blending and controls ---------------------------------------------------------------------------------
    def _inertialized(self, roots, rotations, joins, frames):
        """The frames of the segments with, after a jump, the join offsets added."""
        out_roots, out_rotations = roots.copy(), rotations.copy()
        for join in {id(j): j for j in joins if j is not None}.values():
            chosen = np.array([j is join and f - join.frame <= JOIN_SECONDS * self.fps
                               for j, f in zip(joins, frames, strict=True)])
            if chosen.any():
                out_roots[chosen], out_rotations[chosen] = join.apply(roots[chosen], rotations[chosen],
                                                                      frames[chosen], self.fps)
        return out_roots, out_rotations

    def _with_energy(self, rotations: np.ndarray, energy: float) -> np.ndarray:
        """The upper body's moves scaled by `energy` around its running mean pose (the legs keep the feet planted);
        the mean follows the slices' middle frames."""
        upper = list(UPPER_BODY)
        middle = rotations[len(rotations) // 2, upper]
        alpha = 1.0 - np.exp(-len(rotations) / (ENERGY_MEAN_SECONDS * self.fps))
        self._mean_upper = middle.copy() if self._mean_upper is None else R.quat_slerp(self._mean_upper, middle,
                                                                                         alpha)
        if energy == 1.0:
            return rotations
        out = rotations.copy()
        out[:, upper] = R.quat_slerp(np.broadcast_to(self._mean_upper, out[:, upper].shape), rotations[:, upper],
                                     energy)
        return out


def _rotation_offsets(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors of a * b^-1 (the rotation that takes b to a, on the left)."""
    return R.quat_to_axis_angle(R.quat_multiply(a, R.quat_conjugate(b)))
