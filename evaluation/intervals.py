"""95% bootstrap intervals over the items of a test set (songs, clips): how far a score could move on another draw
of the same kind of music. A target met by a mean inside such an interval is met on these items, not for certain."""
import numpy as np

BOOTSTRAP = 1000   # resamples


def interval(values, rng, resamples=BOOTSTRAP, statistic=np.mean):
    """(statistic, low, high): the 95% bootstrap interval of `statistic` (a mean, or e.g. np.median) over the
    per-item `values`. None and NaN are left out (an item without that score); inf stays (a lock never reached)."""
    values = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=np.float64)
    if not len(values):
        return (np.nan, np.nan, np.nan)
    draws = statistic(values[rng.integers(0, len(values), (resamples, len(values)))], axis=1)
    # interpolated as numpy does by default; with a lock never reached among the draws, the nearest draw instead,
    # as interpolating between inf and inf gives NaN
    low, high = np.percentile(draws, (2.5, 97.5), method="linear" if np.isfinite(draws).all() else "nearest")
    return (float(statistic(values)), float(low), float(high))


def ratio_interval(numerators, denominators, rng, resamples=BOOTSTRAP):
    """(sum ratio, low, high): 95% bootstrap over items of sum(numerators) / sum(denominators)."""
    n, d = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    picks = rng.integers(0, len(n), (resamples, len(n)))
    ratios = n[picks].sum(1) / np.maximum(d[picks].sum(1), 1e-12)
    return (float(n.sum() / max(d.sum(), 1e-12)), float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5)))
