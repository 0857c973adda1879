"""`onbeat dataset check`: how clean the imported training data is, per collection, and how well beats estimated
from the motion alone agree with the music's.

- Rotation pops (`metrics.rotation_pops`: a joint turning more than 30 degrees within 1/60 s) of each collection as
  the importers give it (30 fps), overall, per joint and the worst sequences, beside the reference level: the
  Perfume BVH takes as written (retargeted without any cleaning).
- FK error of the importers' solves: the ballroom IK against the mocap points (`ballroom.ik_error_report`) and the
  BVH retarget against the files' own joint positions (`retarget.retarget_error_report`).
- With `--beats`: `beat_grid.motion_beats` (the dance's kinematic periodicity) against Motorica's beat grids (its
  beat activation, tracked) and its raw beat flags, with the chance level of a grid at the right tempo but a random
  phase. The motion curve was chosen on these same takes, so the numbers are in-sample.
"""
from dataclasses import dataclass, field

import numpy as np

from onbeat.core.skeleton import JOINT_NAMES, NUM_JOINTS
from onbeat.evaluation.metrics import rotation_pops

BEAT_WINDOW = 0.07  # s: mir_eval's F-measure window


@dataclass
class PopCount:
    """Pops of one collection: joint-frames per joint, frame transitions, and per sequence (count, name, joint)."""
    transitions: int = 0
    joint_frames: np.ndarray = field(default_factory=lambda: np.zeros(NUM_JOINTS))
    worst: list = field(default_factory=list)

    def add(self, name, rotations, fps):
        per_joint = rotation_pops(rotations, fps) * (len(rotations) - 1)
        self.transitions += len(rotations) - 1
        self.joint_frames += per_joint
        self.worst.append((int(round(per_joint.max())), name, JOINT_NAMES[int(np.argmax(per_joint))]))

    @property
    def share(self):
        """Share of all joint-frames that pop."""
        return float(self.joint_frames.sum() / max(1, self.transitions * NUM_JOINTS))

    def line(self, label):
        top = np.argsort(-self.joint_frames)[:3]
        worst = sorted(self.worst, reverse=True)[:2]
        return (f"{label:14s} {self.transitions + len(self.worst):7d} {int(self.joint_frames.sum()):7d} "
                f"{100 * self.share:8.3f}%  " + ", ".join(f"{JOINT_NAMES[j]} {int(self.joint_frames[j])}" for j in top)
                + "  | " + ", ".join(f"{name} {joint} {count}" for count, name, joint in worst))


def collection_pops(root, sources=("ballroom", "motorica", "bvh")):
    """{collection: PopCount} of every sequence the importers give (30 fps)."""
    from onbeat.core.importers import iter_dataset
    counts: dict[str, PopCount] = {}
    for seq in iter_dataset(root, sources):
        counts.setdefault(seq.collection, PopCount()).add(seq.name, seq.motion.rotations, seq.motion.fps)
    return counts


def perfume_reference(root):
    """PopCount of the Perfume takes retargeted as written (no cleaning), at 30 fps: the reference level."""
    from onbeat.core.bvh import read_bvh
    from onbeat.core.importers.retarget import PERFUME_FILES, retarget_bvh
    count = PopCount()
    for name in PERFUME_FILES:
        path = root / "bvh" / f"{name}.bvh"
        if path.is_file():
            motion = retarget_bvh(read_bvh(path), path).resample(30)
            count.add(name, motion.rotations, motion.fps)
    return count


def fk_errors(root):
    """{what: {mean, p95, max} in cm} of the ballroom IK and the BVH retarget per collection."""
    from onbeat.core.importers.ballroom import ik_error_report
    from onbeat.core.importers.retarget import bvh_corpus, retarget_error_report
    report = {"ballroom IK": ik_error_report(root / "ballroom")}
    by_corpus: dict[str, list] = {}
    for path in sorted((root / "bvh").glob("*.bvh")):
        by_corpus.setdefault(bvh_corpus(path.stem), []).append(path)
    report.update({f"{corpus} retarget": retarget_error_report(paths) for corpus, paths in by_corpus.items()})
    return report


