"""Bootstrap intervals over a test set's items (songs, clips)."""
import numpy as np

from onbeat.evaluation.intervals import interval, ratio_interval


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(0)
    few = interval(rng.normal(1.0, 1.0, 8), rng)
    many = interval(rng.normal(1.0, 1.0, 200), rng)
    assert few[1] < few[0] < few[2] and many[1] < 1.0 < many[2]
    assert many[2] - many[1] < 0.5 * (few[2] - few[1])
    assert np.isnan(interval([np.nan, None], rng)[0])


def test_a_median_interval_keeps_never_as_infinity():
    rng = np.random.default_rng(1)
    locks = [2.0, 3.0, 4.0, 5.0, 6.0, np.inf, np.inf]   # seconds to lock; two clips never locked
    median, low, high = interval(locks, rng, statistic=np.median)
    assert median == 5.0 and 2.0 <= low <= 5.0 and high == np.inf   # resamples with 4+ nevers do not lock
    mostly_never = interval([1.0] + [np.inf] * 6, rng, statistic=np.median)
    assert mostly_never[0] == np.inf and not np.isnan(mostly_never[1:]).any()


def test_ratio_interval_is_the_ratio_of_sums():
    rng = np.random.default_rng(2)
    ratio, low, high = ratio_interval([10.0, 20.0, 30.0], [1.0, 1.0, 4.0], rng)
    assert ratio == 10.0 and low < ratio < high
