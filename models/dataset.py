"""`onbeat dataset build`: one cached .npz of training windows from every real data set, every style.

Every sequence is resampled to 30 fps, encoded with `representation.encode`, labelled with its style
(`onbeat.core.styles`: the one vocabulary, unknown labels are "freestyle") and given the music rows it has:

| source | audio columns (0-22) | beat columns (23-27) and tempo |
|---|---|---|
| ballroom with its song | `ear.features.extract_file` (the live extractor run offline; cached) | its tracker beats |
| Motorica | none (no raw audio ships) | its beat activation, tracked offline (`motorica.motorica_beats`) |
| ballroom without (usable) song, BVH | none | estimated from the dance itself (`beat_grid.motion_beats`) |

Beat columns are computed from each sequence's beat grid (`BeatGrid.columns`, the formula the live ear uses), so a
time-stretched window gets its columns recomputed exactly. Each row has a music mask (`onbeat.core.music`:
[audio, beat], 1 where that group of columns is real); missing columns are zeros. The per-row tempo (BPM) and
every sequence's beats are stored too (for the retrieval choreographer's segments).

The train/validation split is by take (Motorica's `_00`/`_01` phases of one take stay together, as do Perfume's
dancers of one choreography), deterministic for a seed, per style: a style with at least 2 takes has at least one
in validation (one with its song, when 2 or more have one) and one in training; a style with a single take is all
training (so every style is learned).

The file holds the concatenated frames once plus a (sequence, start) index of windows, not copies of windows.
`WindowData.batch` cuts windows with the augmentations: random crops (start jitter), mirror (left <-> right), and
a joint time-stretch of motion and music (tempo variety; motion re-encoded, beat columns recomputed from the grid).
"""
import hashlib
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.core.beat_grid import BeatGrid, motion_beats
from onbeat.core.errors import OnbeatError
from onbeat.core.music import (
    AUDIO_COLUMNS,
    BEAT_COLUMNS,
    BEATS_PER_BAR,
    FEATURE_DIM,
    FEATURE_NAMES,
    MASK_GROUPS,
    column_mask,
)
from onbeat.core.progress import tracked
from onbeat.core.representation import POSE_DIM, decode, encode, mirror, normalizer, retime
from onbeat.core.styles import STYLES, style_id, style_name

logger = logging.getLogger(__name__)

FPS = 30
DEFAULT_SOURCES = ("ballroom", "motorica", "bvh")
VERSION = 2  # 2: styles, music masks, beat grids and tempo
AUDIO, BEAT = (MASK_GROUPS.index(group) for group in ("audio", "beat"))


@dataclass
class Track:
    """One encoded sequence: rows (T, POSE_DIM), music (T, FEATURE_DIM) with its mask (T, 2) (zeros where a
    group is missing), tempo (T,) BPM (0 without beats) and the beat grid (None when no beat was found)."""
    name: str
    source: str
    corpus: str  # the collection: ballroom, motorica, perfume, dancedb, bandai-namco, ...
    style: str  # a name of `onbeat.core.styles.STYLES`
    group: str  # the take: sequences of one group land in the same split
    rows: np.ndarray
    music: np.ndarray
    mask: np.ndarray
    bpm: np.ndarray
    beats: BeatGrid | None = None
    beat_source: str = ""  # "audio" (the tracker on the song), "annotated" (the data set's), "motion", "" (none)

    @property
    def has_music(self):
        """The sequence has its song (real audio columns), not only a beat."""
        return bool(self.mask[:, AUDIO].any())


