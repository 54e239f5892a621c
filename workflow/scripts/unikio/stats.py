"""One definition of the statistics every table, claim and comparison reports.

Confidence intervals are percentile bootstraps over repetitions: resample the
repetitions with replacement, take the statistic, read the 2.5th and 97.5th
percentiles. The generator is seeded, so the same data always gives the same
interval. With fewer than two repetitions there is no spread, and every
interval is NaN rather than a made-up width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 2018
METHOD = f"percentile bootstrap of the mean over repetitions ({RESAMPLES} resamples, seed {SEED})"
NAN = float("nan")


def _array(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[~np.isnan(a)]


def _interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_means(a: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    return a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            seed: int = SEED) -> tuple[float, float]:
    """The bootstrap confidence interval of the mean; (NaN, NaN) below two values."""
    a = _array(values)
    if len(a) < 2:
        return NAN, NAN
    return _interval(_resampled_means(a, np.random.default_rng(seed), resamples), confidence)


def summary(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """n, mean, sd (n-1), cv (sd / mean), median and the CI of the mean (ci_low, ci_high)."""
    a = _array(values)
    n = len(a)
    mean = float(a.mean()) if n else NAN
    sd = float(a.std(ddof=1)) if n > 1 else NAN
    low, high = mean_ci(a, confidence)
    return {"n": n, "mean": mean, "sd": sd, "cv": sd / mean if n > 1 and mean else NAN,
            "median": float(np.median(a)) if n else NAN, "ci_low": low, "ci_high": high}


def two_sample_ci(a: Sequence[float], b: Sequence[float], statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
                  ) -> tuple[float, float, float]:
    """(point estimate, CI low, CI high) of statistic(mean of a, mean of b), each sample resampled on its own.

    statistic works elementwise on arrays of means, e.g. ``np.divide`` for a ratio.
    Below two values in either sample the interval is NaN.
    """
    x, y = _array(a), _array(b)
    if not len(x) or not len(y):
        return NAN, NAN, NAN
    point = float(statistic(np.array([x.mean()]), np.array([y.mean()]))[0])
    if len(x) < 2 or len(y) < 2:
        return point, NAN, NAN
    rng = np.random.default_rng(seed)
    estimates = statistic(_resampled_means(x, rng, resamples), _resampled_means(y, rng, resamples))
    low, high = _interval(estimates, confidence)
    return point, low, high


def ratio_ci(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """mean(a) / mean(b) with its bootstrap CI."""
    return two_sample_ci(a, b, np.divide, confidence)
