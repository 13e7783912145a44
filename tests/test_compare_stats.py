"""The comparison's statistics: intervals that keep their stated coverage, a pair verdict that
neither invents differences nor misses a plain one, and rate verdicts that admit too few probes.

The simulations are seeded, so each run draws the same samples; their bounds leave room for the
sampling noise of 1,000 draws, not for a wrong method.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from exporter.compare.stats import (
    Figure,
    compare_medians,
    figure,
    kpi_verdict,
    mean_ci,
    median_ci,
    smallest_n_to_pass_rate,
    wilson,
)

DRAWS = 1000
# A skewed distribution whose median is known: lognormal(mu, sigma) has median exp(mu).
MU, SIGMA = math.log(2.0), 0.6


def binomial_coverage(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n-k+1)) for a continuous distribution, by exact counting."""
    below = sum(math.comb(n, i) for i in range(k))  # at most k-1 of n values below the median
    return 1.0 - 2.0 * below / (1 << n)


# --- median_ci ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 30])
def test_the_median_interval_keeps_its_coverage_on_a_skewed_distribution(n: int) -> None:
    rng = np.random.default_rng(20240610 + n)
    true_median = math.exp(MU)
    hits = 0
    for _ in range(DRAWS):
        interval = median_ci(list(rng.lognormal(MU, SIGMA, n)))
        assert interval is not None
        hits += interval[0] <= true_median <= interval[1]
    assert 0.93 <= hits / DRAWS <= 0.995


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_a_sample_of_five_or_fewer_has_no_median_interval(n: int) -> None:
    assert median_ci([float(i) for i in range(n)]) is None


def test_six_values_are_the_fewest_with_an_interval_the_minimum_and_maximum() -> None:
    assert binomial_coverage(5, 1) < 0.95 <= binomial_coverage(6, 1)  # the rule, independently
    assert median_ci([4.0, 1.0, 6.0, 3.0, 5.0, 2.0]) == (1.0, 6.0)


def test_at_ten_values_the_interval_is_the_order_statistics_the_binomial_coverage_picks() -> None:
    n = 10
    # The largest k whose interval [x_(k), x_(n-k+1)] still covers at least 95 %.
    k = max(k for k in range(1, n // 2 + 1) if binomial_coverage(n, k) >= 0.95)
    values = [float(v) for v in np.random.default_rng(7).permutation(np.arange(100, 100 + n))]
    ordered = sorted(values)
    assert median_ci(values) == (ordered[k - 1], ordered[n - k])
    assert k == 2  # the textbook answer for n = 10, as a cross-check of the counting above


def test_a_lower_level_gives_a_narrower_interval() -> None:
    values = [float(v) for v in range(1, 31)]
    wide, narrow = median_ci(values, 0.99), median_ci(values, 0.80)
    assert wide is not None and narrow is not None
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_the_median_lies_within_its_interval() -> None:
    rng = np.random.default_rng(11)
    for n in range(6, 60):
        values = list(rng.exponential(1.0, n))
        interval = median_ci(values)
        assert interval is not None
        assert interval[0] <= float(np.median(values)) <= interval[1]


def test_a_level_outside_zero_and_one_is_refused() -> None:
    with pytest.raises(ValueError):
        median_ci([1.0] * 10, level=1.0)


# --- figure ------------------------------------------------------------------------------------


def test_a_figure_summarises_a_sample_in_plain_python_numbers() -> None:
    values = [float(v) for v in np.random.default_rng(3).lognormal(0.0, 0.5, 25)]
    summary = figure(values)
    assert summary is not None
    assert summary.n == 25
    assert summary.median == pytest.approx(sorted(values)[12])
    assert summary.mean == pytest.approx(math.fsum(values) / 25)
    assert summary.p90 == pytest.approx(float(np.percentile(values, 90)))
    assert summary.ci95 == median_ci(values)
    numbers = [summary.median, summary.mean, summary.p90, *(summary.ci95 or ())]
    assert all(type(x) is float for x in numbers)  # np.float64 is a float subclass: not enough
    assert type(summary.n) is int


def test_an_empty_sample_has_no_figure_and_a_small_one_no_interval() -> None:
    assert figure([]) is None
    assert figure([1.0, 2.0, 3.0]) == Figure(n=3, median=2.0, mean=2.0, p90=2.8, ci95=None)


# --- wilson and the rate verdicts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 30), (3, 30), (30, 30), (0, 381), (7, 200), (500, 1000)]
)
def test_wilson_agrees_with_scipys_binomial_test(k: int, n: int) -> None:
    oracle = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    interval = wilson(k, n)
    assert interval is not None
    assert interval[0] == pytest.approx(oracle.low, abs=1e-12)
    assert interval[1] == pytest.approx(oracle.high, abs=1e-12)
    assert 0.0 <= interval[0] <= k / n <= interval[1] <= 1.0


def test_wilson_honours_the_level_and_refuses_impossible_counts() -> None:
    oracle = scipy_stats.binomtest(4, 50).proportion_ci(confidence_level=0.8, method="wilson")
    assert wilson(4, 50, 0.8) == pytest.approx((oracle.low, oracle.high), abs=1e-12)
    with pytest.raises(ValueError):
        wilson(5, 4)
    with pytest.raises(ValueError):
        wilson(-1, 4)


def test_no_probes_give_no_rate_interval() -> None:
    assert wilson(0, 0) is None


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((0.001, 0.009), "pass"),
        ((0.0, 0.00999), "pass"),
        ((0.01, 0.2), "fail"),  # at the threshold counts against
        ((0.02, 0.05), "fail"),
        ((0.005, 0.02), "undetermined"),
        ((0.0, 0.01), "undetermined"),
        (None, "undetermined"),
    ],
)
def test_kpi_verdict(interval: tuple[float, float] | None, verdict: str) -> None:
    assert kpi_verdict(interval, 0.01) == verdict