def load_tracks(root, sources, progress=False, limit=None, cache=None):
    """Encode every sequence (or the first `limit`) of `sources` under `root`, through the importers; songs'
    features are cached in the folder `cache` (None: not cached)."""
    from onbeat.core.importers import iter_dataset
    tracks = []
    sequences = itertools.islice(iter_dataset(root, sources), limit)
    for seq in tracked(sequences, total=limit, what="encoding dances", quiet=not progress):
        track = make_track(seq, cache)
        tracks.append(track)
        logger.debug("%-12s %-9s %-54s %6.1f s %s beats: %s", track.corpus, track.style, seq.name[:54],
                     len(track.rows) / FPS, "song" if track.has_music else "    ", track.beat_source or "-")
    if not tracks:
        raise OnbeatError(f"{root}: no sequences found for sources {', '.join(sources)}")
    return tracks


def make_track(seq, cache=None):
    """The Track of one importer Sequence (see the module docstring for where its music rows come from)."""
    rows = encode(seq.motion.resample(FPS))  # a no-op copy at 30 fps, which the importers already give
    music = np.zeros((len(rows), FEATURE_DIM), np.float32)
    mask = np.zeros((len(rows), len(MASK_GROUPS)), np.float32)
    beats, beat_source = None, "audio"
    if seq.audio_path and not seq.suspect:
        audio, beats = song_features(seq.audio_path, cache)
        count = min(len(rows), len(audio))  # both start at t = 0
        rows, music, mask = rows[:count], music[:count], mask[:count]
        music[:, AUDIO_COLUMNS], mask[:, AUDIO] = audio[:count], 1.0
    if beats is None:  # no song, or the tracker heard no beat in it
        beats, beat_source = seq.beats, "annotated"
    if beats is None:
        beats, beat_source = motion_beats(decode(rows, FPS).positions(), FPS), "motion"
    bpm = np.zeros(len(rows), np.float32)
    if beats is not None:
        times = np.arange(len(rows)) / FPS
        music[:, BEAT_COLUMNS], mask[:, BEAT], bpm = beats.columns(times), 1.0, beats.bpm(times)
    return Track(seq.name, seq.source, seq.collection, style_name(seq.style), str(seq.take or seq.name), rows, music,
                 mask, bpm, beats, beat_source if beats is not None else "")


def song_features(audio_path, cache=None):
    """(audio columns (T, 23) float32, BeatGrid or None) of a song by the live extractor run offline, from the
    cache folder when it holds them for these audio bytes and this extractor code."""
    path = Path(audio_path)
    cached = None
    if cache is not None:
        cached = Path(cache) / f"{path.stem}-{_feature_key(path)}.npz"
        if cached.is_file():
            with np.load(cached) as saved:
                times, bars = saved["beat_times"], saved["beat_in_bar"]
                return saved["audio"], BeatGrid(times, bars) if len(times) >= 2 else None
    features, beat_times = music_features(path)
    beats = tracker_grid(features, beat_times)
    audio = np.ascontiguousarray(features[:, AUDIO_COLUMNS])
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(".tmp.npz")
        none = np.zeros(0)
        np.savez(temporary, audio=audio, beat_times=none if beats is None else beats.times,
                 beat_in_bar=none if beats is None else beats.beat_in_bar)
        temporary.replace(cached)
    return audio, beats


def music_features(audio_path):
    """(features (T, FEATURE_DIM) float32, beat times (s)) of a song: `ear.features.extract_file`."""
    from onbeat.ear.features import extract_file
    features, beats = extract_file(audio_path)
    return np.asarray(features, np.float32), np.asarray(beats, np.float64)


def tracker_grid(features, beat_times):
    """The BeatGrid of the beats the tracker emitted, each with the bar position its bar-phase columns showed just
    after it (the tracker's downbeat guess at the time); None when it emitted fewer than two."""
    beat_times = np.unique(np.asarray(beat_times, np.float64))
    rows = np.floor(beat_times * FPS).astype(int) + 1
    inside = rows < len(features)
    if len(beat_times) < 2 or not inside.any():
        return None
    sin, cos = (features[rows[inside], FEATURE_NAMES.index(f"bar_phase_{c}")] for c in ("sin", "cos"))
    bar_phase = (np.arctan2(sin, cos) / (2 * np.pi)) % 1.0
    positions = np.floor(bar_phase * BEATS_PER_BAR + 1e-3).astype(int)
    last = np.count_nonzero(inside)  # beats after the last row (the padded end) count on through the bar
    positions = np.concatenate([positions, positions[-1] + np.arange(1, len(beat_times) - last + 1)])
    return BeatGrid(beat_times, positions)


