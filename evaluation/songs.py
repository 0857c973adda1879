"""The test set of `onbeat eval dance`: real dances with their music, from a dataset file or any folder.

- A dataset file (`onbeat dataset build`): its validation sequences with music, read again from the data folder
  they were built from (`$ONBEAT_DATA` or ../shared/data), since the file holds encoded rows, not the audio.
- A folder in the ballroom layout (`motion.npz`, `motion.json`, `audio/`): every sequence with audio that the set
  does not flag `suspect` (frame count not matching the song).
- Any other folder: every motion file under it (`.bvh`, AIST++ `.pkl`, onbeat `.npz` as `--record` writes) with
  an audio file of the same stem beside it (`.wav`, `.ogg`, `.flac`, `.mp3`), or for AIST++ names
  (`gBR_sBM_cAll_d04_mBR0_ch01`) the music named by its `_m<id>_` part (`mBR0.wav`) anywhere in the folder.
  Ballroom-layout subfolders are read as such.
Motion is kept at its own frame rate (the importers' `fps=None`): the evaluator resamples positions smoothly
itself, so the real rows carry no interpolation artefacts.
"""
import json
import logging
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".ogg", ".flac", ".mp3")
MOTION_SUFFIXES = (".bvh", ".pkl", ".npz")
_AIST_MUSIC = re.compile(r"_(m[A-Za-z]{2}\d+)_")


@dataclass
class Song:
    """One real dance of the test set and the music it was danced to (audio t = 0 is motion frame 0)."""
    name: str
    style: str
    motion: Motion  # at its own frame rate
    audio: Path


def load_songs(path: Path, limit: int | None = None) -> list[Song]:
    """The test set at `path` (a dataset file or a folder, see the module doc), sorted by name; the first `limit`
    (only those are read)."""
    path = Path(path)
    if path.is_file():
        found = _dataset_songs(path)
    elif path.is_dir():
        found = _folder_songs(path)
    else:
        raise OnbeatError(f"{path}: no such dataset file or folder")
    if not found:
        raise OnbeatError(f"{path}: no dance with music found (ballroom layout, or motion files with an audio file "
                          f"of the same stem: {', '.join(AUDIO_SUFFIXES)})")
    return [load() for _, load in sorted(found, key=lambda item: item[0])[:limit]]


def describe(path: Path) -> str:
    """What the test set at `path` is, for tables and model cards (held out or not)."""
    if Path(path).is_file():
        return (f"the validation split of {path}: held out for models trained on that file")
    return (f"every dance with music in {path}: in-sample for a model trained on any of them (the shipped models "
            "were trained on the ballroom songs outside their validation split)")


def _dataset_songs(path):
    """[(name, loader)] of the dataset file's validation sequences with music."""
    from onbeat.core.paths import data_root
    from onbeat.models.dataset import WindowData
    arrays = WindowData.load(path).arrays
    chosen = [i for i in range(len(arrays["seq_name"])) if arrays["seq_split"][i] == 1 and arrays["seq_has_music"][i]]
    if not chosen:
        raise OnbeatError(f"{path}: the dataset has no validation sequence with music")
    root = data_root()
    if root is None:
        raise OnbeatError(f"{path}: its sequences are read from the data folder, which is not here (set ONBEAT_DATA)")
    found = []
    for i in chosen:
        source, name = str(arrays["seq_source"][i]), str(arrays["seq_name"][i])
        if source != "ballroom":
            raise OnbeatError(f"{path}: validation sequence {name} ({source}) has music but no audio file to play; "
                              "give --data the folder of dances instead")
        found += _ballroom_songs(root / "ballroom", [name])
    return found


def _folder_songs(root):
    """[(name, loader)] of the dances with music under `root`."""
    if _is_ballroom(root):
        return _ballroom_songs(root)
    found = []
    for folder in sorted({p.parent for p in root.rglob("*")} | {root}):
        if _is_ballroom(folder):
            found += _ballroom_songs(folder)
            continue
        if any(_is_ballroom(parent) for parent in folder.parents):
            continue  # the ballroom set's own audio folder
        for motion_path in sorted(p for p in folder.iterdir() if p.suffix.lower() in MOTION_SUFFIXES):
            audio = _audio_for(motion_path, root)
            if audio is not None:
                found.append((motion_path.stem, partial(_file_song, motion_path, audio)))
    return found


def _is_ballroom(folder):
    return (folder / "motion.npz").is_file() and (folder / "motion.json").is_file()


def _ballroom_songs(folder, names=None):
    """[(name, loader)] of the ballroom sequences with audio that the set does not flag suspect."""
    from onbeat.core.importers import ballroom_names
    info = json.loads((folder / "motion.json").read_text())
    found, suspect = [], []
    for name in names or ballroom_names(folder):
        meta = info.get(name, {})
        if meta.get("suspect"):
            suspect.append(name)
        elif meta.get("audio") and (folder / "audio" / f"{name}.ogg").is_file():
            found.append((name, partial(_ballroom_song, folder, name)))
    if suspect:
        logger.info("%s: left out %d sequences flagged suspect (frames do not match the song): %s", folder,
                    len(suspect), ", ".join(suspect))
    return found


def _ballroom_song(folder, name):
    from onbeat.core.importers import load_ballroom
    sequence = load_ballroom(folder, name, fps=None)
    return Song(name, sequence.style, sequence.motion, sequence.audio_path)


def _audio_for(motion_path, root):
    """The audio file danced to in `motion_path`, or None."""
    for suffix in AUDIO_SUFFIXES:
        beside = motion_path.with_suffix(suffix)
        if beside.is_file():
            return beside
    music = _AIST_MUSIC.search(motion_path.stem)
    if music:
        for suffix in AUDIO_SUFFIXES:
            found = sorted(root.rglob(music.group(1) + suffix))
            if found:
                return found[0]
    return None


def _file_song(motion_path, audio):
    from onbeat.core.importers import load_motion
    return Song(motion_path.stem, "", load_motion(motion_path), audio)
