"""`onbeat eval beats`: the online beat tracker against human beat annotations (mir_eval), cross-validated.

Every clip is run causally, hop by hop, exactly as live audio would be. Reported per clip: F (±70 ms), CMLt,
AMLt, downbeat F, lock time (from the clip start to the first run of `LOCK_RUN` correct beats: each within
±70 ms of an annotated beat, the annotated beats consecutive, so the tempo octave and phase are right), the
tempo octave (tracked against annotated median beat interval), and, with all clips played back to back
(genres interleaved, abrupt cuts), the lock time after a track change. Each mean (the median lock time) comes with
its 95% bootstrap interval over the clips (`clip_intervals`): with 3 clips a genre, it is wide.

Cross-validation: the tracker's clock parameters (`TUNABLE`) are chosen on the other folds' clips (by
`tuning_score`: F, and lock time at a small cost per second), the bar counter's downbeat weights fitted on their
tracked beats (`fit_downbeat_weights`), and each fold is scored with the parameters and weights chosen without it.
The onset envelope does not depend on them, so it is computed once per clip and replayed through the clock. (The
shipped defaults and `DOWNBEAT_WEIGHTS` were themselves chosen on all the gtzan-dev clips, so `--no-cv` numbers
there are in-sample.)
"""
from __future__ import annotations

import itertools
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mir_eval  # the train extra: imported first, so a user without it is told which extra to install
import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import ANALYSIS_RATE, HOP
from onbeat.core.progress import tracked
from onbeat.ear.activation import SHIPPED, BeatActivation, held_out_set
from onbeat.ear.beats import BAR_START_FEATURES, DOWNBEAT_WEIGHTS, SUB_HOPS, BeatTracker
from onbeat.ear.features import Resampler
from onbeat.ear.sources import read_audio
from onbeat.evaluation.intervals import interval

TOLERANCE_S = 0.07
LOCK_RUN = 4
# the clock parameters tuned by cross-validation (BeatClock arguments)
TUNABLE = {"prior_bpm": (90.0, 100.0, 115.0), "tightness": (3.0, 5.0, 8.0), "early_gain": (0.0, 15.0, 25.0),
           "reanchor_beats": (0, 6)}
OCTAVES = {"right": 1.0, "double": 2.0, "half": 0.5, "triple": 3.0, "third": 1 / 3, "3:2": 1.5, "2:3": 2 / 3}
COLUMNS = ("F", "CMLt", "AMLt", "downbeat_F", "lock_s")
# the tuning folds' score: mean F less LOCK_COST per second of mean lock time, a clip that never locks counting
# LOCK_CAP_S. A dancer needs both; by F alone, settings that lock seconds apart tied within the noise of 20 clips
LOCK_COST, LOCK_CAP_S = 0.01, 15.0


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
    seen: dict[str, int] = {}
    folds = []
    for clip in clips:
        folds.append(seen.get(clip.genre, 0) % FOLDS)
        seen[clip.genre] = seen.get(clip.genre, 0) + 1
    return np.array(folds)


@dataclass
class Replay:
    """One clip's tracker input after the onset envelope, per hop: RMS, the sub-hops' envelope values, the chroma and
    the sub-hops' beat activations (none: the clock hears superflux alone)."""
    rms: list = field(default_factory=list)
    onsets: list = field(default_factory=list)
    chromas: list = field(default_factory=list)
    activations: np.ndarray | None = None   # (hops, SUB_HOPS)

    def log_mels(self):
        return np.array([log_mel for hop in self.onsets for _, _, log_mel in hop])

    def novelties(self):
        return np.array([novelty for hop in self.onsets for novelty, _, _ in hop])


def attach_activations(names, replays):
    """Give each replay (of the clip named alike) the beat activations of a network set that never heard that clip
    (`held_out_set`; the shipped set for any clip outside gtzan-dev). The networks run over each clip from a fresh
    start, as live after a track change; the tracker itself would run them hop by hop to the same numbers."""
    networks: dict[str, BeatActivation] = {}
    for name, replay in zip(names, replays, strict=True):
        held_out = held_out_set(name)
        if held_out not in networks:   # one load per set, not per clip
            networks[held_out] = BeatActivation(held_out)
        replay.activations = networks[held_out].run(replay.log_mels()).reshape(len(replay.rms), SUB_HOPS)


