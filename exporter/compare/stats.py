"""The statistics behind a comparison: figures with their uncertainty, and a verdict per pair.

Every figure the comparison reports comes with an interval that says how far it can be trusted
at the sample size it was computed from:

- a median with a distribution-free interval from order statistics (no assumption about the
  shape of the durations, which are skewed in practice);
- a rate (errors, failed checks) with the Wilson score interval, which stays sensible at zero
  failures, where the normal approximation collapses to a point;
- a mean with a bootstrap percentile interval;
- a pair of models with the ratio of their medians, a bootstrap interval of that ratio and a
  Mann-Whitney U test; one is called faster only when both agree.

numpy and scipy are an optional extra; the command imports this module lazily and reports a
missing extra itself. Results are plain Python numbers: no numpy scalar leaves this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

Interval = tuple[float, float]
Verdict = Literal["faster", "indistinguishable"]
KpiVerdict = Literal["pass", "fail", "undetermined"]

_FloatArray = npt.NDArray[np.float64]

# A pair is called different only below this two-sided p-value (and with a ratio interval
# that excludes 1).
_SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Figure:
    """One sample summarised: its size, centre, spread and the median's 95 % interval."""

    n: int
    median: float
    mean: float
    p90: float  # numpy's default (linear interpolation) percentile
    ci95: Interval | None  # the median's distribution-free 95 % interval; None when n is too small


@dataclass(frozen=True)
class PairTest:
    """Two samples compared by their medians."""

    faster: int  # 0 when the first sample's median is lower (or the medians are equal), else 1
    ratio: float  # median(slower) / median(faster), >= 1; inf when only the faster median is 0
    ci95: Interval  # bootstrap percentile 95 % interval of that ratio
    p_value: float  # two-sided Mann-Whitney U
    verdict: Verdict  # "faster" only when ci95 excludes 1 (lo > 1) and p_value < 0.05


def _array(values: Sequence[float]) -> _FloatArray:
    sample = np.asarray(values, dtype=np.float64)
    if sample.ndim != 1:
        raise ValueError("a sample is a flat sequence of numbers")
    if not np.all(np.isfinite(sample)):
        raise ValueError("a sample holds finite numbers only")
    return sample


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"a confidence level lies strictly between 0 and 1, not {level}")


def _z(level: float) -> float:
    """The two-sided normal quantile for `level` (1.96 for 0.95)."""
    return float(scipy_stats.norm.ppf(0.5 + level / 2.0))


