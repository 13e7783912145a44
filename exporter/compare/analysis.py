"""From observations to the comparison: figures per (target, model, prompt), a test per pair of
models, the report's KPIs as verdicts, and a recommendation per (target, prompt).

Warm figures use successful probes of resident models only; cold starts are counted and their
load time summarised apart, so one load cannot move a median. Relative speed and pairs compare
models of one target on one prompt: another server's hardware says nothing about this one's.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from exporter.compare import stats
from exporter.compare.observations import Observation
from exporter.compare.stats import Figure, Interval, KpiVerdict
from exporter.probe_command import TargetState

MEAN_RESPONSE_LIMIT_S = 60.0
ERROR_RATE_LIMIT = 0.01
GPU_UTILIZATION_LIMIT = 0.80


@dataclass(frozen=True)
class Kpi:
    """One of the report's KPIs, judged with its interval rather than its point estimate."""

    name: str
    verdict: KpiVerdict
    estimate: float | None
    ci95: Interval | None
    why: str


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    sd: float


@dataclass(frozen=True)
class Checks:
    passed: int  # probes whose answer passed every check
    total: int  # successful probes with at least one check
    ci95: Interval | None


@dataclass(frozen=True)
class ModelFigures:
    target: str
    model: str
    prompt: str
    probes: int  # every probe, cold and failed included
    n: int  # warm successful probes: the sample behind duration, TTFT and tokens/s
    failures: dict[str, int]
    cold_starts: int
    unknown_residency: int  # successful probes whose residency could not be read
    cold_load: Figure | None  # the server's load time of the cold starts
    duration: Figure | None
    ttft: Figure | None
    tokens_per_second: Figure | None
    characters: Spread | None
    words: Spread | None
    checks: Checks
    vram_bytes: int | None  # the largest the server reported
    gpu_peak_memory_bytes: int | None  # the largest peak during its probes
    gpu_utilization: Figure | None  # per-probe mean utilisation
    kpis: tuple[Kpi, ...]
    relative_speed: float | None = None  # median(fastest) / median(this); 1 for the fastest
    relative_ci95: Interval | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)  # warm values, for charts

    @property
    def label(self) -> str:
        return f"{self.model} on {self.target}, prompt {self.prompt}"


@dataclass(frozen=True)
class Comparison:
    target: str
    prompt: str
    faster: str
    slower: str
    ratio: float
    ci95: Interval
    p_value: float
    verdict: stats.Verdict


@dataclass(frozen=True)
class Report:
    method: str  # how the figures were obtained, one sentence
    rounds: int | None
    per_visit: int | None
    seed: int | None
    targets: list[TargetState]
    results: list[ModelFigures]
    comparisons: list[Comparison]
    recommendations: list[str]
    notes: list[str]
    generated_at: float

    @property
    def ok(self) -> bool:
        """Every target listed, every probe succeeded and every answer passed its checks."""
        return (
            all(t.up for t in self.targets)
            and all(not r.failures for r in self.results)
            and all(r.checks.passed == r.checks.total for r in self.results)
        )


Group = tuple[str, str, str]


def analyse(
    observations: Iterable[Observation], seed: int, resamples: int = 2000
) -> tuple[list[ModelFigures], list[Comparison], list[str]]:
    """Figures, pairs and recommendations; the seed makes every bootstrap repeatable."""
    rng = np.random.default_rng(seed)
    groups: dict[Group, list[Observation]] = defaultdict(list)
    for o in observations:
        groups[(o.target, o.model, o.prompt)].append(o)
    figures = [_figures(key, obs, rng, resamples) for key, obs in sorted(groups.items())]
    figures, comparisons = _compare(figures, rng, resamples)
    return figures, comparisons, _recommend(figures, comparisons)


def _values(obs: Sequence[Observation], get: Callable[[Observation], float | None]) -> list[float]:
    """The values present, sorted: a bootstrap resamples by position and numpy sums pairwise,
    so the same probes in another order would otherwise give other intervals and means."""
    return sorted(v for o in obs if (v := get(o)) is not None)