def record(audio, activation=SHIPPED):
    """Run the tracker over `audio` hop by hop -> its Replay and the CPU seconds (thread time) per hop. `activation`:
    the beat activation's network set (None: superflux alone, as before a set is trained)."""
    tracker = BeatTracker(activation=activation)
    replay, costs = Replay(), []
    for start in range(0, len(audio) - HOP + 1, HOP):
        began = time.thread_time()
        rms, onsets, chroma = tracker.hear(audio[start:start + HOP])
        tracker.follow(rms, onsets, chroma)
        costs.append(time.thread_time() - began)
        replay.rms.append(rms)
        replay.onsets.append(onsets)
        replay.chromas.append(chroma)
    if tracker.activation is not None:   # the networks' activations, as the tracker computed them hop by hop
        replay.activations = tracker.activation.run(replay.log_mels()).reshape(len(replay.rms), SUB_HOPS)
    return replay, np.array(costs)


def follow(replay, options=None, detect_track_changes=True, evidence=None):
    """Beats, downbeats and (hop time, predicted next beat) of a replayed clip under tracker `options` (clock
    parameters, `downbeat_weights`). A list `evidence` gets each beat's (time, downbeat features)."""
    log: list | None = [] if evidence is not None else None
    tracker = BeatTracker(detect_track_changes=detect_track_changes, downbeat_log=log, activation=None,
                          **(options or {}))
    beats, downbeats, predictions = [], [], []
    for i, (rms, onsets, chroma) in enumerate(zip(replay.rms, replay.onsets, replay.chromas, strict=True)):
        state = tracker.follow(rms, onsets, chroma, None if replay.activations is None else replay.activations[i])
        if state.is_beat:
            beats.append(state.last_beat)
            if state.is_downbeat:
                downbeats.append(state.last_beat)
        predictions.append((state.time, state.next_beats[0]))
    if evidence is not None and log is not None:
        evidence.extend((tracker.frame_time(frame), features) for frame, features in log)
    return np.array(beats), np.array(downbeats), np.array(predictions)


def follow_all(options, replays):
    """Every replay followed under one clock setting: their (beats, downbeats, predictions), and their downbeat
    evidence."""
    runs, evidence = [], []
    for replay in replays:
        log: list = []
        runs.append(follow(replay, options, evidence=log))
        evidence.append(log)
    return runs, evidence


_SHARED: dict = {}   # a sweep worker's replays, handed over once when it starts


def _share(replays):
    _SHARED["replays"] = replays


def _follow_shared(options):
    return follow_all(options, _SHARED["replays"])


def sweep(settings, replays, quiet=False):
    """`follow_all` for each clock setting, in that order, spread over the machine's cores (the cross-validation's
    54 settings took 8 minutes on one core)."""
    workers = min(len(settings), os.cpu_count() or 1)
    if workers == 1:
        return list(tracked((follow_all(options, replays) for options in settings), total=len(settings),
                            what="eval beats: clock settings", quiet=quiet))
    with ProcessPoolExecutor(workers, initializer=_share, initargs=(replays,)) as pool:
        return list(tracked(pool.map(_follow_shared, settings), total=len(settings), what="eval beats: clock settings",
                            quiet=quiet))


def downbeat_examples(clip, evidence):
    """(features, bar positions) of a clip's tracked beats for fitting the downbeat weights: the position in the bar
    (0 = downbeat) of the annotated beat within ±70 ms, counted from the annotated downbeat at or before it; -1 where
    there is none (no annotated beat that close, or no downbeat before it)."""
    if not evidence or not len(clip.downbeats):
        return np.zeros((0, DOWNBEAT_WEIGHTS.shape[1])), np.zeros(0, dtype=int)
    times = np.array([time for time, _ in evidence])
    nearest = np.abs(times[:, None] - clip.beats[None, :]).argmin(axis=1)
    bar_starts = np.searchsorted(clip.beats, clip.downbeats - TOLERANCE_S)   # the annotated beat of each downbeat
    bar = np.searchsorted(bar_starts, nearest, side="right") - 1
    positions = np.where(bar >= 0, nearest - bar_starts[np.maximum(bar, 0)], -1)
    positions[np.abs(times - clip.beats[nearest]) > TOLERANCE_S] = -1
    return np.array([features for _, features in evidence]), positions


def fit_downbeat_weights(features, positions, l2=10.0, steps=300, rate=0.5):
    """The bar counter's weights (`DOWNBEAT_WEIGHTS`) from tracked beats' features and bar positions (-1: unknown):
    the log-odds of a strong beat (positions 0 and 2 against the rest) and, on the strong beats, of the bar's first
    against its third from `BAR_START_FEATURES` alone."""
    strong = np.isin(positions, (0, 2))
    bar_start = np.zeros(features.shape[1])
    bar_start[BAR_START_FEATURES] = fit_logistic(features[strong][:, BAR_START_FEATURES], positions[strong] == 0, l2,
                                                 steps, rate)
    return np.stack([fit_logistic(features, strong, l2, steps, rate), bar_start])


