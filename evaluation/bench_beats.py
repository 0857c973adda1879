"""`onbeat bench beats`: onbeat's online tracker next to madmom's online tracker on the same clips, one scorer.

madmom is not a dependency (its models are CC BY-NC-SA, and PyPI's 0.16.1 does not import on Python >= 3.10):
it runs in its own Python environment, built from madmom's git source, as a subprocess (`madmom_online.py`).
Without one, onbeat's numbers are printed alone with the reason.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from onbeat.core.music import ANALYSIS_RATE, HOP
from onbeat.core.paths import PACKAGE_ROOT
from onbeat.evaluation.beats import attach_activations, column_mean, find_clips, follow, load_set, record, score_clip
from onbeat.evaluation.intervals import interval

RUNNER = Path(__file__).with_name("madmom_online.py")
PAIRED = ("F", "CMLt", "AMLt")   # the scores compared clip by clip
# where a benchmark environment is looked for when neither --madmom nor $ONBEAT_MADMOM_PYTHON names one
DEFAULT_ENVIRONMENTS = (PACKAGE_ROOT.parent / "madmom-env" / "venv" / "bin" / "python",
                        Path.home() / "madmom-env" / "venv" / "bin" / "python")


def find_madmom(python=None):
    """(interpreter, None) for a Python that imports madmom, or (None, why not)."""
    named = python or os.environ.get("ONBEAT_MADMOM_PYTHON")
    candidates = [Path(named)] if named else list(DEFAULT_ENVIRONMENTS)
    for candidate in candidates:
        if not candidate.is_file():
            continue
        probe = subprocess.run([str(candidate), "-c", "import madmom"], capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return candidate, None
        return None, f"{candidate} cannot import madmom ({probe.stderr.strip().splitlines()[-1:]})"
    return None, ("no madmom environment found (looked for " + ", ".join(str(c) for c in candidates)
                  + "; pass --madmom PYTHON or set ONBEAT_MADMOM_PYTHON)")


def run_madmom(python, paths, timeout_s=3600):
    """madmom's online beats per file, and its CPU seconds and audio seconds."""
    done = subprocess.run([str(python), str(RUNNER), *map(str, paths)], capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode != 0:
        return None, f"madmom failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
    return json.loads(done.stdout), None


def summarise(rows, cpu_fraction):
    return {**{key: column_mean(rows, key) for key in PAIRED},
            "lock_s": float(np.median([row["lock_s"] for row in rows])),
            "right_octave": sum(row["octave"] == "right" for row in rows), "clips": len(rows),
            "cpu_fraction": cpu_fraction}


def bench(data, clips=None, madmom_python=None):
    """Both trackers on the same clips: per-tracker summaries, per-clip rows, and why madmom is missing if it is."""
    set_name, loaded = load_set(data, clips)
    _, pairs = find_clips(data)
    paths = [audio for audio, _ in pairs[:clips]]
    recorded = [record(clip.audio) for clip in loaded]
    replays, costs = [replay for replay, _ in recorded], [cost for _, cost in recorded]
    # each clip's beat activation from networks that never heard it, as eval beats scores it (the clock's defaults
    # were still chosen on gtzan-dev: in-sample there)
    attach_activations([clip.name for clip in loaded], replays)
    onbeat_rows = []
    for clip, replay in zip(loaded, replays, strict=True):
        beats, downbeats, _ = follow(replay)
        onbeat_rows.append(score_clip(clip, beats, downbeats))
    hop_s = HOP / ANALYSIS_RATE
    cpu_fraction = float(np.concatenate(costs).mean() / hop_s)
    result = {"set": set_name, "trackers": {"onbeat": summarise(onbeat_rows, cpu_fraction)},
              "clips": {"onbeat": onbeat_rows}, "madmom": None}
    python, why = find_madmom(madmom_python)
    if python is not None:
        output, why = run_madmom(python, paths)
    if why:
        result["madmom"] = why
        return result
    madmom_rows = []
    cpu, seconds = 0.0, 0.0
    for clip, path in zip(loaded, paths, strict=True):
        found = output[str(path)]
        beats = np.array(found["beats"])
        row = score_clip(clip, beats, np.zeros(0))
        row["downbeat_F"] = None   # madmom's online tracker has no downbeats
        madmom_rows.append(row)
        cpu, seconds = cpu + found["cpu_s"], seconds + found["seconds"]
    result["trackers"]["madmom"] = summarise(madmom_rows, cpu / seconds)
    # paired clip by clip: a clip hard for both trackers moves both scores, not the gap's interval
    rng = np.random.default_rng(0)
    result["difference"] = {key: interval([a[key] - b[key] for a, b in zip(onbeat_rows, madmom_rows, strict=True)], rng)
                            for key in PAIRED}
    result["clips"]["madmom"] = madmom_rows
    result["madmom"] = str(python)
    return result


def print_bench(result):
    print(f"online beat trackers on {result['set']} (same clips, same scorer: mir_eval F ±70 ms, CMLt, AMLt, "
          "first 5 s trimmed; lock_s: median seconds to 4 consecutive correct beats)")
    print(f"{'tracker':<10}{'clips':>6}{'F':>8}{'CMLt':>8}{'AMLt':>8}{'lock_s':>8}{'octave ok':>11}{'CPU':>10}")
    for name, s in result["trackers"].items():
        print(f"{name:<10}{s['clips']:>6}{s['F']:>8.3f}{s['CMLt']:>8.3f}{s['AMLt']:>8.3f}{s['lock_s']:>8.1f}"
              f"{s['right_octave']:>11}{100 * s['cpu_fraction']:>9.2f}%")
    genres = sorted({row["genre"] for row in result["clips"]["onbeat"]})
    if len(genres) > 1:
        print("F per genre: " + "; ".join(
            f"{genre} " + " / ".join(f"{np.mean([r['F'] for r in rows if r['genre'] == genre]):.2f}"
                                     for rows in result["clips"].values())
            for genre in genres) + f"  ({' / '.join(result['clips'])})")
    print("CPU: onbeat's thread time per hop, hop by hop as live; madmom's process time over each whole file "
          "(batched, so a lower bound on its live cost), as a share of one core")
    if "madmom" not in result["trackers"]:
        print(f"madmom not run: {result['madmom']}")
    else:
        print(f"madmom: RNNBeatProcessor(online=True) + DBNBeatTrackingProcessor(online=True) in {result['madmom']}")
        gaps = result["difference"].items()
        print("onbeat - madmom, paired over the same clips (95% bootstrap interval): " + ", ".join(
            f"{key} {value:+.3f} ({low:+.3f} to {high:+.3f})" for key, (value, low, high) in gaps))