def _figures(
    key: Group, obs: list[Observation], rng: np.random.Generator, resamples: int
) -> ModelFigures:
    warm = [o for o in obs if o.warm]
    ok = [o for o in obs if o.success]
    checked = [o for o in ok if o.checks]
    passed = sum(o.checks_passed for o in checked)
    samples = {
        "duration_s": _values(warm, lambda o: o.duration_s),
        "ttft_s": _values(warm, lambda o: o.ttft_s),
        "tokens_per_second": _values(warm, lambda o: o.tokens_per_second),
    }
    utilization = _values(warm, lambda o: o.gpu_utilization_ratio)
    return ModelFigures(
        target=key[0],
        model=key[1],
        prompt=key[2],
        probes=len(obs),
        n=len(warm),
        failures=dict(Counter(o.reason for o in obs if o.reason is not None)),
        cold_starts=sum(o.success and o.cold_start is True for o in obs),
        unknown_residency=sum(o.success and o.cold_start is None for o in obs),
        cold_load=stats.figure(_values(ok, lambda o: o.load_s if o.cold_start else None)),
        duration=stats.figure(samples["duration_s"]),
        ttft=stats.figure(samples["ttft_s"]),
        tokens_per_second=stats.figure(samples["tokens_per_second"]),
        characters=_spread(_values(ok, lambda o: o.characters)),
        words=_spread(_values(ok, lambda o: o.words)),
        checks=Checks(passed, len(checked), stats.wilson(passed, len(checked))),
        vram_bytes=_largest(o.vram_bytes for o in obs),
        gpu_peak_memory_bytes=_largest(o.gpu_peak_memory_bytes for o in ok),
        gpu_utilization=stats.figure(utilization),
        kpis=_kpis(samples["duration_s"], obs, utilization, rng, resamples),
        samples=samples,
    )


def _spread(values: list[float]) -> Spread | None:
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(len(values), statistics.fmean(values), sd)


