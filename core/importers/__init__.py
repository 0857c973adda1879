"""Importers: every real data set as a `Motion` on the SMPL-24 skeleton, at 30 fps, in metres, grounded.

- `ballroom`: the "Dance with Melody" mocap points (23 per frame), solved into rotations by IK.
- `retarget`: BVH files of any skeleton, mapped to SMPL-24 by joint names (Perfume, Bandai-Namco, DanceDB, ...).
- `motorica`: Motorica (KTH) dance expmap pickles, root path integrated from its heading-relative deltas.
- `aist`: AIST++ SMPL pickles.

`load_motion(path_or_name)` reads any one file or named sequence; `iter_dataset(root)` walks the data sets for
the dataset builder, one `Sequence` (name, source, style, motion, audio_path, take, suspect, corpus) at a time.
Styles are the data sets' own labels; `onbeat.core.styles.style_name` maps them onto the one vocabulary.
"""
from pathlib import Path

from onbeat.core.errors import OnbeatError
from onbeat.core.importers.aist import aist_motion, load_aist
from onbeat.core.importers.ballroom import ballroom_names, load_ballroom, point_errors, solve_points
from onbeat.core.importers.common import TARGET_FPS, Sequence, finish, ground, read_pickle, track_floor
from onbeat.core.importers.motorica import load_motorica, motorica_motion
from onbeat.core.importers.retarget import BVH_STYLES, bvh_corpus, bvh_joint_map, load_bvh, retarget_bvh
from onbeat.core.motion import Motion

__all__ = ["Sequence", "TARGET_FPS", "load_motion", "load_sequence", "iter_dataset", "load_ballroom", "ballroom_names",
           "solve_points", "point_errors", "load_bvh", "retarget_bvh", "bvh_joint_map", "load_motorica",
           "load_aist", "ground", "track_floor"]


def load_pickle_motion(path, fps=TARGET_FPS):
    """A Motorica expmap table or an AIST++ motion dict, told apart by content."""
    content = read_pickle(path, "pandas")
    if isinstance(content, dict):
        return finish(aist_motion(content, path), fps)
    return finish(motorica_motion(content, path), fps)


def load_motion(path_or_name, fps=None):
    """Any motion a user can name, as an SMPL-24 Motion: an onbeat `.npz`, a `.bvh` (both at their own frame
    rate unless `fps` is given), an AIST++ or Motorica `.pkl`, or a sequence of the shared data by name
    (`DANCE_C_2`, a Motorica file stem, a BVH stem; these come at 30 fps)."""
    path = Path(path_or_name)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            motion = Motion.load(path)
            return motion if fps is None else motion.resample(fps)
        if suffix == ".bvh":
            return load_bvh(path, fps)
        if suffix == ".pkl":
            return load_pickle_motion(path, fps or TARGET_FPS)
        raise OnbeatError(f"{path}: unknown motion file type '{path.suffix}' (expected .npz, .bvh or .pkl)")
    sequence = load_sequence(str(path_or_name))
    return sequence.motion if fps is None else sequence.motion.resample(fps)


def load_sequence(name):
    """The Sequence of the shared data named `name` (`DANCE_C_2`, a Motorica file stem, a BVH stem), at 30 fps."""
    from onbeat.core.paths import data_root
    root = data_root()
    if root is None:
        raise OnbeatError(f"{name}: no such file (and the shared data, where a sequence name would be looked up, "
                          "is not here)")
    name = name.split("/")[-1]
    if (root / "ballroom" / "motion.npz").is_file() and name in ballroom_names(root / "ballroom"):
        return load_ballroom(root / "ballroom", name)
    for path in sorted((root / "motorica").glob(f"{name}*.expmap_30fps.pkl"))[:1]:
        return load_motorica(path)
    if (root / "bvh" / f"{name}.bvh").is_file():
        return _bvh_sequence(root / "bvh" / f"{name}.bvh")
    raise OnbeatError(f"{name}: no such file, and no sequence of that name in {root}")


def _bvh_sequence(path):
    motion = load_bvh(path, TARGET_FPS)
    corpus = bvh_corpus(path.stem)
    # Perfume's files are three dancers (and test clips) of one choreography: one take, so no split separates them.
    take = "perfume" if corpus == "perfume" else path.stem
    return Sequence(path.stem, "bvh", BVH_STYLES.get(corpus, ""), motion, None, take, False, corpus)


SOURCES = ("ballroom", "motorica", "bvh", "aist")


def iter_dataset(data_root, sources=("ballroom", "motorica", "bvh")):
    """Every sequence of the chosen data sets under `data_root`, as Sequence values at 30 fps."""
    root = Path(data_root)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise OnbeatError(f"unknown data set(s) {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    for source in sources:
        folder = root / source
        if not folder.is_dir():
            raise OnbeatError(f"{folder}: data set folder not found")
        if source == "ballroom":
            for name in ballroom_names(folder):
                yield load_ballroom(folder, name)
        elif source == "motorica":
            for path in sorted(folder.glob("*.expmap_30fps.pkl")):
                yield load_motorica(path)
        elif source == "bvh":
            for path in sorted(folder.glob("*.bvh")):
                yield _bvh_sequence(path)
        else:
            for path in sorted(folder.rglob("*.pkl")):
                yield Sequence(path.stem, "aist", "", load_aist(path), None, path.stem, False)
