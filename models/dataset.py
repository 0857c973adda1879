"""`onbeat dataset build`: one cached .npz of training windows from the real data sets.

Every sequence is resampled to 30 fps, encoded with `representation.encode` and, when it has audio, paired frame
by frame with `features.extract_file` (ballroom audio is cropped to the dance, so audio t=0 is motion frame 0).
Sequences without usable music (Motorica: no raw audio; BVH: none; ballroom sequences flagged `suspect`: the
frame count does not match the song) keep zero music and `has_music = 0`: models learn the motion prior from them
and treat them as music dropped out.

The train/validation split is by take (Motorica's `_00`/`_01` phases of one take stay together), deterministic
for a seed, and puts at least one take of every (source, style) with music into validation (so a style with a
single take, like the ballroom set's one tango with music, is held out entirely: it tests unseen music).

The file holds the concatenated frames once plus a (sequence, start) index of windows, not copies of windows.
"""
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.representation import POSE_DIM, encode, mirror, normalizer

FPS = 30
DEFAULT_SOURCES = ("ballroom", "motorica", "bvh")


@dataclass
class Track:
    """One encoded sequence: rows (T, POSE_DIM) and music (T, FEATURE_DIM) (zeros when it has none)."""
    name: str
    source: str
    style: str
    group: str  # the take: sequences of one group land in the same split
    rows: np.ndarray
    music: np.ndarray
    has_music: bool


def load_tracks(root, sources, progress=False, limit=None):
    """Encode every sequence (or the first `limit`) of `sources` under `root`, through the foundation importers."""
    from onbeat.core.importers import iter_dataset
    from onbeat.core.music import FEATURE_DIM
    tracks = []
    for seq in itertools.islice(iter_dataset(root, sources), limit):
        rows = encode(seq.motion.resample(FPS))  # a no-op copy at 30 fps, which the importers already give
        music = np.zeros((len(rows), FEATURE_DIM), np.float32)
        has_music = bool(seq.audio_path) and not seq.suspect
        if has_music:
            rows, music = align(rows, music_features(seq.audio_path))
        tracks.append(Track(seq.name, seq.source, seq.style or "", str(seq.take or seq.name), rows, music, has_music))
        if progress:
            print(f"  {seq.source:9s} {seq.name:60s} {len(rows) / FPS:6.1f} s {'music' if has_music else ''}")
    if not tracks:
        raise OnbeatError(f"{root}: no sequences found for sources {', '.join(sources)}")
    return tracks


def music_features(audio_path):
    from onbeat.ear.features import extract_file
    features, _beats = extract_file(audio_path)
    return np.asarray(features, np.float32)


def align(rows, music):
    """Crop motion and music to their common length (both start at t=0)."""
    count = min(len(rows), len(music))
    return rows[:count], music[:count]


def split_groups(tracks, val_fraction, seed):
    """The set of groups (takes) held out for validation."""
    by_kind = {}
    for track in tracks:
        kind = (track.source, track.style) if track.has_music else (track.source, "")
        by_kind.setdefault(kind, set()).add(track.group)
    rng = np.random.default_rng(seed)
    held_out = set()
    for kind in sorted(by_kind):
        groups = sorted(by_kind[kind])
        count = min(int(round(val_fraction * len(groups))), len(groups) - 1)
        if kind[1]:
            count = max(count, 1)  # every music style is in validation (a style with a single take only there)
        held_out.update(rng.choice(groups, size=count, replace=False).tolist() if count > 0 else [])
    return held_out


