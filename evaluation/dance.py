"""`onbeat eval dance`: every model danced to every song of the test set, scored against the real dancers.

Test set: `evaluation.songs` (a dataset file's validation split, or any folder of dances with music). Each song is
danced for `seconds` (or to its end) by each model, with each seed, through the live path (`evaluation.generate`).
The real dances are scored the same way, from their own frame rate resampled smoothly to 30 fps.

Music beats: the beats the ear tracks in the song (`ear.features.extract_file`, the live tracker run over the
file), the same for the real row and every model.

Numbers and their intervals (`Evaluation.rows`, see `METRICS` for each key's meaning and unit):
- per-dance metrics are averaged over seeds per song; value = mean over songs, interval = 95% bootstrap over songs
  (`BOOTSTRAP` resamples); gains over chance are paired per song;
- FID and Div compare sets, so the songs are split at random into two halves `DRAWS` times: the real row is the
  real-vs-real floor, FID(real half B, real half A); a model's is FID(model on half B, real half A), one seed per
  draw in turn: equal sizes, the same reference. Features are normalised by half A's statistics. Value = mean over
  draws, interval = 2.5-97.5% of the draws;
- rtf: seconds danced / wall seconds of the whole live path (file reading, ear, engine, model, FK), one process,
  one thread; rtf_model the same for the choreographer alone. Timed on whatever else the machine runs.
"""
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from onbeat.choreographers.keyposes import REACHED_CM
from onbeat.core.progress import tracked
from onbeat.core.skeleton import JOINT_NAMES
from onbeat.evaluation import metrics
from onbeat.evaluation.generate import (
    FPS,
    Dance,
    live_dance,
    load_live,
    load_torch,
    torch_dance,
)
from onbeat.evaluation.intervals import BOOTSTRAP, interval, ratio_interval
from onbeat.evaluation.songs import Song

logger = logging.getLogger(__name__)

DRAWS = 200
KEY_POSE_FIRST, KEY_POSE_EVERY, KEY_POSE_SECONDS = 6.0, 4.0, 24.0  # requests from 6 s, every 4 s, in 24 s dances

# key: (label, unit, digits, meaning)
METRICS = {
    "fid_k": ("FID_k", "", 1, "kinetic features' Frechet distance to real (real row: real-vs-real floor)"),
    "fid_g": ("FID_g", "", 1, "geometric features' Frechet distance to real (real row: real-vs-real floor)"),
    "div_k": ("Div_k", "", 2, "kinetic diversity (mean pairwise distance of segments)"),
    "div_g": ("Div_g", "", 2, "geometric diversity"),
    "bas": ("BAS", "", 3, "Bailando beat align score"),
    "bas_chance": ("BAS chance", "", 3, "BAS with chance beats (mean of random phase and other songs' beats)"),
    "bas_chance_phase": ("BAS chance, random phase", "", 3, "BAS with the beats shifted by a random part of a beat"),
    "bas_chance_songs": ("BAS chance, other songs", "", 3, "BAS with other songs' beats"),
    "bas_gain": ("BAS gain", "", 3, "BAS - BAS chance"),
    "beat_align": ("step locking", "", 3, "steps' beat-phase locking in 8-beat windows (metrics.beat_locking)"),
    "beat_align_chance": ("step locking chance", "", 3, "step locking against other songs' beats"),
    "beat_gain": ("beat gain", "", 3, "step locking - chance"),
    "twitch": ("twitch", "", 2, "beat-synchronous speed pulse (metrics.twitch); real dancers ~0.2-0.3"),
    "pfc": ("PFC", "", 2, "physical foot contact, guarded (metrics.pfc)"),
    "skate": ("skate", "m/s", 3, "horizontal speed of feet on the floor"),
    "contact_share": ("contact", "", 2, "share of frames with a foot on the floor"),
    "penetration_p95": ("penetration p95", "cm", 2, "95th percentile of the lowest foot's depth below the floor"),
    "jerk": ("jerk", "m/s^3", 0, "mean joint jerk"),
    "freeze": ("freeze", "", 3, "share of 1 s windows with the body (root-relative) nearly still"),
    "travel": ("travel", "m/s", 3, "mean horizontal root speed"),
    "pops": ("pops", "%", 3, ("joint-frames turning > 30 deg per 1/60 s (metrics.rotation_pops), all joints; "
                              "per joint as pops_<joint name> in the JSON")),
    "keypose_cm": ("key pose", "cm", 1, "wrist/ankle distance to the requested key pose at its downbeat"),
    "keypose_reach": ("key pose reached", "%", 0, "requests with every wrist and ankle within 5 cm"),
    "rtf": ("rtf", "x", 1, "real-time factor of the whole live path"),
    "rtf_model": ("rtf model", "x", 1, "real-time factor of the choreographer alone"),
}
SET_METRICS = ("fid_k", "fid_g", "div_k", "div_g")