def _feature_key(path):
    """Hash of the audio bytes and of the extractor's code: a cache entry is stale when either changes."""
    from onbeat.ear import beats, features
    digest = hashlib.sha256(Path(path).read_bytes())
    for module in (features, beats):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def split_groups(tracks, val_fraction, seed):
    """The set of groups (takes) held out for validation: per style, `val_fraction` of its takes (at least one,
    one with its song when two or more have one), never all of them."""
    by_style = {}
    for track in tracks:
        by_style.setdefault(track.style, {}).setdefault(track.group, False)
        by_style[track.style][track.group] |= track.has_music
    rng = np.random.default_rng(seed)
    held_out = set()
    for style in sorted(by_style):
        takes = by_style[style]
        groups = sorted(takes)
        if len(groups) < 2:
            continue
        count = int(np.clip(round(val_fraction * len(groups)), 1, len(groups) - 1))
        with_song = [g for g in groups if takes[g]]
        first = [rng.choice(with_song)] if len(with_song) >= 2 else []
        rest = [g for g in groups if g not in first]
        held_out.update(first + rng.choice(rest, size=count - len(first), replace=False).tolist())
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
    train = [t for t, s in zip(tracks, split, strict=True) if s == 0]
    mean, std = normalizer([t.rows for t in train])
    music_mean, music_std = music_normalizer(train)
    grids = [t.beats.times if t.beats is not None else np.zeros(0) for t in tracks]
    bars = [t.beats.beat_in_bar if t.beats is not None else np.zeros(0, np.int64) for t in tracks]
    return {
        "version": np.int64(VERSION),
        "rows": np.concatenate([t.rows for t in tracks]), "music": np.concatenate([t.music for t in tracks]),
        "music_mask": np.concatenate([t.mask for t in tracks]).astype(np.uint8),
        "bpm": np.concatenate([t.bpm for t in tracks]),
        "seq_start": np.array(starts, np.int64), "seq_length": np.array([len(t.rows) for t in tracks], np.int64),
        "seq_name": np.array([t.name for t in tracks]), "seq_source": np.array([t.source for t in tracks]),
        "seq_corpus": np.array([t.corpus for t in tracks]), "seq_style": np.array([t.style for t in tracks]),
        "seq_style_id": np.array([style_id(t.style) for t in tracks], np.int64),
        "seq_group": np.array([t.group for t in tracks]), "seq_beat_source": np.array([t.beat_source for t in tracks]),
        "seq_has_music": np.array([t.has_music for t in tracks]), "seq_split": split,
        "beat_times": np.concatenate(grids), "beat_in_bar": np.concatenate(bars).astype(np.int8),
        "seq_beat_start": np.cumsum([0] + [len(g) for g in grids[:-1]]).astype(np.int64),
        "seq_beat_count": np.array([len(g) for g in grids], np.int64),
        "style_names": np.array(STYLES),
        "windows": np.array(windows, np.int64), "window": np.int64(window), "stride": np.int64(stride),
        "fps": np.float64(FPS), "pose_mean": mean, "pose_std": std, "music_mean": music_mean, "music_std": music_std,
    }


def music_normalizer(tracks, min_std=1e-2):
    """Per-column (mean, std) float32 of the music rows over the rows where each column is real (its mask group is
    1); (0, 1) for a column no row has."""
    music = np.concatenate([t.music for t in tracks]).astype(np.float64)
    real = column_mask(np.concatenate([t.mask for t in tracks])) > 0
    count = real.sum(0)
    mean = np.where(count > 0, (music * real).sum(0) / np.maximum(count, 1), 0.0)
    var = np.where(count > 0, (((music - mean) * real) ** 2).sum(0) / np.maximum(count, 1), 1.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), min_std).astype(np.float32)