def fit_logistic(features, labels, l2, steps, rate):
    """Logistic regression of `labels` on the features (gradient descent on standardised features, an L2 penalty) ->
    weights on the raw features, the last one (on the constant feature) the log-odds' offset. (The offset matters:
    the bar position scored last weighs most in the slowly forgetting sums.)"""
    features, labels = features[:, :-1], labels.astype(float)   # the constant
    mean, spread = features.mean(axis=0), features.std(axis=0) + 1e-6
    standard = (features - mean) / spread
    weights, bias = np.zeros(features.shape[1]), 0.0
    for _ in range(steps):
        error = 1.0 / (1.0 + np.exp(-(standard @ weights + bias))) - labels
        weights -= rate * (standard.T @ error + l2 * weights) / len(labels)
        bias -= rate * float(error.mean())
    return np.append(weights / spread, bias - weights @ (mean / spread))


def scores(reference, estimated):
    """mir_eval's F-measure (±70 ms), CMLt and AMLt; both beat lists lose their first 5 s (mir_eval's default)."""
    reference, estimated = mir_eval.beat.trim_beats(reference), mir_eval.beat.trim_beats(estimated)
    with warnings.catch_warnings():   # an empty beat list is a valid result (it scores 0), not worth a warning
        warnings.simplefilter("ignore")
        f = mir_eval.beat.f_measure(reference, estimated)
        _, cmlt, _, amlt = mir_eval.beat.continuity(reference, estimated)
    return {"F": f, "CMLt": cmlt, "AMLt": amlt}


def lock_time(reference, estimated, start=0.0):
    """Seconds from `start` to the first of `LOCK_RUN` consecutive tracked beats that each lie within ±70 ms of
    consecutive annotated beats (right tempo octave and phase); inf when that never happens."""
    reference = reference[reference >= start - TOLERANCE_S]
    estimated = estimated[estimated >= start - TOLERANCE_S]
    if len(reference) < LOCK_RUN or len(estimated) < LOCK_RUN:
        return float("inf")
    nearest = np.abs(estimated[:, None] - reference[None, :]).argmin(axis=1)
    hit = np.abs(estimated - reference[nearest]) <= TOLERANCE_S
    for i in range(len(estimated) - LOCK_RUN + 1):
        if hit[i:i + LOCK_RUN].all() and np.all(np.diff(nearest[i:i + LOCK_RUN]) == 1):
            return max(float(estimated[i] - start), 0.0)
    return float("inf")


def tempo_octave(reference, estimated, skip_s=5.0):
    """The tracked tempo against the annotated one (median beat intervals after `skip_s`): 'right', 'double',
    'half', 'triple', 'third', '3:2', '2:3' (within 4%) or 'other'."""
    reference, estimated = reference[reference >= skip_s], estimated[estimated >= skip_s]
    if len(estimated) < 3 or len(reference) < 3:
        return "other"
    ratio = np.median(np.diff(reference)) / np.median(np.diff(estimated))
    for name, value in OCTAVES.items():
        if abs(ratio / value - 1.0) <= 0.04:
            return name
    return "other"


def score_clip(clip, beats, downbeats):
    row = {"clip": clip.name, "genre": clip.genre, **scores(clip.beats, beats),
           "downbeat_F": scores(clip.downbeats, downbeats)["F"] if len(clip.downbeats) else None,
           "lock_s": lock_time(clip.beats, beats), "octave": tempo_octave(clip.beats, beats)}
    return row


def prediction_quality(predictions, reference, skip_s=5.0):
    """For each hop after `skip_s`: how far ahead the next beat was predicted, and how far that prediction is
    from the nearest annotated beat (ms)."""
    hop_times, predicted = predictions[:, 0], predictions[:, 1]
    keep = (hop_times >= skip_s) & (predicted <= reference[-1] + 0.5)
    nearest = np.abs(predicted[keep, None] - reference[None, :]).min(axis=1)
    return 1000 * (predicted[keep] - hop_times[keep]), 1000 * nearest


def interleaved(clips):
    """Clip order for the back-to-back run: one clip of each genre in turn, so neighbours differ in genre."""
    by_genre: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_genre.setdefault(clip.genre, []).append(i)
    return [i for group in itertools.zip_longest(*by_genre.values()) for i in group if i is not None]


