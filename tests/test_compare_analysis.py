"""The comparison's analysis: which probes the warm figures use, KPI verdicts that admit too few
probes, pairs within one target and prompt, the recommendation, and a repeatable outcome.

Every observation is synthetic, built by `observation()`; each expected number follows from the
input by arithmetic a reader can check, or is computed by the statistics module the analysis is
meant to call.
"""

from __future__ import annotations

import random

import pytest

from exporter.compare import stats
from exporter.compare.analysis import Comparison, Kpi, ModelFigures, Report, analyse
from exporter.compare.observations import Observation
from exporter.probe_command import TargetState
from tests.compare_samples import observation

SEED = 20261205
RESAMPLES = 500  # enough for stable intervals on the clear-cut samples below, and quick


def spread(centre: float, n: int = 20, step: float = 0.01) -> list[float]:
    """n distinct durations rising from `centre` by a `step` of it each: a tight sample whose
    median scales with `centre`, so spread(2 * c) is exactly twice spread(c)."""
    return [centre * (1.0 + i * step) for i in range(n)]


def run(observations: list[Observation]) -> tuple[list[ModelFigures], list[Comparison], list[str]]:
    return analyse(observations, SEED, RESAMPLES)


def only(figures: list[ModelFigures], model: str = "m", target: str = "lab") -> ModelFigures:
    [found] = [f for f in figures if (f.model, f.target) == (model, target)]
    return found


def kpi(figures: ModelFigures, starts: str) -> Kpi:
    [found] = [k for k in figures.kpis if k.name.startswith(starts)]
    return found


# --- which probes the warm figures use ---------------------------------------------------------


def test_warm_figures_use_only_successful_probes_of_resident_models() -> None:
    warm = [observation(d, ttft_s=d / 10, tokens_per_second=50.0) for d in (1.0, 2.0, 3.0)]
    cold = [observation(100.0, cold_start=True, load_s=load) for load in (7.0, 9.0)]
    unknown = [observation(200.0, cold_start=None), observation(300.0, cold_start=None)]
    failed = [
        observation(400.0, reason="timeout"),
        observation(500.0, reason="timeout", cold_start=True),
        observation(None, reason="refused", cold_start=None),
    ]
    figures, _, _ = run(warm + cold + unknown + failed)
    f = only(figures)

    assert f.probes == 3 + 2 + 2 + 3
    assert f.n == 3
    assert f.failures == {"timeout": 2, "refused": 1}
    assert f.cold_starts == 2  # the failed probe that had to load is not a cold start measured
    assert f.unknown_residency == 2
    assert f.duration is not None and f.ttft is not None and f.tokens_per_second is not None
    assert (f.duration.n, f.duration.median, f.duration.mean) == (3, 2.0, 2.0)
    assert sorted(f.samples["duration_s"]) == [1.0, 2.0, 3.0]
    assert f.ttft.median == pytest.approx(0.2)
    assert f.tokens_per_second.n == 3
    assert f.cold_load is not None
    assert (f.cold_load.n, f.cold_load.median) == (2, 8.0)


def test_a_model_with_no_warm_probe_has_counts_but_no_figures() -> None:
    figures, comparisons, _ = run(
        [observation(5.0, cold_start=True, load_s=4.0), observation(reason="timeout")]
    )
    f = only(figures)
    assert (f.probes, f.n, f.cold_starts) == (2, 0, 1)
    assert f.duration is None and f.ttft is None and f.tokens_per_second is None
    assert f.relative_speed is None and comparisons == []


# --- KPIs --------------------------------------------------------------------------------------


def test_thirty_failure_free_probes_leave_the_error_rate_undetermined_and_say_how_many_needed() -> (
    None
):
    figures, _, _ = run([observation() for _ in range(30)])
    rate = kpi(only(figures), "error rate")
    needed = stats.smallest_n_to_pass_rate(0.01)
    assert needed > 30  # the premise: 30 probes cannot show < 1 %
    assert rate.verdict == "undetermined"
    assert rate.estimate == 0.0
    assert f"{needed} failure-free probes" in rate.why


@pytest.mark.parametrize(
    ("probes", "failed", "verdict", "estimate"),
    [
        (500, 0, "pass", 0.0),
        (100, 10, "fail", 0.1),
        (30, 3, "fail", 0.1),
    ],
)
def test_the_error_rate_verdict_follows_its_wilson_interval(
    probes: int, failed: int, verdict: str, estimate: float
) -> None:
    observations = [observation() for _ in range(probes - failed)]
    observations += [observation(reason="http_error") for _ in range(failed)]
    figures, _, _ = run(observations)
    rate = kpi(only(figures), "error rate")
    assert rate.verdict == verdict
    assert rate.estimate == pytest.approx(estimate)
    assert rate.ci95 == stats.wilson(failed, probes)
    assert "failure-free probes are needed" not in rate.why