def build(tracks, window, stride, val_fraction=0.15, seed=0):
    """The arrays of the cached file (see `save`)."""
    if window < 2 or stride < 1:
        raise OnbeatError(f"window must be >= 2 and stride >= 1, got {window} and {stride}")
    held_out = split_groups(tracks, val_fraction, seed)
    starts, windows = [], []
    offset = 0
    for index, track in enumerate(tracks):
        starts.append(offset)
        offset += len(track.rows)
        windows += [(index, s) for s in range(0, len(track.rows) - window + 1, stride)]
    if not windows:
        raise OnbeatError(f"no sequence is as long as a window ({window} frames)")
    split = np.array([t.group in held_out for t in tracks], np.int8)  # 0 train, 1 validation
    train = [t for t, s in zip(tracks, split) if s == 0]
    mean, std = normalizer([t.rows for t in train])
    music_train = [t.music for t in train if t.has_music]
    feature_dim = tracks[0].music.shape[1]
    music_mean, music_std = normalizer(music_train) if music_train else (
        np.zeros(feature_dim, np.float32), np.ones(feature_dim, np.float32))
    return {
        "rows": np.concatenate([t.rows for t in tracks]), "music": np.concatenate([t.music for t in tracks]),
        "seq_start": np.array(starts, np.int64), "seq_length": np.array([len(t.rows) for t in tracks], np.int64),
        "seq_name": np.array([t.name for t in tracks]), "seq_source": np.array([t.source for t in tracks]),
        "seq_style": np.array([t.style for t in tracks]), "seq_group": np.array([t.group for t in tracks]),
        "seq_has_music": np.array([t.has_music for t in tracks]), "seq_split": split,
        "windows": np.array(windows, np.int64), "window": np.int64(window), "stride": np.int64(stride),
        "fps": np.float64(FPS), "pose_mean": mean, "pose_std": std, "music_mean": music_mean, "music_std": music_std,
    }


def save(path, arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def summary(arrays):
    windows = WindowData(arrays)
    lines = []
    for split, name in ((0, "train"), (1, "validation")):
        seqs = np.flatnonzero(arrays["seq_split"] == split)
        frames = arrays["seq_length"][seqs].sum()
        music = arrays["seq_has_music"][seqs]
        styles = sorted({f"{arrays['seq_source'][i]}/{arrays['seq_style'][i]}" for i in seqs[music]})
        lines.append(f"{name}: {len(seqs)} sequences ({music.sum()} with music), {frames / arrays['fps'] / 3600:.2f} h,"
                     f" {len(windows.indices(split))} windows; music styles: {', '.join(styles) or '-'}")
    return "\n".join(lines)


def tracks_of(arrays, split=None):
    """The Tracks a dataset file was built from (those of one split: 0 train, 1 validation; None: all)."""
    chosen = range(len(arrays["seq_start"])) if split is None else np.flatnonzero(arrays["seq_split"] == split)
    tracks = []
    for i in chosen:
        span = slice(arrays["seq_start"][i], arrays["seq_start"][i] + arrays["seq_length"][i])
        tracks.append(Track(str(arrays["seq_name"][i]), str(arrays["seq_source"][i]), str(arrays["seq_style"][i]),
                            str(arrays["seq_group"][i]), arrays["rows"][span], arrays["music"][span],
                            bool(arrays["seq_has_music"][i])))
    return tracks


class WindowData:
    """The cached file, read back: `indices(split)` and `batch(indices)` of raw (unnormalized) windows."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.window = int(arrays["window"])
        self.fps = float(arrays["fps"])
        self.stats = {k: np.asarray(arrays[k]) for k in ("pose_mean", "pose_std", "music_mean", "music_std")}

    @classmethod
    def load(cls, path):
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as e:
            raise OnbeatError(f"{path}: cannot read dataset file ({e})") from None
        if "windows" not in arrays or arrays["rows"].shape[1] != POSE_DIM:
            raise OnbeatError(f"{path}: not an onbeat dataset file of {POSE_DIM}-dim rows (rebuild it)")
        return cls(arrays)

    def indices(self, split):
        """Window numbers of split 0 (train) or 1 (validation)."""
        seq_of_window = self.arrays["windows"][:, 0]
        return np.flatnonzero(self.arrays["seq_split"][seq_of_window] == split)

    def batch(self, indices, mirrored=None):
        """{"motion": (B, W, POSE_DIM), "music": (B, W, F), "has_music": (B,)} float32; `mirrored` (B,) bools
        reflect those windows left <-> right (augmentation)."""
        seq, start = self.arrays["windows"][indices].T
        frames = (self.arrays["seq_start"][seq] + start)[:, None] + np.arange(self.window)
        motion = self.arrays["rows"][frames]
        if mirrored is not None:
            for i in np.flatnonzero(mirrored):
                motion[i] = mirror(motion[i])
        return {"motion": motion, "music": self.arrays["music"][frames],
                "has_music": self.arrays["seq_has_music"][seq].astype(np.float32)}
