"""The `graph` choreographer's motion database: every dance of the data sets cut at its beats.

`build(tracks)` gives the arrays and metadata of the database file (`onbeat.choreographers.datafile`):
- per frame, all sequences one after another (30 fps, the canonical skeleton): `rotations` (F, 24, 4) float16 local
  quaternions (the root's in the sequence's own world frame), `root` (F, 3) float32 metres, `contacts` (F, 4) uint8;
- per beat: `beat_frame` (fractional frame of the beat, into F), `beat_sequence`, `beat_in_bar` (0 = downbeat), and
  what the runtime matches on: `beat_pose` (joint positions around the root in its heading frame, root height, foot
  contacts), `beat_velocity` (joint and root velocities in the heading frame, m/s at the source's tempo), named in
  the metadata (`pose_features`, `velocity_features`), and `beat_intensity` (mean joint speed, m/s, until the next
  beat). Two consecutive beats of one sequence bound a segment, the unit the runtime plays, time-warped to the live
  beat;
- per sequence: `sequence_name`, `sequence_source`, `sequence_style`, `sequence_start`, `sequence_frames`,
  `sequence_music_beats` (its beats are its music's, else estimated from the motion).

Beats: each track's beat grid (`models.dataset`: its song's tracker beats, the data set's annotations, or the
dance's own kinematic beats), made one steady grid (`steady_grid`). A take recorded as several near-copies
(Motorica's two sub-sampling phases, Perfume's three dancers of one choreography) keeps its longest sequence: a copy
would bring a move back.

`generated_tracks` makes the database onbeat may ship: dances of its own shipped models, no recorded motion.
"""
import logging
from typing import Any

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.music import BEATS_PER_BAR, FEATURE_FPS
from onbeat.core.representation import CONTACT_SLICE, decode, heading_angles
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX, JOINT_NAMES
from onbeat.models.dataset import Track

logger = logging.getLogger(__name__)

GRAPH_FORMAT = 1  # the database layout above; the runtime refuses other versions
STEADY_BPM = (70.0, 140.0)  # a take's steady grid is at a dancer's step tempo in this range (one octave)
# Where a pose is matched: the limbs' ends and middles around the root (a join between similar poses is short),
# the feet and hands' velocities (a join keeps the direction of the moves), which feet are down (a join keeps them).
POSE_JOINTS = ("Left_Ankle", "Right_Ankle", "Left_Knee", "Right_Knee", "Left_Wrist", "Right_Wrist", "Left_Elbow",
               "Right_Elbow", "Head")
VELOCITY_JOINTS = ("Left_Ankle", "Right_Ankle", "Left_Wrist", "Right_Wrist", "Pelvis")
POSE_FEATURES = (*(f"{joint}.{axis}" for joint in POSE_JOINTS for axis in "xyz"), "Pelvis.height",
                 *(f"{JOINT_NAMES[j]}.contact" for j in FOOT_JOINTS))
VELOCITY_FEATURES = tuple(f"{joint}.v{axis}" for joint in VELOCITY_JOINTS for axis in "xyz")