def _percentile_interval(statistics: _FloatArray, level: float) -> Interval:
    """The central `level` interval of bootstrap statistics, as empirical quantiles.

    Taken without interpolation (numpy's "inverted_cdf"): each bound is one of the bootstrap
    values, so an infinite ratio cannot turn an interpolated bound into NaN.
    """
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(statistics, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


@lru_cache(maxsize=512)
def _order_statistic(n: int, level: float) -> int | None:
    """The k (1-based) of the median interval [x_(k), x_(n-k+1)] for a sample of n, or None.

    That interval misses the median of a continuous distribution exactly when at most k-1 of
    the n values fall below it or at most k-1 above it, so its coverage is
    1 - 2 * P(Bin(n, 1/2) <= k - 1). Coverage falls as k grows; the largest k whose coverage is
    still at least `level` gives the narrowest interval that keeps the level.
    """
    candidates = np.arange(1, (n + 1) // 2 + 1)
    if candidates.size == 0:
        return None
    coverage = 1.0 - 2.0 * scipy_stats.binom.cdf(candidates - 1, n, 0.5)
    kept = np.flatnonzero(coverage >= level)
    return None if kept.size == 0 else int(candidates[kept[-1]])


def median_ci(values: Sequence[float], level: float = 0.95) -> Interval | None:
    """The median's distribution-free interval from order statistics.

    With the sample sorted as x_(1) <= ... <= x_(n), the interval is [x_(k), x_(n-k+1)] for the
    largest k >= 1 whose coverage 1 - 2 * P(Bin(n, 1/2) <= k - 1) is at least `level`. That
    coverage is exact for a continuous distribution and holds whatever its shape. When even
    k = 1 (the sample's minimum and maximum) falls short of the level, the sample is too small
    for an interval and the answer is None: at 95 %, for n <= 5.
    """
    _check_level(level)
    sample = np.sort(_array(values))
    k = _order_statistic(int(sample.size), level)
    if k is None:
        return None
    return float(sample[k - 1]), float(sample[sample.size - k])


def figure(values: Sequence[float]) -> Figure | None:
    """The summary of a sample, or None for an empty one."""
    sample = _array(values)
    if sample.size == 0:
        return None
    return Figure(
        n=int(sample.size),
        median=float(np.median(sample)),
        mean=float(np.mean(sample)),
        p90=float(np.percentile(sample, 90)),
        ci95=median_ci(values),
    )


def wilson(successes: int, total: int, level: float = 0.95) -> Interval | None:
    """The Wilson score interval of a proportion, clipped to [0, 1]; None when total == 0.

    "successes" are whichever events are counted: for an error rate, the failed probes.
    """
    _check_level(level)
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"{successes} of {total} is not a count of events")
    if total == 0:
        return None
    z = _z(level)
    p = successes / total
    z2n = z * z / total
    denominator = 1.0 + z2n
    centre = (p + z2n / 2.0) / denominator
    half = z * math.sqrt(p * (1.0 - p) / total + z2n / (4.0 * total)) / denominator
    # At 0 and at total the bounds are exactly 0 and 1; rounding would leave them a hair off.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == total else min(1.0, centre + half)
    return lo, hi


def mean_ci(
    values: Sequence[float],
    rng: np.random.Generator,
    resamples: int = 2000,
    level: float = 0.95,
) -> Interval | None:
    """The bootstrap percentile interval of the mean; None when n < 2."""
    _check_level(level)
    if resamples < 1:
        raise ValueError("a bootstrap needs at least one resample")
    sample = _array(values)
    if sample.size < 2:
        return None
    draws = sample[rng.integers(0, sample.size, size=(resamples, sample.size))]
    return _percentile_interval(draws.mean(axis=1), level)


def _ratios(slower: _FloatArray, faster: _FloatArray) -> _FloatArray:
    """slower / faster elementwise, with 0 / 0 = 1 (equal) and x / 0 = inf for x > 0."""
    out = np.full(slower.shape, np.inf)
    np.divide(slower, faster, out=out, where=faster > 0.0)
    out[(faster == 0.0) & (slower == 0.0)] = 1.0
    return out


def _bootstrap_medians(
    sample: _FloatArray, rng: np.random.Generator, resamples: int
) -> _FloatArray:
    """The medians of `resamples` resamples of the sample, drawn at once as one array."""
    draws = sample[rng.integers(0, sample.size, size=(resamples, sample.size))]
    medians: _FloatArray = np.median(draws, axis=1)
    return medians


def compare_medians(
    a: Sequence[float],
    b: Sequence[float],
    rng: np.random.Generator,
    resamples: int = 2000,
) -> PairTest | None:
    """Which of two samples has the lower median, by how much, and whether that is real.

    The ratio is median(slower) / median(faster). Its interval is a bootstrap percentile one,
    each sample resampled independently (all resamples at once, as a (resamples, n) array), and
    the ratio is recomputed on each pair of resampled medians with the sides fixed by the
    sample medians, so a resampled ratio can fall below 1. The verdict is "faster" only when
    that interval lies wholly above 1 and the two-sided Mann-Whitney U test gives p < 0.05.

    The values are durations and so must not be negative (ValueError otherwise); that keeps the
    ratio at or above 1. A zero median is handled without dividing by zero: equal medians
    (zero included) give ratio 1, and a zero faster median against a positive slower one gives
    an infinite ratio; the same rule applies to every bootstrap resample.

    None when either sample has fewer than 2 values.
    """
    if resamples < 1:
        raise ValueError("a bootstrap needs at least one resample")
    first, second = _array(a), _array(b)
    if first.size < 2 or second.size < 2:
        return None
    if np.any(first < 0.0) or np.any(second < 0.0):
        raise ValueError("durations are not negative")

    median_first, median_second = float(np.median(first)), float(np.median(second))
    faster = 0 if median_first <= median_second else 1
    quick, slow = (first, second) if faster == 0 else (second, first)
    point = _ratios(
        np.array([max(median_first, median_second)]), np.array([min(median_first, median_second)])
    )
    ratio = float(point[0])

    quick_medians = _bootstrap_medians(quick, rng, resamples)
    slow_medians = _bootstrap_medians(slow, rng, resamples)
    interval = _percentile_interval(_ratios(slow_medians, quick_medians), 0.95)

    p_value = float(scipy_stats.mannwhitneyu(first, second, alternative="two-sided").pvalue)
    if not math.isfinite(p_value):  # no information in the ranks: nothing to tell them apart
        p_value = 1.0
    verdict: Verdict = (
        "faster" if interval[0] > 1.0 and p_value < _SIGNIFICANCE else "indistinguishable"
    )
    return PairTest(faster=faster, ratio=ratio, ci95=interval, p_value=p_value, verdict=verdict)


def kpi_verdict(interval: Interval | None, threshold: float) -> KpiVerdict:
    """A KPI where lower is better, judged by its interval rather than its point estimate.

    "pass" when the whole interval lies below the threshold (hi < threshold), "fail" when it
    lies at or above it (lo >= threshold), "undetermined" when it straddles the threshold or
    there is no interval.
    """
    if interval is None:
        return "undetermined"
    lo, hi = interval
    if hi < threshold:
        return "pass"
    if lo >= threshold:
        return "fail"
    return "undetermined"


def smallest_n_to_pass_rate(threshold: float, level: float = 0.95) -> int:
    """How many failure-free probes it takes for the Wilson upper bound to fall below threshold.

    With no failures in n probes the Wilson upper bound is z^2 / (n + z^2), below the threshold
    t exactly when n > z^2 (1 - t) / t: about 380 probes for an error rate of 1 % at 95 %.
    The closed form gives the start; the answer is then settled against wilson() itself, so the
    two always agree.
    """
    _check_level(level)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"a rate threshold lies strictly between 0 and 1, not {threshold}")

    def passes(n: int) -> bool:
        interval = wilson(0, n, level)
        return interval is not None and interval[1] < threshold

    z2 = _z(level) ** 2
    n = max(1, math.floor(z2 * (1.0 - threshold) / threshold) + 1)
    while not passes(n):
        n += 1
    while n > 1 and passes(n - 1):
        n -= 1
    return n