def test_thirty_failure_free_probes_cannot_show_an_error_rate_below_one_percent() -> None:
    interval = wilson(0, 30)
    assert interval is not None and interval[1] >= 0.01
    assert kpi_verdict(interval, 0.01) == "undetermined"


def test_the_probes_needed_to_pass_a_one_percent_error_rate() -> None:
    n = smallest_n_to_pass_rate(0.01)
    enough, one_short = wilson(0, n), wilson(0, n - 1)
    assert enough is not None and one_short is not None
    assert enough[1] < 0.01 <= one_short[1]
    assert kpi_verdict(enough, 0.01) == "pass"
    assert kpi_verdict(one_short, 0.01) == "undetermined"
    assert 350 <= n <= 400  # "about 380", the rule of three's 300 widened by Wilson


@pytest.mark.parametrize(("threshold", "level"), [(0.05, 0.95), (0.001, 0.95), (0.01, 0.99)])
def test_the_probes_needed_hold_at_other_thresholds_and_levels(
    threshold: float, level: float
) -> None:
    n = smallest_n_to_pass_rate(threshold, level)
    enough, one_short = wilson(0, n, level), wilson(0, n - 1, level)
    assert enough is not None and one_short is not None
    assert enough[1] < threshold <= one_short[1]


# --- mean_ci -----------------------------------------------------------------------------------


def test_the_bootstrap_mean_interval_mostly_covers_the_true_mean() -> None:
    rng = np.random.default_rng(5)
    hits, draws = 0, 300
    for _ in range(draws):
        interval = mean_ci(list(rng.normal(10.0, 2.0, 30)), rng)
        assert interval is not None
        hits += interval[0] <= 10.0 <= interval[1]
    # The percentile bootstrap runs a little short of its level at n = 30.
    assert 0.88 <= hits / draws <= 0.99