def _largest(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _kpis(
    durations: list[float],
    obs: list[Observation],
    utilization: list[float],
    rng: np.random.Generator,
    resamples: int,
) -> tuple[Kpi, ...]:
    return (
        _mean_kpi(
            "mean response < 60 s", durations, MEAN_RESPONSE_LIMIT_S, rng, resamples, "warm probes"
        ),
        _error_rate_kpi(obs),
        _mean_kpi(
            "GPU utilisation < 80 %",
            utilization,
            GPU_UTILIZATION_LIMIT,
            rng,
            resamples,
            "warm probes with GPU readings",
        ),
    )


def _mean_kpi(
    name: str,
    values: list[float],
    limit: float,
    rng: np.random.Generator,
    resamples: int,
    what: str,
) -> Kpi:
    if not values:
        return Kpi(name, "undetermined", None, None, f"no {what}")
    ci = stats.mean_ci(values, rng, resamples)
    verdict = stats.kpi_verdict(ci, limit)
    why = f"mean of {len(values)} {what}, bootstrap 95 % interval"
    if ci is None:
        why = f"{len(values)} {what}: too few for an interval"
    elif verdict == "undetermined":
        why += " straddles the limit"
    return Kpi(name, verdict, statistics.fmean(values), ci, why)


def _error_rate_kpi(obs: list[Observation]) -> Kpi:
    name = "error rate < 1 %"
    failed = sum(not o.success for o in obs)
    ci = stats.wilson(failed, len(obs))
    if ci is None:
        return Kpi(name, "undetermined", None, None, "no probes")
    verdict = stats.kpi_verdict(ci, ERROR_RATE_LIMIT)
    why = f"{failed} of {len(obs)} probes failed, Wilson 95 % interval"
    if verdict == "undetermined" and failed == 0:
        needed = stats.smallest_n_to_pass_rate(ERROR_RATE_LIMIT)
        why += f"; {needed} failure-free probes are needed to show < 1 %"
    return Kpi(name, verdict, failed / len(obs), ci, why)


def _compare(
    figures: list[ModelFigures], rng: np.random.Generator, resamples: int
) -> tuple[list[ModelFigures], list[Comparison]]:
    """Pairs within each (target, prompt), and every model's speed relative to the fastest."""
    by_group: dict[tuple[str, str], list[ModelFigures]] = defaultdict(list)
    for f in figures:
        by_group[(f.target, f.prompt)].append(f)
    comparisons: list[Comparison] = []
    relative: dict[Group, tuple[float, Interval | None]] = {}
    for (target, prompt), members in sorted(by_group.items()):
        timed = sorted((m for m in members if m.duration), key=_median)
        for a, b in itertools.combinations(timed, 2):
            test = stats.compare_medians(
                a.samples["duration_s"], b.samples["duration_s"], rng, resamples
            )
            if test is not None:
                fast, slow = (a, b) if test.faster == 0 else (b, a)
                comparisons.append(
                    Comparison(
                        target,
                        prompt,
                        fast.model,
                        slow.model,
                        test.ratio,
                        test.ci95,
                        test.p_value,
                        test.verdict,
                    )
                )
        relative.update(_relative(timed, rng, resamples))
    updated = [_with_relative(f, relative.get((f.target, f.model, f.prompt))) for f in figures]
    return updated, comparisons


def _median(f: ModelFigures) -> float:
    return f.duration.median if f.duration else float("inf")


def _relative(
    timed: list[ModelFigures], rng: np.random.Generator, resamples: int
) -> dict[Group, tuple[float, Interval | None]]:
    if not timed:
        return {}
    fastest = timed[0]
    out: dict[Group, tuple[float, Interval | None]] = {
        (fastest.target, fastest.model, fastest.prompt): (1.0, None)
    }
    for other in timed[1:]:
        test = stats.compare_medians(
            fastest.samples["duration_s"], other.samples["duration_s"], rng, resamples
        )
        share = _reciprocal(_ratio(_median(other), _median(fastest)))
        ci = (
            (_reciprocal(test.ci95[1]), _reciprocal(test.ci95[0]))
            if test and test.faster == 0
            else None
        )
        out[(other.target, other.model, other.prompt)] = (share, ci)
    return out


def _ratio(slower: float, faster: float) -> float:
    """slower / faster as the statistics define it: 0 / 0 is 1 (equal), x / 0 is inf."""
    if faster > 0.0:
        return slower / faster
    return 1.0 if slower == 0.0 else float("inf")


def _reciprocal(ratio: float) -> float:
    """1 / ratio, with 1 / 0 as inf (a resampled slower median can be 0) and 1 / inf as 0."""
    return float("inf") if ratio == 0.0 else 1.0 / ratio


def _with_relative(f: ModelFigures, rel: tuple[float, Interval | None] | None) -> ModelFigures:
    if rel is None:
        return f
    return replace(f, relative_speed=rel[0], relative_ci95=rel[1])


def _recommend(figures: list[ModelFigures], comparisons: list[Comparison]) -> list[str]:
    groups = sorted({(f.target, f.prompt) for f in figures})
    return [_recommend_one(t, p, figures, comparisons) for t, p in groups]


def _recommend_one(
    target: str, prompt: str, figures: list[ModelFigures], comparisons: list[Comparison]
) -> str:
    where = f"{target}, prompt {prompt}"
    good = sorted(
        (
            f
            for f in figures
            if f.target == target
            and f.prompt == prompt
            and f.duration
            and f.duration.n >= 2
            and f.checks.passed == f.checks.total
        ),
        key=_median,
    )
    if not good:
        return f"{where}: no model passed all its checks with at least 2 warm probes."
    best = good[0]
    if len(good) == 1:
        return f"{where}: {best.model} is the only model that passed all its checks."
    second = good[1]
    pair = next(
        (
            c
            for c in comparisons
            if c.target == target
            and c.prompt == prompt
            and {c.faster, c.slower} == {best.model, second.model}
        ),
        None,
    )
    if pair and pair.verdict == "faster" and pair.faster == best.model:
        return (
            f"{where}: {best.model}, the fastest model that passed all its checks "
            f"({pair.ratio:.2f}x faster than {second.model}, 95 % CI "
            f"{pair.ci95[0]:.2f}-{pair.ci95[1]:.2f}, p = {pair.p_value:.3g})."
        )
    return (
        f"{where}: none is distinguishable from the next: {best.model} and {second.model} "
        "passed all their checks and their speeds cannot be told apart at this n; "
        "run more rounds."
    )
