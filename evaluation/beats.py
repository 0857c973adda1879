"""`onbeat eval beats`: the online beat tracker against human beat annotations (mir_eval), with its CPU cost
and how early and how well it predicts beats, next to aubio's own tempo tracker as the baseline.

Every clip is run causally, hop by hop, exactly as live audio would be.
"""
import time
import warnings
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.ear.beats import BeatTracker
from onbeat.core.music import ANALYSIS_RATE, HOP
from onbeat.ear.features import Resampler
from onbeat.ear.sources import read_audio

CLIP_SET = "gtzan-dev"
COLUMNS = ("F", "CMLt", "AMLt", "downbeat_F", "baseline_F")


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
    downbeats = table[table[:, 1] == 1, 0] if table.shape[1] > 1 else np.zeros(0)
    return table[:, 0], downbeats


def track(audio, tracker=None):
    """Run the tracker over `audio` hop by hop -> beat times, downbeat times, per-hop CPU seconds, (hop time,
    predicted next beat). CPU time of this thread, not wall time, so other processes on a shared machine do
    not count."""
    tracker = tracker or BeatTracker()
    beats, downbeats, costs, predictions = [], [], [], []
    for start in range(0, len(audio) - HOP + 1, HOP):
        began = time.thread_time()
        state = tracker.process(audio[start:start + HOP])
        costs.append(time.thread_time() - began)
        if state.is_beat:
            beats.append(state.last_beat)
        if state.is_downbeat:
            downbeats.append(state.last_beat)
        predictions.append((state.time, state.next_beats[0]))
    return np.array(beats), np.array(downbeats), np.array(costs), np.array(predictions)


# aubio's default tracker is sensitive to its window/hop in samples; on these clips at 22050 Hz it scores
# F 0.38 at 1024/512, 0.59 at 512/256 or 1024/256 and 0.64 at 2048/256: the baseline is the strongest of these.
BASELINE_WINDOW, BASELINE_HOP = 2048, 256


def aubio_baseline(audio):
    """Beat times from aubio's default tempo tracker, also causal."""
    import aubio
    hop = BASELINE_HOP
    tempo = aubio.tempo("default", BASELINE_WINDOW, hop, ANALYSIS_RATE)
    beats = []
    for start in range(0, len(audio) - hop + 1, hop):
        if tempo(audio[start:start + hop]):
            beats.append(tempo.get_last_s())
    return np.array(beats)


def scores(reference, estimated):
    """mir_eval's F-measure (±70 ms), CMLt and AMLt; both beat lists lose their first 5 s (mir_eval's default)."""
    import mir_eval
    reference, estimated = mir_eval.beat.trim_beats(reference), mir_eval.beat.trim_beats(estimated)
    with warnings.catch_warnings():   # an empty beat list is a valid result (it scores 0), not worth a warning
        warnings.simplefilter("ignore")
        f = mir_eval.beat.f_measure(reference, estimated)
        _, cmlt, _, amlt = mir_eval.beat.continuity(reference, estimated)
    return {"F": f, "CMLt": cmlt, "AMLt": amlt}


def prediction_quality(predictions, reference, skip_s=5.0):
    """For each hop after `skip_s`: how far ahead the next beat was predicted, and how far that prediction is
    from the nearest annotated beat (ms)."""
    hop_times, predicted = predictions[:, 0], predictions[:, 1]
    keep = (hop_times >= skip_s) & (predicted <= reference[-1] + 0.5)
    nearest = np.abs(predicted[keep, None] - reference[None, :]).min(axis=1)
    return 1000 * (predicted[keep] - hop_times[keep]), 1000 * nearest


def evaluate(data_dir, clips=None):
    """Scores of the tracker and of the aubio baseline on every clip, plus cost and prediction numbers."""
    folder = Path(data_dir) / CLIP_SET
    paths = sorted(folder.glob("*.flac"))[:clips]
    if not paths:
        raise OnbeatError(f"{folder}: no .flac clips found")
    rows, all_costs, leads, errors = [], [], [], []
    for path in paths:
        audio = load_clip(path)
        reference, reference_downbeats = load_beats(folder / "beats" / f"{path.stem}.beats")
        beats, downbeats, costs, predictions = track(audio)
        lead, error = prediction_quality(predictions, reference)
        rows.append({"clip": path.stem, "genre": path.stem.split(".")[0], **scores(reference, beats),
                     "downbeat_F": scores(reference_downbeats, downbeats)["F"] if len(reference_downbeats) else None,
                     "baseline_F": scores(reference, aubio_baseline(audio))["F"]})
        all_costs.append(costs)
        leads.append(lead)
        errors.append(error)
    costs, leads, errors = np.concatenate(all_costs) * 1e6, np.concatenate(leads), np.concatenate(errors)
    hop_us = 1e6 * HOP / ANALYSIS_RATE
    return {
        "clips": rows,
        "mean": {key: column_mean(rows, key) for key in COLUMNS},
        "cpu_us_per_hop": {"mean": float(costs.mean()), "p99": float(np.percentile(costs, 99)),
                           "realtime_fraction": float(costs.mean() / hop_us)},
        "prediction_ms": {"lead_median": float(np.median(leads)), "lead_min": float(leads.min()),
                          "error_median": float(np.median(errors)), "error_p90": float(np.percentile(errors, 90)),
                          "within_70ms": float(np.mean(errors <= 70))},
    }


def column_mean(rows, key):
    """Mean of one score over the clips that have it (not every clip annotates downbeats)."""
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else float("nan")


def print_report(result):
    print("beat tracking on gtzan-dev (mir_eval: F ±70 ms, CMLt, AMLt; beats in the first 5 s trimmed; "
          "downbeat_F: F of the downbeats against the annotated bar starts, clips that have them)")
    print(f"{'genre':<12}{'clips':>6}" + "".join(f"{c:>12}" for c in COLUMNS))
    genres = sorted({row["genre"] for row in result["clips"]})
    for genre in genres:
        rows = [row for row in result["clips"] if row["genre"] == genre]
        print(f"{genre:<12}{len(rows):>6}" + "".join(f"{column_mean(rows, c):>12.3f}" for c in COLUMNS))
    mean = result["mean"]
    print(f"{'mean':<12}{len(result['clips']):>6}" + "".join(f"{mean[c]:>12.3f}" for c in COLUMNS))
    print(f"baseline_F = aubio.tempo('default', {BASELINE_WINDOW}, {BASELINE_HOP}) at {ANALYSIS_RATE} Hz "
          "on the same clips (the best aubio window/hop tried)")
    cpu = result["cpu_us_per_hop"]
    print(f"CPU (thread time) per {HOP}-sample hop: mean {cpu['mean']:.0f} µs, p99 {cpu['p99']:.0f} µs "
          f"({100 * cpu['realtime_fraction']:.2f}% of real time)")
    pred = result["prediction_ms"]
    print(f"next-beat prediction (every hop after 5 s): lead median {pred['lead_median']:.0f} ms "
          f"(min {pred['lead_min']:.0f} ms), error vs nearest annotated beat median {pred['error_median']:.0f} ms, "
          f"p90 {pred['error_p90']:.0f} ms, {100 * pred['within_70ms']:.0f}% within ±70 ms")