def test_the_bootstrap_mean_interval_is_reproducible_and_needs_two_values() -> None:
    values = [1.0, 2.0, 4.0, 8.0, 16.0]
    first = mean_ci(values, np.random.default_rng(1))
    assert first == mean_ci(values, np.random.default_rng(1))
    assert first is not None and first[0] <= sum(values) / 5 <= first[1]
    assert all(type(x) is float for x in first)
    assert mean_ci([3.0], np.random.default_rng(1)) is None


# --- compare_medians ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 30])
def test_identical_distributions_are_called_indistinguishable(n: int) -> None:
    rng = np.random.default_rng(1000 + n)
    indistinguishable = 0
    for _ in range(DRAWS):
        a, b = rng.lognormal(MU, SIGMA, n), rng.lognormal(MU, SIGMA, n)
        result = compare_medians(list(a), list(b), rng)
        assert result is not None
        indistinguishable += result.verdict == "indistinguishable"
    assert indistinguishable / DRAWS >= 0.94


def test_a_thirty_percent_slower_model_is_found_and_named() -> None:
    rng = np.random.default_rng(30)
    right, ratios = 0, []
    for draw in range(DRAWS):
        quick = rng.normal(1.0, 0.1, 30)
        slow = rng.normal(1.3, 0.13, 30)
        # Alternate which side the quicker model is on, so "faster" must name it.
        a, b, expected = (quick, slow, 0) if draw % 2 == 0 else (slow, quick, 1)
        result = compare_medians(list(a), list(b), rng)
        assert result is not None
        right += result.verdict == "faster" and result.faster == expected
        ratios.append(result.ratio)
        assert result.ci95[0] <= result.ratio <= result.ci95[1]
    assert right / DRAWS >= 0.95
    assert float(np.median(ratios)) == pytest.approx(1.3, abs=0.02)
    assert min(ratios) > 1.1 and max(ratios) < 1.5


def test_a_pair_result_is_plain_python_and_reproducible() -> None:
    a, b = [1.0, 1.2, 0.9, 1.1, 1.05], [2.0, 2.2, 1.9, 2.1, 2.05]
    result = compare_medians(b, a, np.random.default_rng(9))
    assert result == compare_medians(b, a, np.random.default_rng(9))
    assert result is not None
    assert result.faster == 1
    assert result.ratio == pytest.approx(2.05 / 1.05)  # the medians
    expected_p = scipy_stats.mannwhitneyu(b, a, alternative="two-sided").pvalue
    assert result.p_value == pytest.approx(float(expected_p))
    numbers = [result.ratio, result.p_value, *result.ci95]
    assert all(type(x) is float for x in numbers) and type(result.faster) is int


def test_equal_medians_favour_the_first_sample_with_ratio_one() -> None:
    result = compare_medians([1.0, 2.0, 3.0], [0.5, 2.0, 9.0], np.random.default_rng(2))
    assert result is not None
    assert (result.faster, result.ratio, result.verdict) == (0, 1.0, "indistinguishable")


def test_a_zero_median_gives_an_infinite_ratio_not_a_division_error() -> None:
    rng = np.random.default_rng(4)
    result = compare_medians([2.0, 2.5, 3.0, 2.2], [0.0, 0.0, 0.0, 0.0], rng)
    assert result is not None
    assert result.faster == 1 and result.ratio == math.inf
    assert not any(math.isnan(x) for x in result.ci95)
    both_zero = compare_medians([0.0, 0.0, 1.0], [0.0, 0.0, 2.0], rng)
    assert both_zero is not None
    assert (both_zero.faster, both_zero.ratio) == (0, 1.0)
    assert not any(math.isnan(x) for x in both_zero.ci95)


def test_a_pair_needs_two_values_on_each_side_and_no_negative_durations() -> None:
    rng = np.random.default_rng(6)
    assert compare_medians([1.0], [1.0, 2.0], rng) is None
    assert compare_medians([1.0, 2.0], [], rng) is None
    with pytest.raises(ValueError):
        compare_medians([1.0, -2.0], [1.0, 2.0], rng)