@pytest.mark.parametrize(
    ("durations", "verdict"),
    [
        (spread(2.0, 30, 0.1), "pass"),  # 2-7.8 s: far below 60 s
        (spread(120.0, 30), "fail"),  # 120-154.8 s: far above
        ([50.0, 70.0] * 15, "undetermined"),  # mean exactly 60 s
    ],
)
def test_the_mean_response_verdict_follows_its_interval(
    durations: list[float], verdict: str
) -> None:
    figures, _, _ = run([observation(d) for d in durations])
    mean = kpi(only(figures), "mean response")
    assert mean.verdict == verdict
    assert mean.estimate == pytest.approx(sum(durations) / len(durations))
    assert mean.ci95 is not None and mean.ci95[0] <= sum(durations) / len(durations) <= mean.ci95[1]


def test_the_mean_response_of_cold_starts_alone_is_undetermined() -> None:
    figures, _, _ = run([observation(300.0, cold_start=True) for _ in range(10)])
    mean = kpi(only(figures), "mean response")
    assert (mean.verdict, mean.estimate, mean.ci95) == ("undetermined", None, None)
    assert mean.why


def test_gpu_utilisation_without_readings_is_undetermined_with_a_why() -> None:
    figures, _, _ = run([observation() for _ in range(10)])
    gpu = kpi(only(figures), "GPU utilisation")
    assert (gpu.verdict, gpu.estimate, gpu.ci95) == ("undetermined", None, None)
    assert "GPU" in gpu.why


def test_gpu_utilisation_with_low_readings_passes() -> None:
    figures, _, _ = run([observation(gpu_utilization_ratio=0.3 + i / 100) for i in range(10)])
    f = only(figures)
    assert kpi(f, "GPU utilisation").verdict == "pass"
    assert f.gpu_utilization is not None and f.gpu_utilization.n == 10


# --- answer checks -----------------------------------------------------------------------------


def test_checks_count_probes_that_passed_every_check_among_the_checked_successes() -> None:
    both = {"potassium": True, "length": True}
    one_failed = {"potassium": True, "length": False}
    observations = [observation(checks=both) for _ in range(4)]
    observations += [observation(checks=one_failed) for _ in range(2)]
    observations += [observation()]  # no check configured: not in the total
    observations += [observation(reason="timeout", checks={"potassium": False})]  # a failure
    figures, _, _ = run(observations)
    checks = only(figures).checks
    assert (checks.passed, checks.total) == (4, 6)
    assert checks.ci95 is not None
    assert checks.ci95 == stats.wilson(4, 6)
    assert checks.ci95[0] < 4 / 6 < checks.ci95[1]


def test_no_checks_give_no_interval() -> None:
    figures, _, _ = run([observation() for _ in range(5)])
    checks = only(figures).checks
    assert (checks.passed, checks.total, checks.ci95) == (0, 0, None)


# --- pairs and relative speed ------------------------------------------------------------------


def two_targets() -> list[Observation]:
    """The same two models on two targets; on `gpu` m1 is the faster, on `lab` m2, and every
    probe on `gpu` is faster than every probe on `lab`."""
    times = {("gpu", "m1"): 1.0, ("gpu", "m2"): 2.0, ("lab", "m1"): 20.0, ("lab", "m2"): 10.0}
    return [
        observation(d, target=target, model=model)
        for (target, model), centre in times.items()
        for d in spread(centre)
    ]


def test_pairs_stay_within_one_target_and_prompt() -> None:
    _, comparisons, _ = run(two_targets())
    assert sorted((c.target, c.faster, c.slower) for c in comparisons) == [
        ("gpu", "m1", "m2"),
        ("lab", "m2", "m1"),
    ]


def test_relative_speed_is_one_for_the_fastest_of_each_target() -> None:
    figures, _, _ = run(two_targets())
    assert only(figures, "m1", "gpu").relative_speed == 1.0
    assert only(figures, "m2", "lab").relative_speed == 1.0


def test_a_model_twice_as_slow_has_half_the_speed_with_an_interval_below_one() -> None:
    fast = spread(1.0)
    observations = [observation(d, model="quick") for d in fast]
    observations += [observation(2 * d, model="slow") for d in fast]
    figures, comparisons, _ = run(observations)
    slow = only(figures, "slow")
    assert slow.relative_speed == pytest.approx(0.5)
    assert slow.relative_ci95 is not None
    lo, hi = slow.relative_ci95
    assert lo <= 0.5 <= hi < 1.0
    [pair] = comparisons
    assert (pair.faster, pair.slower, pair.verdict) == ("quick", "slow", "faster")
    assert pair.ratio == pytest.approx(2.0)


def test_models_with_zero_median_durations_are_equally_fast() -> None:
    # The statistics define 0 / 0 as 1 (equal); relative speed must follow, not divide by zero.
    observations = [observation(0.0, model=m) for m in ("a", "b") for _ in range(5)]
    figures, [pair], _ = run(observations)
    assert [f.relative_speed for f in figures] == [1.0, 1.0]
    assert (pair.ratio, pair.verdict) == (1.0, "indistinguishable")


def test_prompts_are_compared_apart() -> None:
    observations = [observation(d, model="a", prompt="short") for d in spread(1.0)]
    observations += [observation(d, model="b", prompt="long") for d in spread(10.0)]
    figures, comparisons, recommendations = run(observations)
    assert comparisons == []
    assert [f.relative_speed for f in figures] == [1.0, 1.0]
    assert len(recommendations) == 2