def track_change_locks(clips, replays, options):
    """All clips played back to back: for each clip after the first, seconds from its start to lock."""
    order = interleaved(clips)
    chain = Replay()
    starts = []
    for i in order:
        starts.append(len(chain.rms) * HOP / ANALYSIS_RATE)
        for part in ("rms", "onsets", "chromas"):
            getattr(chain, part).extend(getattr(replays[i], part))
    if replays[0].activations is not None:   # each clip's held-out networks, run over the chain across the cuts
        sets = [held_out_set(clips[i].name) for i in order]
        runs = {name: BeatActivation(name).run(chain.log_mels()).reshape(len(chain.rms), SUB_HOPS)
                for name in set(sets)}
        hops = np.cumsum([0] + [len(replays[i].rms) for i in order])
        chain.activations = np.concatenate([runs[name][hops[k]:hops[k + 1]] for k, name in enumerate(sets)])
    beats, _, _ = follow(chain, options)
    locks = {}
    for k, i in enumerate(order[1:], start=1):
        end = starts[k + 1] if k + 1 < len(starts) else np.inf
        inside = beats[(beats >= starts[k] - TOLERANCE_S) & (beats < end)]
        locks[clips[i].name] = lock_time(clips[i].beats + starts[k], inside, start=starts[k])
    return locks


def evaluate(data, clips=None, cross_validate=True, quiet=False):
    """Scores of the tracker on every annotated clip of `data`: with cross-validated clock parameters (or the
    shipped defaults with `cross_validate=False`), lock times after track changes, cost and prediction numbers."""
    set_name, loaded = load_set(data, clips)
    folds = fold_of(loaded)
    recorded = [record(clip.audio) for clip in tracked(loaded, what="eval beats: listening", quiet=quiet)]
    replays, costs = [r for r, _ in recorded], np.concatenate([c for _, c in recorded]) * 1e6
    attach_activations([clip.name for clip in loaded], replays)
    grid = [dict(zip(TUNABLE, values, strict=True)) for values in itertools.product(*TUNABLE.values())]
    defaults = [{}] if not cross_validate else grid
    runs, evidence = zip(*sweep(defaults, replays, quiet), strict=True)   # per clock setting and clip
    per_options = [[score_clip(clip, beats, downbeats)
                    for clip, (beats, downbeats, _) in zip(loaded, run, strict=True)] for run in runs]
    chosen = {}
    rows: list[dict] = [{} for _ in loaded]  # filled fold by fold
    for fold in sorted(set(folds)):
        others = folds != fold
        best = 0
        if cross_validate and others.any():
            tuning = [tuning_score([row for row, other in zip(scored, others, strict=True) if other])
                      for scored in per_options]
            best = int(np.argmax(tuning))
        chosen[int(fold)] = defaults[best]
        options = dict(defaults[best])
        if cross_validate and others.any():   # the downbeat weights, refitted on the tuning folds' tracked beats
            examples = [downbeat_examples(loaded[i], evidence[best][i]) for i in np.flatnonzero(others)]
            features, positions = np.concatenate([x for x, _ in examples]), np.concatenate([y for _, y in examples])
            if np.isin((0, 2), positions).all():   # (a set without annotated bars keeps the shipped weights)
                options["downbeat_weights"] = fit_downbeat_weights(features, positions)
        for i in np.flatnonzero(folds == fold):
            refitted = "downbeat_weights" in options
            beats, downbeats, predictions = follow(replays[i], options) if refitted else runs[best][i]
            rows[i] = {**score_clip(loaded[i], beats, downbeats), "fold": int(fold), "_predictions": predictions}
    lead_runs, error_runs = [], []
    for row, clip in zip(rows, loaded, strict=True):
        lead, error = prediction_quality(row.pop("_predictions"), clip.beats)
        lead_runs.append(lead)
        error_runs.append(error)
    change_locks = track_change_locks(loaded, replays, {}) if len(loaded) > 1 else {}
    for row in rows:
        row["lock_after_change_s"] = change_locks.get(row["clip"])
    leads, errors = np.concatenate(lead_runs), np.concatenate(error_runs)
    hop_us = 1e6 * HOP / ANALYSIS_RATE
    locks = np.array([row["lock_s"] for row in rows])
    after_change = np.array([v for v in change_locks.values()])
    return {
        "set": set_name,
        "cross_validated": cross_validate,
        "chosen_parameters": chosen,
        "clips": rows,
        "mean": {key: column_mean(rows, key) for key in COLUMNS if key != "lock_s"},
        "intervals": clip_intervals(rows),
        "lock_s": {"median": float(np.median(locks)), "never": int(np.isinf(locks).sum()),
                   "median_after_change": float(np.median(after_change)) if len(after_change) else None,
                   "never_after_change": int(np.isinf(after_change).sum())},
        "octave": {name: sum(row["octave"] == name for row in rows) for name in [*OCTAVES, "other"]},
        "cpu_us_per_hop": {"mean": float(costs.mean()), "p99": float(np.percentile(costs, 99)),
                           "realtime_fraction": float(costs.mean() / hop_us)},
        "prediction_ms": {"lead_median": float(np.median(leads)), "lead_min": float(leads.min()),
                          "error_median": float(np.median(errors)), "error_p90": float(np.percentile(errors, 90)),
                          "within_70ms": float(np.mean(errors <= 70))},
    }


