"""Annotated beat clips (audio + `<name>.beats`): loading, genres and cross-validation folds, shared by the
beat network's training (`beat_net`) and `onbeat eval beats` / `onbeat bench beats`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import ANALYSIS_RATE
from onbeat.ear.features import Resampler
from onbeat.ear.sources import read_audio

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")
DEFAULT_SET = "gtzan-dev"
FOLDS = 3


@dataclass
class Clip:
    name: str
    genre: str
    audio: np.ndarray
    beats: np.ndarray
    downbeats: np.ndarray


def load_clip(path):
    """A clip as mono float32 at the analysis rate, read and resampled as the feature extractor does."""
    audio, rate = read_audio(path)
    resampler = Resampler(rate, ANALYSIS_RATE)
    length = -(-len(audio) * resampler.up // resampler.down)   # all of it, as resample_poly gives it
    mono = resampler.process(audio.mean(axis=1))
    tail = resampler.process(np.zeros(resampler.input_for(length - len(mono))))   # the look-ahead, zero-padded
    return np.concatenate([mono, tail])[:length].astype(np.float32)


def load_beats(path):
    """Annotated beat times and downbeat times (the beats at position 1 in the bar; none if not annotated)."""
    try:
        table = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as e:
        raise OnbeatError(f"{path}: cannot read beat annotations ({e})") from None
    if table.size == 0:
        raise OnbeatError(f"{path}: no beats annotated")
    downbeats = table[table[:, 1] == 1, 0] if table.shape[1] > 1 else np.zeros(0)
    return table[:, 0], downbeats


def find_clips(data):
    """(set name, [(audio path, annotation path)]): audio files with `<name>.beats` beside them or in `beats/`.
    A shared data root holding `gtzan-dev/` means that set."""
    folder = Path(data)
    if (folder / DEFAULT_SET).is_dir():
        folder = folder / DEFAULT_SET
    if not folder.is_dir():
        raise OnbeatError(f"{folder}: not a folder")
    pairs = []
    for audio in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        for annotation in (folder / "beats" / f"{audio.stem}.beats", folder / f"{audio.stem}.beats"):
            if annotation.is_file():
                pairs.append((audio, annotation))
                break
    if not pairs:
        raise OnbeatError(f"{folder}: no audio clips ({', '.join(AUDIO_SUFFIXES)}) with <name>.beats annotations "
                          "beside them or in beats/")
    return folder.name, pairs


def genre_of(name):
    """GTZAN names are genre.number; other sets are one group."""
    return name.split(".")[0] if "." in name else "all"


def load_set(data, clips=None):
    name, pairs = find_clips(data)
    loaded = []
    for audio, annotation in pairs[:clips]:
        beats, downbeats = load_beats(annotation)
        loaded.append(Clip(audio.stem, genre_of(audio.stem), load_clip(audio), beats, downbeats))
    return name, loaded


def fold_of(clips):
    """Fold per clip: the k-th clip of each genre goes to fold k mod FOLDS, so every fold holds every genre."""
    seen = {}
    folds = []
    for clip in clips:
        folds.append(seen.get(clip.genre, 0) % FOLDS)
        seen[clip.genre] = seen.get(clip.genre, 0) + 1
    return np.array(folds)