# --- recommendation ----------------------------------------------------------------------------

PASS, FAIL = {"answer": True}, {"answer": False}


def models(centres: dict[str, float], failing: frozenset[str] = frozenset()) -> list[Observation]:
    """Twenty warm probes per model around its centre; a failing model fails one probe's check."""
    out: list[Observation] = []
    for model, centre in centres.items():
        for i, d in enumerate(spread(centre)):
            bad = model in failing and i == 0
            out.append(observation(d, model=model, checks=FAIL if bad else PASS))
    return out


def test_the_recommendation_names_the_fastest_model_that_passed() -> None:
    _, _, [line] = run(models({"alpha": 1.0, "bravo": 2.0, "charlie": 4.0}))
    assert line.startswith("lab, prompt p: alpha, the fastest model that passed all its checks")
    assert "2.00x faster than bravo" in line


def test_when_the_fastest_fails_a_check_the_next_one_is_recommended() -> None:
    _, _, [line] = run(
        models({"alpha": 1.0, "bravo": 2.0, "charlie": 4.0}, failing=frozenset({"alpha"}))
    )
    assert line.startswith("lab, prompt p: bravo, the fastest model that passed all its checks")
    assert "2.00x faster than charlie" in line
    assert "alpha" not in line


def test_indistinguishable_leaders_are_not_ranked() -> None:
    _, _, [line] = run(models({"alpha": 1.0, "bravo": 1.0, "charlie": 4.0}))
    assert "none is distinguishable" in line
    assert "alpha" in line and "bravo" in line and "charlie" not in line


def test_the_only_model_that_passed_is_named_as_such() -> None:
    _, _, [line] = run(models({"alpha": 1.0, "bravo": 2.0}, failing=frozenset({"alpha"})))
    assert line == "lab, prompt p: bravo is the only model that passed all its checks."


def test_no_model_passing_is_said() -> None:
    _, _, [line] = run(models({"alpha": 1.0, "bravo": 2.0}, failing=frozenset({"alpha", "bravo"})))
    assert "no model passed" in line
    assert "alpha" not in line and "bravo" not in line


def test_a_model_with_one_warm_probe_is_not_recommended() -> None:
    _, _, [line] = run([observation(1.0, model="alpha", checks=PASS)])
    assert "no model passed" in line


# --- determinism -------------------------------------------------------------------------------


def mixed() -> list[Observation]:
    """Three models of uneven speed, spread, checks, failures and cold starts on two targets."""
    rng = random.Random(7)
    out: list[Observation] = []
    for target in ("lab", "gpu"):
        for model, centre in (("a", 1.0), ("b", 1.1), ("c", 3.0)):
            for i in range(15):
                out.append(
                    observation(
                        centre * rng.lognormvariate(0.0, 0.3),
                        target=target,
                        model=model,
                        ttft_s=rng.uniform(0.1, 0.3),
                        tokens_per_second=rng.uniform(20.0, 60.0),
                        gpu_utilization_ratio=rng.uniform(0.5, 0.9),
                        checks={"answer": i != 3 or model != "a"},
                    )
                )
            out.append(observation(reason="timeout", target=target, model=model))
            out.append(observation(9.0, target=target, model=model, cold_start=True, load_s=5.0))
    return out


def test_the_same_seed_gives_the_same_result() -> None:
    assert run(mixed()) == run(mixed())


def test_the_order_of_the_observations_does_not_change_the_result() -> None:
    shuffled = mixed()
    random.Random(1).shuffle(shuffled)
    assert run(shuffled) == run(mixed())


# --- Report.ok ---------------------------------------------------------------------------------


def report(targets: list[TargetState], observations: list[Observation]) -> Report:
    figures, comparisons, recommendations = run(observations)
    return Report(
        method="synthetic observations",
        rounds=None,
        per_visit=None,
        seed=SEED,
        targets=targets,
        results=figures,
        comparisons=comparisons,
        recommendations=recommendations,
        notes=[],
        generated_at=1_700_000_000.0,
    )


UP = TargetState("lab", up=True)
CLEAN = [observation(checks=PASS) for _ in range(3)]


@pytest.mark.parametrize(
    ("targets", "observations", "ok"),
    [
        ([UP], CLEAN, True),
        ([UP], [*CLEAN, observation(cold_start=True), observation(cold_start=None)], True),
        ([UP, TargetState("gpu", up=False, error="connection refused")], CLEAN, False),
        ([UP], [*CLEAN, observation(reason="timeout")], False),
        ([UP], [*CLEAN, observation(checks={"answer": True, "length": False})], False),
    ],
    ids=["clean", "cold-and-unknown", "target-down", "a-failure", "a-failed-check"],
)
def test_the_report_is_ok_only_with_every_target_up_every_probe_and_check_passed(
    targets: list[TargetState], observations: list[Observation], ok: bool
) -> None:
    assert report(targets, observations).ok is ok