def clip_intervals(rows, seed=0):
    """(value, low, high) per column: the mean (the median for lock times) with its 95% bootstrap interval over
    the clips, how far it could move on 30 other clips of these genres."""
    rng = np.random.default_rng(seed)
    return {key: interval([row[key] for row in rows], rng, statistic=np.median if key == "lock_s" else np.mean)
            for key in COLUMNS}


def tuning_score(rows):
    """What the cross-validation maximises over the tuning folds' scored clips (see LOCK_COST)."""
    locks = np.minimum([row["lock_s"] for row in rows], LOCK_CAP_S)
    return float(np.mean([row["F"] for row in rows]) - LOCK_COST * np.mean(locks))


def column_mean(rows, key):
    """Mean of one score over the clips that have it (not every clip annotates downbeats)."""
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else float("nan")


def print_report(result):
    how = (f"{FOLDS}-fold cross-validated: each fold scored with clock parameters tuned (F less {LOCK_COST:g} per "
           "second of lock time) and downbeat weights fitted on the other folds"
           if result["cross_validated"] else "shipped parameters")
    print(f"beat tracking on {result['set']} ({len(result['clips'])} clips; {how})")
    print("mir_eval: F ±70 ms, CMLt, AMLt, beats in the first 5 s trimmed; downbeat_F against the annotated bar "
          f"starts; lock_s: median seconds from the clip start to {LOCK_RUN} consecutive correct beats")
    print(f"{'genre':<12}{'clips':>6}" + "".join(f"{c:>12}" for c in COLUMNS))
    genres = sorted({row["genre"] for row in result["clips"]})
    for genre in genres:
        rows = [row for row in result["clips"] if row["genre"] == genre]
        print(f"{genre:<12}{len(rows):>6}" + "".join(f"{summary(rows, c):>12.3f}" for c in COLUMNS))
    print(f"{'mean':<12}{len(result['clips']):>6}" + "".join(f"{summary(result['clips'], c):>12.3f}" for c in COLUMNS))
    print("95% bootstrap intervals over the clips: " + ", ".join(
        f"{key} {low:.3f}-{high:.3f}" if key != "lock_s" else f"median lock {low:.1f}-{high:.1f} s"
        for key, (value, low, high) in result["intervals"].items() if not np.isnan(value)))
    lock = result["lock_s"]
    print(f"lock time: median {lock['median']:.1f} s from the clip start ({lock['never']} clips never lock); "
          + (f"after a track change (clips back to back): median {lock['median_after_change']:.1f} s "
             f"({lock['never_after_change']} never)" if lock["median_after_change"] is not None
             else "no track changes (one clip)"))
    print("tempo octave (tracked vs annotated): " + ", ".join(f"{k} {v}" for k, v in result["octave"].items() if v))
    if result["cross_validated"]:
        print("parameters chosen per fold: " + "; ".join(
            f"fold {fold}: " + ", ".join(f"{k}={v:g}" for k, v in options.items())
            for fold, options in result["chosen_parameters"].items()))
    cpu = result["cpu_us_per_hop"]
    print(f"CPU (thread time) per {HOP}-sample hop: mean {cpu['mean']:.0f} µs, p99 {cpu['p99']:.0f} µs "
          f"({100 * cpu['realtime_fraction']:.2f}% of one core)")
    pred = result["prediction_ms"]
    print(f"next-beat prediction (every hop after 5 s): lead median {pred['lead_median']:.0f} ms "
          f"(min {pred['lead_min']:.0f} ms), error vs nearest annotated beat median {pred['error_median']:.0f} ms, "
          f"p90 {pred['error_p90']:.0f} ms, {100 * pred['within_70ms']:.0f}% within ±70 ms")


def summary(rows, key):
    """The per-group figure of a column: the median for lock times (inf = never), the mean otherwise."""
    if key == "lock_s":
        return float(np.median([row[key] for row in rows]))
    return column_mean(rows, key)
