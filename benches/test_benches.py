"""Checks of the benchmarks' own statistics and matching, which the recorded figures rely on."""

from __future__ import annotations

import pytest

from benches import fidelity
from benches.common import Section, Summary, quantile, slope_with_error
from benches.scheduler import match_plans


def test_statistics_helpers() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.99) == 99.0  # nearest rank, no interpolation
    assert Summary.of(values).median == 50.5
    slope, error = slope_with_error([(t * 60.0, 2.0 * t) for t in range(10)])
    assert slope == pytest.approx(120.0) and error == pytest.approx(0.0, abs=1e-9)


def test_fidelity_counts_the_gaps_past_the_p99_limit() -> None:
    # 3 of 200 gaps past 5 ms: the p99 (the 198th smallest) is one of them, so the verdict fails.
    tail = [0.0051, 0.006, 0.02]
    gaps = fidelity.Gaps(total=[0.0004] * 197 + tail, ttft=[0.0004] * 199 + [0.02])
    section = Section("fidelity", "fidelity", "full")
    fidelity._judge(section, "4 targets at once", gaps)
    total, ttft = section.figures
    assert total.value.endswith("; 3 over 5 ms") and total.ok is False, total
    assert ttft.value.endswith("; 1 over 5 ms") and ttft.ok is True, ttft


def test_plans_are_matched_to_the_job_whose_requests_follow_them() -> None:
    plans = {"0xa": [0.0, 61.0, 125.0], "0xb": [0.0, 63.0, 122.0]}
    receipts = {(0, "m", "p"): [0.01, 63.02, 122.01], (1, "m", "p"): [0.02, 61.01, 125.03]}
    assert match_plans(plans, receipts) == {"0xa": (1, "m", "p"), "0xb": (0, "m", "p")}