def beat_scores(reference, estimate, fps=30.0):
    """(F-measure, share of reference beats within BEAT_WINDOW of an estimated one) of beat times (s)."""
    import mir_eval
    reference, estimate = np.asarray(reference), np.asarray(estimate)
    f_measure = mir_eval.beat.f_measure(mir_eval.beat.trim_beats(reference), mir_eval.beat.trim_beats(estimate),
                                        BEAT_WINDOW)
    hit = np.abs(reference[:, None] - estimate[None, :]).min(1) <= BEAT_WINDOW if len(estimate) else np.zeros(0)
    return float(f_measure), float(hit.mean()) if len(hit) else 0.0


CHANCE_PHASES = 32  # the chance level: a grid at the motion's tempo, averaged over this many evenly spaced phases


def motion_beat_check(root):
    """[(take, tempo of the music, tempo from the motion, F vs the music's grid, F of a grid at the motion's tempo
    and any phase (chance), share of the raw beat flags the motion's beats hit, share the music's grid hits)] over
    Motorica's files."""
    from onbeat.core.beat_grid import motion_beats
    from onbeat.core.importers import load_motorica
    from onbeat.core.importers.common import read_pickle
    from onbeat.core.importers.motorica import motorica_audio_path
    rows = []
    for path in sorted((root / "motorica").glob("*.expmap_30fps.pkl")):
        seq = load_motorica(path)
        flags = np.flatnonzero(read_pickle(motorica_audio_path(path), "pandas")["Beat_0"].to_numpy() > 0.5) / 30
        estimated = motion_beats(seq.motion.positions(), seq.motion.fps)
        if seq.beats is None or estimated is None:
            continue
        period = np.median(np.diff(estimated.times))
        chance = np.mean([beat_scores(seq.beats.times, np.arange(phase, seq.motion.duration, period))[0]
                          for phase in np.arange(CHANCE_PHASES) * period / CHANCE_PHASES])
        rows.append((seq.name, 60 / np.median(np.diff(seq.beats.times)), 60 / period,
                     beat_scores(seq.beats.times, estimated.times)[0], chance, beat_scores(flags, estimated.times)[1],
                     beat_scores(flags, seq.beats.times)[1]))
    return rows


def report(root, beats=False):
    """The check as printed lines."""
    lines = [f"{'rotation pops':14s} {'frames':>7s} {'pops':>7s} {'share':>9s}  worst joints | worst sequences"]
    reference = perfume_reference(root)
    lines.append(reference.line("perfume as-is"))
    for name, count in collection_pops(root).items():
        lines.append(count.line(name))
    lines.append("")
    lines.append("FK error (cm)  " + "; ".join(f"{what}: mean {r['mean']:.2f}, p95 {r['p95']:.2f}, max {r['max']:.1f}"
                                            for what, r in fk_errors(root).items()))
    if beats:
        lines += ["", f"{'motion beats vs Motorica':46s} {'music BPM':>9s} {'motion BPM':>10s} {'F':>5s} "
                      f"{'chance F':>8s} {'flags hit':>9s} {'(by grid)':>9s}"]
        rows = motion_beat_check(root)
        for name, music_bpm, motion_bpm, f_measure, chance, flags, grid in rows:
            lines.append(f"{name[:46]:46s} {music_bpm:9.1f} {motion_bpm:10.1f} {f_measure:5.2f} {chance:8.2f} "
                         f"{flags:9.2f} {grid:9.2f}")
        if rows:
            means = np.mean([r[3:] for r in rows], axis=0)
            same_tempo = np.mean([abs(np.log2(r[2] / r[1])) < 0.06 for r in rows])
            lines.append(f"{'mean (in-sample: the curve was chosen here)':46s} {'':9s} {100 * same_tempo:9.0f}% "
                         f"{means[0]:5.2f} {means[1]:8.2f} {means[2]:9.2f}")
    return lines