def beat_features(motion: Motion, contacts: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """(pose (B, len(POSE_FEATURES)), velocity (B, len(VELOCITY_FEATURES)), intensity (B,)) at the beats `frames`
    (fractional, of this motion), as the module docstring describes."""
    positions = motion.positions()
    count = len(positions)
    at = np.clip(np.round(frames).astype(int), 1, count - 2)
    to_heading = R.quat_from_axis_angle(-heading_angles(motion.rotations[at, 0])[:, None] * np.array([0.0, 1.0, 0.0]))
    root = positions[at, 0]
    pose_joints = [JOINT_INDEX[name] for name in POSE_JOINTS]
    around = R.quat_apply(to_heading[:, None], positions[at][:, pose_joints] - root[:, None])
    pose = np.concatenate([around.reshape(len(at), -1), root[:, 1:2], contacts[at]], axis=1)
    velocity_joints = [JOINT_INDEX[name] for name in VELOCITY_JOINTS]
    step = (positions[at + 1] - positions[at - 1])[:, velocity_joints] * motion.fps / 2
    velocity = R.quat_apply(to_heading[:, None], step).reshape(len(at), -1)
    speed = np.concatenate([[0.0], np.linalg.norm(np.diff(positions, axis=0), axis=-1).mean(axis=1) * motion.fps])
    cumulative = np.cumsum(speed)
    ends = np.append(at[1:], at[-1])
    intensity = (cumulative[ends] - cumulative[at]) / np.maximum(ends - at, 1)
    return pose.astype(np.float32), velocity.astype(np.float32), intensity.astype(np.float32)


def steady_grid(frames: np.ndarray, in_bar: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """One steady beat grid through beats found one by one (an online tracker's, which lock in late, drop beats and
    jump an octave): the period is the median beat interval folded into STEADY_BPM (a dancer's step, whatever the
    tracker's octave), the grid t0 + period * k a least-squares fit to the beats near it, its bar positions the ones
    the found beats agree on most. The recordings keep one tempo (studio takes), so the steady grid is the truer."""
    low, high = 60.0 * fps / STEADY_BPM[1], 60.0 * fps / STEADY_BPM[0]  # periods in frames
    intervals = np.diff(frames)
    intervals = intervals[intervals > 0]
    folded = intervals * 2.0 ** np.ceil(np.log2(low / intervals))  # into [low, 2 low)
    period = float(np.median(folded))
    if period > high:
        period /= 2
    start = frames[0]
    for _ in range(3):  # fit, drop the beats off the grid, fit again
        index = np.round((frames - start) / period)
        near = np.abs(frames - start - period * index) < period / 4
        if near.sum() < 2:
            break
        period, start = np.polyfit(index[near], frames[near], 1)
    count = int(np.round((frames[-1] - start) / period)) + 1
    first = int(np.ceil(-start / period - 1e-9))  # grid beats before the first found one, back to frame 0
    grid = start + period * np.arange(first, count)
    index = np.round((frames - start) / period).astype(int)
    votes = np.bincount((in_bar - index) % BEATS_PER_BAR, minlength=BEATS_PER_BAR)
    return grid, (np.arange(first, count) + int(np.argmax(votes))) % BEATS_PER_BAR


def longest_per_take(tracks: list[Track]) -> list[Track]:
    """One sequence per take (`Track.group`): the longest, in the tracks' order."""
    best: dict[str, Track] = {}
    for track in tracks:
        if track.group not in best or len(track.rows) > len(best[track.group].rows):
            best[track.group] = track
    return [track for track in tracks if best[track.group] is track]


def build(tracks: list[Track], fps: float = FEATURE_FPS, contents: str = "") -> tuple[dict[str, np.ndarray],
                                                                                      dict[str, Any]]:
    """(arrays, metadata) of the database of `tracks` (see the module docstring). `contents`: what the file holds
    and under which terms, for whoever finds it."""
    rotations, roots, contacts = [], [], []
    beat_frame, beat_sequence, beat_in_bar, features = [], [], [], []
    sequences: list[tuple[Track, int, bool]] = []
    start = 0
    for track in longest_per_take(tracks):
        if track.beats is None:
            logger.warning("%s: no beats, left out", track.name)
            continue
        motion = decode(track.rows, fps)
        frames, in_bar = steady_grid(track.beats.times * fps, track.beats.beat_in_bar, fps)
        inside = (frames >= 0) & (frames <= len(track.rows) - 1)
        frames, in_bar = frames[inside], in_bar[inside]
        if len(frames) < 2:
            logger.warning("%s: no beats found, left out", track.name)
            continue
        index = len(sequences)
        sequences.append((track, start, track.beat_source != "motion"))
        rotations.append(motion.rotations.astype(np.float16))
        roots.append(motion.root_translation.astype(np.float32))
        contacts.append(track.rows[:, CONTACT_SLICE] > 0.5)
        features.append(beat_features(motion, contacts[-1], frames))
        beat_frame.append(start + frames)
        beat_sequence.append(np.full(len(frames), index))
        beat_in_bar.append(in_bar)
        start += len(track.rows)
    if not sequences:
        raise OnbeatError("no dance with beats to build the graph database from")
    arrays: dict[str, np.ndarray] = {
        "rotations": np.concatenate(rotations), "root": np.concatenate(roots),
        "contacts": np.concatenate(contacts).astype(np.uint8),
        "beat_frame": np.concatenate(beat_frame).astype(np.float64),
        "beat_sequence": np.concatenate(beat_sequence).astype(np.int32),
        "beat_in_bar": np.concatenate(beat_in_bar).astype(np.int8),
        "beat_pose": np.concatenate([f[0] for f in features]),
        "beat_velocity": np.concatenate([f[1] for f in features]),
        "beat_intensity": np.concatenate([f[2] for f in features]),
        "sequence_name": np.array([t.name for t, _, _ in sequences]),
        "sequence_source": np.array([t.source for t, _, _ in sequences]),
        "sequence_style": np.array([t.style for t, _, _ in sequences]),
        "sequence_start": np.array([s for _, s, _ in sequences], np.int64),
        "sequence_frames": np.array([len(t.rows) for t, _, _ in sequences], np.int64),
        "sequence_music_beats": np.array([m for _, _, m in sequences]),  # from the music (song or annotations)
    }
    seconds: dict[str, float] = {}
    for track, _, _ in sequences:
        seconds[track.style] = seconds.get(track.style, 0.0) + len(track.rows) / fps
    metadata = {"graph_format": GRAPH_FORMAT, "fps": fps, "styles": sorted(seconds),
                "pose_features": list(POSE_FEATURES), "velocity_features": list(VELOCITY_FEATURES),
                "style_seconds": {k: round(v, 1) for k, v in sorted(seconds.items())},
                "beats": int(len(arrays["beat_frame"])), "contents": contents}
    return arrays, metadata


# The terms of the research data each source's motion comes under (../shared/data/README.md and the sets' own pages):
# none allows redistributing it, so a database built from them stays on the machine it was built on.
SOURCE_TERMS = {
    "ballroom": "ballroom: Tang et al. 2018 'Dance with Melody' mocap, no licence (research use)",
    "motorica": "Motorica dance samples (KTH): academic research only",
    "bvh": "BVH sets: Perfume (Amuse Inc. terms of use), DanceDB (University of Cyprus terms), Bandai-Namco "
           "Research Motion dataset (CC BY-NC-ND 4.0)",
    "aist": "AIST++ (CC BY 4.0 annotations, AIST Dance DB terms for the dances)",
}


def research_contents(tracks: list[Track]) -> str:
    """The `contents` note of a database built from the research data: where its motion comes from, on what terms."""
    sources = sorted({track.source for track in tracks})
    terms = "; ".join(SOURCE_TERMS.get(source, source) for source in sources)
    return f"Motion of the research data sets ({terms}). For research use on this machine: do not redistribute."


def summary(arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> str:
    frames = arrays["sequence_frames"]
    lines = [f"{len(frames)} sequences, {frames.sum() / metadata['fps'] / 60:.1f} min, {metadata['beats']} beats "
             f"({int(arrays['sequence_music_beats'].sum())} sequences with music beats, the others' from the motion)"]
    beats = np.diff(arrays["beat_frame"])[np.diff(arrays["beat_sequence"]) == 0]
    style_of_beat = arrays["sequence_style"][arrays["beat_sequence"][:-1][np.diff(arrays["beat_sequence"]) == 0]]
    for style in metadata["styles"]:
        bpm = 60.0 * metadata["fps"] / beats[style_of_beat == style]
        lines.append(f"  {style:12s} {metadata['style_seconds'][style] / 60:5.1f} min, tempo {np.median(bpm):5.1f} BPM "
                     f"(middle half {np.percentile(bpm, 25):.0f}-{np.percentile(bpm, 75):.0f})")
    return "\n".join(lines)


GENERATED_MODELS = ("badm", "codes")
GENERATED_BPM = (90.0, 100.0, 110.0, 120.0, 130.0, 140.0)
GENERATED_CONTENTS = ("Dances made by onbeat's own shipped models ({models}) to its synthetic demo drums at {bpm} BPM, "
                      "{seconds:.0f} s each: no recorded motion of any data set. Same licence as onbeat (MIT).")


def generated_tracks(seconds: float = 60.0, models=GENERATED_MODELS, tempos=GENERATED_BPM, seed: int = 0,
                     progress: bool = False) -> list[Track]:
    """Dances of the shipped models (their exports in the package's assets) to the demo drum track at `tempos`,
    as dataset Tracks with their music: the material of a database onbeat may ship."""
    from onbeat.choreographers.kinds import kind_named, load_choreographer
    from onbeat.core.beat_grid import BeatGrid
    from onbeat.core.importers import ground
    from onbeat.core.paths import ASSETS
    from onbeat.core.representation import encode
    from onbeat.ear.features import FeatureExtractor
    from onbeat.ear.sources import SyntheticSource
    tracks = []
    for bpm in tempos:
        source = SyntheticSource(bpm=bpm, seconds=seconds, realtime=False, seed=seed)
        extractor = FeatureExtractor(source.sample_rate)
        music = np.concatenate([extractor.process(block.samples) for block in source.blocks()])
        for name in models:
            dancer = load_choreographer(ASSETS / f"{name}{kind_named(name).suffix}", seed=seed)  # the shipped one
            frames = dancer.slice_frames
            slices = [dancer.next_slice(music[k:k + 2 * frames]) for k in range(0, len(music) - 2 * frames, frames)]
            motion = ground(Motion(dancer.fps, np.concatenate([m.root_translation for m in slices]),
                                   np.concatenate([m.rotations for m in slices])))  # on the floor, as the data sets
            rows = encode(motion)
            count = len(rows)
            tracks.append(Track(f"{name}_{bpm:.0f}bpm", "generated", "generated", "freestyle", f"{name}_{bpm:.0f}",
                                rows, music[:count], np.ones((count, 2), np.float32), np.full(count, bpm, np.float32),
                                BeatGrid.counted(source.beat_times(count / dancer.fps)), "annotated"))
            if progress:
                print(f"  {name} at {bpm:.0f} BPM: {len(rows) / dancer.fps:.0f} s")
    return tracks