def save(path, arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def summary(arrays):
    """The dataset in words: per style and split, minutes (with their song / with beats) and takes."""
    fps, lengths = float(arrays["fps"]), arrays["seq_length"]
    lines = [f"{'style':10s} {'train min':>9s} {'val min':>8s} {'takes (train/val)':>18s} {'with song':>10s} "
             f"{'beats from':>10s}  corpora"]
    for style in [s for s in STYLES if s in set(arrays["seq_style"])]:
        chosen = arrays["seq_style"] == style
        minutes = [lengths[chosen & (arrays["seq_split"] == split)].sum() / fps / 60 for split in (0, 1)]
        takes = [len(set(arrays["seq_group"][chosen & (arrays["seq_split"] == split)])) for split in (0, 1)]
        song = lengths[chosen & arrays["seq_has_music"]].sum() / fps / 60
        sources = sorted(set(arrays["seq_beat_source"][chosen]) - {""})
        lines.append(f"{style:10s} {minutes[0]:9.1f} {minutes[1]:8.1f} {takes[0]:>8d} / {takes[1]:<7d} "
                     f"{song:9.1f}m {','.join(sources):>10s}  {', '.join(sorted(set(arrays['seq_corpus'][chosen])))}")
    windows = WindowData(arrays)
    total = [lengths[arrays["seq_split"] == split].sum() / fps / 60 for split in (0, 1)]
    no_beats = lengths[arrays["seq_beat_count"] == 0].sum() / fps / 60
    lines.append(f"{'all':10s} {total[0]:9.1f} {total[1]:8.1f}   windows: {len(windows.indices(0))} train, "
                 f"{len(windows.indices(1))} validation; {no_beats:.1f} min without beats")
    return "\n".join(lines)


def tracks_of(arrays, split=None):
    """The Tracks a dataset file was built from (those of one split: 0 train, 1 validation; None: all)."""
    chosen = range(len(arrays["seq_start"])) if split is None else np.flatnonzero(arrays["seq_split"] == split)
    tracks = []
    for i in chosen:
        span = slice(arrays["seq_start"][i], arrays["seq_start"][i] + arrays["seq_length"][i])
        beats = slice(arrays["seq_beat_start"][i], arrays["seq_beat_start"][i] + arrays["seq_beat_count"][i])
        grid = BeatGrid(arrays["beat_times"][beats], arrays["beat_in_bar"][beats]) if arrays["seq_beat_count"][i] \
            >= 2 else None
        tracks.append(Track(str(arrays["seq_name"][i]), str(arrays["seq_source"][i]), str(arrays["seq_corpus"][i]),
                            str(arrays["seq_style"][i]), str(arrays["seq_group"][i]), arrays["rows"][span],
                            arrays["music"][span], arrays["music_mask"][span].astype(np.float32),
                            arrays["bpm"][span], grid, str(arrays["seq_beat_source"][i])))
    return tracks


class WindowData:
    """The cached file, read back: `indices(split)` and `batch(...)` of raw (unnormalized) windows."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.window = int(arrays["window"])
        self.fps = float(arrays["fps"])
        self.stats = {k: np.asarray(arrays[k]) for k in ("pose_mean", "pose_std", "music_mean", "music_std")}
        self.style_names = tuple(str(s) for s in arrays["style_names"])
        self._grids = {}

    @classmethod
    def load(cls, path):
        try:
            with np.load(path) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as e:
            raise OnbeatError(f"{path}: cannot read dataset file ({e})") from None
        if "windows" not in arrays or arrays["rows"].shape[1] != POSE_DIM or int(arrays.get("version", 1)) != VERSION:
            raise OnbeatError(f"{path}: not an onbeat dataset file of version {VERSION} with {POSE_DIM}-dim rows "
                              "(rebuild it with `onbeat dataset build`)")
        return cls(arrays)

    def conditioning(self):
        """The model config entries this data set's conditioning needs: the style ids it uses (a model with styles
        also takes the music mask)."""
        return {"styles": len(self.style_names)}

    def indices(self, split):
        """Window numbers of split 0 (train) or 1 (validation)."""
        seq_of_window = self.arrays["windows"][:, 0]
        return np.flatnonzero(self.arrays["seq_split"][seq_of_window] == split)

    def grid(self, seq):
        """The BeatGrid of sequence `seq`, or None."""
        if seq not in self._grids:
            first, count = self.arrays["seq_beat_start"][seq], self.arrays["seq_beat_count"][seq]
            self._grids[seq] = BeatGrid(self.arrays["beat_times"][first:first + count],
                                        self.arrays["beat_in_bar"][first:first + count]) if count >= 2 else None
        return self._grids[seq]

    def batch(self, indices, mirrored=None, stretch=None, shift=None):
        """{"motion": (B, W, POSE_DIM), "music": (B, W, F), "music_mask": (B, W, 2), "has_music": (B,) float32,
        "style": (B,) int64}. Augmentations, each per window (None: none): `mirrored` (B,) bools reflect left <->
        right; `shift` (B,) ints move the window's start (a crop; clipped to the sequence); `stretch` (B,) factors
        play motion and music that many times as long (tempo / factor): the motion is re-encoded at the new speed,
        the audio columns interpolated, the beat columns recomputed from the beat grid."""
        indices = np.asarray(indices)
        size = len(indices)
        out = {"motion": np.empty((size, self.window, POSE_DIM), np.float32),
               "music": np.empty((size, self.window, FEATURE_DIM), np.float32),
               "music_mask": np.empty((size, self.window, len(MASK_GROUPS)), np.float32)}
        seqs, starts = self.arrays["windows"][indices].T
        for i, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
            factor = 1.0 if stretch is None else float(stretch[i])
            moved = start + (0 if shift is None else int(shift[i]))
            self._cut(out, i, seq, moved, factor)
            if mirrored is not None and mirrored[i]:
                out["motion"][i] = mirror(out["motion"][i])
        out["has_music"] = self.arrays["seq_has_music"][seqs].astype(np.float32)
        out["style"] = self.arrays["seq_style_id"][seqs].astype(np.int64)
        return out

    def _cut(self, out, i, seq, start, factor):
        """Window i of `out`: sequence `seq` from frame `start`, stretched by `factor`."""
        first, length = int(self.arrays["seq_start"][seq]), int(self.arrays["seq_length"][seq])
        span = (self.window - 1) / factor  # source frames the window covers
        start = float(np.clip(start, 0, max(0.0, length - 1 - span)))
        if factor == 1.0:
            frames = first + int(start) + np.arange(self.window)
            out["motion"][i] = self.arrays["rows"][frames]
            out["music"][i] = self.arrays["music"][frames]
            out["music_mask"][i] = self.arrays["music_mask"][frames]
            return
        positions = np.minimum(start + np.arange(self.window) / factor, length - 1)
        low, high = int(positions[0]), min(int(np.ceil(positions[-1])), length - 1) + 1
        out["motion"][i] = retime(self.arrays["rows"][first + low:first + high], positions - low, self.fps)
        before = np.clip(np.floor(positions).astype(int), 0, length - 1)
        after = np.minimum(before + 1, length - 1)
        alpha = (positions - before)[:, None]
        music = self.arrays["music"][first:first + length]
        out["music"][i] = (1 - alpha) * music[before] + alpha * music[after]
        mask = self.arrays["music_mask"][first:first + length]
        out["music_mask"][i] = np.minimum(mask[before], mask[after])  # a blend is real where both rows are
        grid = self.grid(seq)
        if grid is not None:
            out["music"][i, :, BEAT_COLUMNS] = grid.columns(positions / self.fps)
        out["music"][i] *= column_mask(out["music_mask"][i])