@dataclass
class RealSong:
    """A song of the test set, ready to score: the real dance at 30 fps, its rotations at their own rate, beats."""
    song: Song
    dance: Dance
    rotation_fps: float
    beats: np.ndarray


@dataclass
class Evaluation:
    songs: list
    rows: dict  # {row name: {metric key: (value, low, high)}}
    per_song: dict  # {row name: {metric key: [value per song]}}
    dances: dict  # {row name: [[Dance per song] per seed]}
    meta: dict = field(default_factory=dict)


# --- preparing the real dances ------------------------------------------------------------------------------------
def prepare(songs: list, seconds: float) -> list:
    """The real dances cut to `seconds` (or the song's end) and the beats of their music."""
    from onbeat.ear.features import extract_file
    prepared = []
    for song in songs:
        motion = song.motion
        frames = round(min(seconds, motion.duration) * FPS)
        positions = metrics.resample_positions(motion.positions(), motion.fps, FPS)[:frames]
        native = motion.rotations[:round(frames / FPS * motion.fps)]
        _, beats = extract_file(song.audio)
        prepared.append(RealSong(song, Dance(positions, native, FPS), motion.fps, beats))
    return prepared


# --- per-dance metrics --------------------------------------------------------------------------------------------
def dance_scores(dance: Dance, rotation_fps: float, beats: np.ndarray, other_beats: list, reference_speed: float,
                 rng: np.random.Generator) -> dict:
    """Every per-dance metric of one dance (see METRICS)."""
    p, fps = dance.positions, dance.fps
    beats = beats[beats < len(p) / fps]
    others = [b[b < len(p) / fps] for b in other_beats]
    motion_beats = metrics.kinematic_beats(p, fps)
    samples = len(metrics.at_protocol_rate(p, fps)) - 1
    bas = metrics.beat_align(motion_beats, beats, samples)
    phase = np.mean([metrics.beat_align(motion_beats, b, samples) for b in metrics.shifted_beats(beats, rng)])
    songs = np.mean([metrics.beat_align(motion_beats, b, samples) for b in others]) if others else math.nan
    steps = metrics.step_times(p, fps)
    locking = metrics.beat_locking(steps, beats)
    locking_chance = np.mean([metrics.beat_locking(steps, b) for b in others]) if others else math.nan
    scores = {
        "bas": bas, "bas_chance_phase": phase, "bas_chance_songs": songs, "bas_chance": np.nanmean([phase, songs]),
        "beat_align": locking, "beat_align_chance": locking_chance, "twitch": metrics.twitch(p, fps, beats),
        "pfc": metrics.pfc(p, fps), "skate": metrics.foot_skate(p, fps), "contact_share": metrics.contact_share(p, fps),
        "penetration_p95": 100 * metrics.foot_penetration(p), "jerk": metrics.jerk(p, fps),
        "freeze": metrics.freeze_ratio(p, fps, reference_speed), "travel": metrics.travel(p, fps),
    }
    pops = metrics.rotation_pops(dance.rotations, rotation_fps)
    scores["pops"] = 100 * float(pops.mean())
    scores.update({f"pops_{JOINT_NAMES[j]}": 100 * float(pops[j]) for j in range(len(pops))})
    scores["bas_gain"] = scores["bas"] - scores["bas_chance"]
    scores["beat_gain"] = scores["beat_align"] - scores["beat_align_chance"]
    return scores


# --- set metrics ----------------------------------------------------------------------------------------------------
def set_metrics(real_features: list, model_features: dict, rng: np.random.Generator, draws=DRAWS) -> dict:
    """FID/Div per row over random half splits of the songs (see the module doc).

    real_features: per song (kinetic (n, 72), geometric (n, 32)); model_features: {row: [per seed [per song]]}.
    Returns {row: {key: (mean, low, high)}} with the real row the real-vs-real floor."""
    count = len(real_features)
    half = count // 2
    if half < 1:
        return {}
    samples: dict[str, dict[str, list]] = {row: {key: [] for key in SET_METRICS} for row in ("real", *model_features)}
    for draw in range(draws):
        order = rng.permutation(count)
        first, second = order[:half], order[half:2 * half]
        for kind, name in ((0, "k"), (1, "g")):
            reference = np.concatenate([real_features[i][kind] for i in first])
            candidates = {"real": [real_features[i][kind] for i in second]}
            for row, seeds in model_features.items():
                chosen = seeds[draw % len(seeds)]
                candidates[row] = [chosen[i][kind] for i in second]
            for row, parts in candidates.items():
                reference_n, other_n = metrics.normalize(reference, np.concatenate(parts))
                samples[row][f"fid_{name}"].append(metrics.fid(other_n, reference_n))
                samples[row][f"div_{name}"].append(metrics.diversity(other_n))
    return {row: {key: (float(np.mean(v)), float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
                  for key, v in values.items()} for row, values in samples.items()}


# --- the evaluation ---------------------------------------------------------------------------------------------------
def evaluate(songs: list, models: list, seconds=60.0, seeds=(0, 1), path="live", published_kinetic=False,
             key_poses=True, quiet=False, seed=0) -> Evaluation:
    """Score the real dances of `songs` and every model in `models` ([(row name, spec)]; see `load_model`)."""
    rng = np.random.default_rng(seed)
    real = prepare(songs, seconds)
    reference_speed = float(np.median(np.concatenate(
        [metrics.mean_joint_speed(metrics.root_relative(r.dance.positions), FPS) for r in real])))
    beats = [r.beats for r in real]
    others = [[b for j, b in enumerate(beats) if j != i] for i in range(len(real))]
    per_song, dances, features = {}, {}, {}

    def score(row, seeded):
        """Per-song scores of `row` from its dances [seed][song] (averaged over seeds) and its features."""
        values = [[dance_scores(dance, rot_fps, r.beats, others[i], reference_speed, rng)
                   for i, (dance, r, rot_fps) in enumerate(zip(run, real, rates, strict=True))]
                  for run, rates in seeded]
        per_song[row] = {key: [_mean_of_finite([run[i][key] for run in values]) for i in range(len(real))]
                         for key in values[0][0]}
        features[row] = [[metrics.dance_features(d.positions, d.fps, published_kinetic=published_kinetic)
                          for d in run] for run, _ in seeded]

    real_rates = [r.rotation_fps for r in real]
    dances["real"] = [[r.dance for r in real]]
    score("real", [([r.dance for r in real], real_rates)])
    for row, spec in models:
        dancer = load_model(spec, path)
        runs = []
        for seed_ in seeds:
            run = []
            for r in tracked(real, what=f"{row} seed {seed_}", quiet=quiet):
                run.append(generate(dancer, spec, path, r, seconds, seed_))
            runs.append(run)
        dances[row] = runs
        score(row, [(run, [FPS] * len(run)) for run in runs])
        if key_poses and path == "live":
            length = min(KEY_POSE_SECONDS, seconds)
            requests = np.arange(KEY_POSE_FIRST, length - 2.0, KEY_POSE_EVERY)
            tries = [live_dance(r.song.audio, dancer, length, seeds[0], requests).key_poses for r in real]
            per_song[row]["keypose_cm"] = [np.mean([e for *_, e in t]) if t else math.nan for t in tries]
            per_song[row]["keypose_reach"] = [100 * np.mean([e <= REACHED_CM for *_, e in t])
                                              if t else math.nan for t in tries]
    rows = {row: {key: interval(values, rng) for key, values in keys.items()} for row, keys in per_song.items()}
    for row, sets in set_metrics(features["real"][0], {r: f for r, f in features.items() if r != "real"}, rng).items():
        rows[row].update(sets)
    for row, runs in dances.items():
        if row != "real":
            songs_seconds = [sum(run[i].seconds for run in runs) for i in range(len(real))]
            rows[row]["rtf"] = ratio_interval(songs_seconds, [sum(run[i].wall_seconds for run in runs)
                                                              for i in range(len(real))], rng)
            rows[row]["rtf_model"] = ratio_interval(songs_seconds, [sum(run[i].model_seconds for run in runs)
                                                                    for i in range(len(real))], rng)
            per_song[row]["dance_start"] = [float(np.mean([run[i].dance_start for run in runs]))
                                            for i in range(len(real))]
    meta = {"songs": [r.song.name for r in real], "styles": [r.song.style for r in real], "seconds": seconds,
            "seeds": list(seeds), "path": path, "fps": FPS,
            "kinetic": "published (Bailando code)" if published_kinetic else "onbeat (true acceleration)",
            "beats": "the ear's tracker over each song (ear.features.extract_file)",
            "intervals": f"95% bootstrap over songs ({BOOTSTRAP}); FID/Div: {DRAWS} random half splits",
            "load_average": list(os.getloadavg()), "units": {k: v[1] for k, v in METRICS.items()},
            "models": {row: spec if isinstance(spec, str) else f"{spec[0]}={spec[1]}" for row, spec in models}}
    return Evaluation(real, rows, per_song, dances, meta)


def _mean_of_finite(values):
    """The mean over seeds of a song's score, NaN where no seed gave one (e.g. a dance that never touched the floor)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def load_model(spec, path):
    """The dancer of a `--models` entry: the live choreographer (None for the groove) or the torch model."""
    if path == "live":
        return load_live(spec)
    kind, checkpoint = spec
    return load_torch(kind, checkpoint)


def generate(dancer, spec, path, real: RealSong, seconds, seed) -> Dance:
    if path == "live":
        return live_dance(real.song.audio, dancer, seconds, seed)
    from onbeat.ear.features import extract_file
    frames = len(real.dance.positions)
    return torch_dance(dancer, extract_file(real.song.audio)[0][:frames], seed)


# --- output ---------------------------------------------------------------------------------------------------------
def format_table(evaluation: Evaluation) -> str:
    """Metrics down, rows (real, models) across: "value [low, high]" per cell."""
    rows = list(evaluation.rows)
    keys = [k for k in METRICS if any(k in evaluation.rows[r] for r in rows)]

    def cell(key, row):
        if key not in evaluation.rows[row] or not np.isfinite(evaluation.rows[row][key][0]):
            return "-"
        digits = METRICS[key][2]
        value, low, high = evaluation.rows[row][key]
        return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

    labels = [f"{METRICS[k][0]}" + (f" ({METRICS[k][1]})" if METRICS[k][1] else "") for k in keys]
    cells = [[cell(k, r) for r in rows] for k in keys]
    width = max(len(label) for label in labels) + 2
    columns = [max(len(r), *(len(c[i]) for c in cells)) + 2 for i, r in enumerate(rows)]
    lines = ["".ljust(width) + "".join(r.rjust(w) for r, w in zip(rows, columns, strict=True))]
    lines += [label.ljust(width) + "".join(c.rjust(w) for c, w in zip(row, columns, strict=True))
              for label, row in zip(labels, cells, strict=True)]
    return "\n".join(lines)


def to_json(evaluation: Evaluation) -> dict:
    """The evaluation as JSON-ready data: stable metric keys per row ("real" and each model)."""
    def number(x):
        return None if x is None or not np.isfinite(x) else float(x)

    return {"meta": evaluation.meta,
            "rows": {row: {key: {"value": number(v), "low": number(lo), "high": number(hi)}
                           for key, (v, lo, hi) in values.items()} for row, values in evaluation.rows.items()},
            "per_song": {row: {key: [number(v) for v in values] for key, values in keys.items()}
                         for row, keys in evaluation.per_song.items()}}
