"""The record of live probe jobs: each open job's latest result and what its results added up to.

The ResultStore is the one owner of job state. The scheduler opens a job when it starts and
closes it when it ends (a reload, a listing or max_models dropped its model); every result or
skip of an open job is folded into the job's JobTally, and one of a closed job is refused. The
status page, the health rules and the `probe` command read the latest result and the failure
streak from it, and the exposition renders the probe series from the tallies of the open jobs
(exporter.exposition.probe_series), so a job's series exist exactly while the job does, and
the streak on the status page and the `ollama_probe_consecutive_failures` gauge are one value.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.gpu import ProbeGpuUsage
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.probe import BackendTimings, ProbeOutcome, Reason

# Histogram bounds of the probe series: a tally counts each observation into its bucket when it
# arrives, since the value itself is not kept.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
SKIP_REASONS = ("not_loaded", "residency_unknown", "overrun")
_REASONS = tuple(reason.value for reason in Reason)


@dataclass(frozen=True)
class FailureStreak:
    """A job's current run of failed probes.

    A failed answer check is not a failed probe (the model answered), and a skip did not probe,
    so neither changes the streak.
    """

    count: int = 0  # consecutive failed probes; 0 after a successful one
    since: float | None = None  # finished_at of the streak's first failed probe

    def after(self, item: ProbeResult | ProbeSkip) -> FailureStreak:
        if isinstance(item, ProbeSkip):
            return self
        if item.outcome.success:
            return FailureStreak()
        return FailureStreak(self.count + 1, self.since or item.finished_at)


@dataclass(frozen=True)
class JobState:
    """A job's latest result and its failure streak, read together."""

    latest: ProbeResult | ProbeSkip
    streak: FailureStreak


@dataclass(frozen=True)
class Buckets:
    """Observations per histogram bucket, not cumulative: one count per bound, then +Inf."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Buckets:
        return cls(bounds, (0,) * (len(bounds) + 1))

    def after(self, value: float) -> Buckets:
        counts = list(self.counts)
        counts[next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))] += 1
        return Buckets(self.bounds, tuple(counts), self.total + value)


GpuKey = tuple[int, str]  # (index, uuid)


@dataclass(frozen=True)
class JobTally:
    """Everything one job's results and skips added up to, as of one change.

    Never changed in place: each change makes a new tally with a new `version` (unique across
    the store), so a reader can keep one without a lock, and a renderer can tell which jobs
    changed since it last looked. Sums are floats, added in arrival order, as the series show.
    Counters by label start with every known label value at zero, in the order they became
    known; the exposition shows them in that order.
    """

    version: int
    probes: float = 0.0
    failures: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(_REASONS, 0.0))
    skips: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0.0))
    generated_tokens: float = 0.0
    eval_seconds: float = 0.0
    cold_starts: float = 0.0
    check_failures: Mapping[str, float] = field(default_factory=dict)
    duration: Buckets = field(default_factory=lambda: Buckets.empty(DURATION_BUCKETS))
    ttft: Buckets = field(default_factory=lambda: Buckets.empty(TTFT_BUCKETS))  # successes only
    streak: FailureStreak = field(default_factory=FailureStreak)
    # The last probe or skip that ran; an overrun is not a run (the run still in progress will
    # report), so it only counts.
    latest: ProbeResult | ProbeSkip | None = None
    last_probe: ProbeResult | None = None  # failed or not
    last_success: ProbeResult | None = None
    last_run_at: float | None = None  # Unix time the last probe or non-overrun skip ended
    interval_s: float | None = None  # the effective interval, known once the job ran
    cold_start: bool | None = None  # as the last probe that could tell found it
    last_ttft_s: float | None = None  # of the last successful probe that had one
    reported: BackendTimings | None = None  # of the last successful probe that had them
    tokens_per_second: float | None = None
    # Completion tokens over (end - first token), as the client saw the stream, of the last
    # successful probe that had a token count and a first token before its end.
    stream_tokens_per_second: float | None = None
    checks_passed: Mapping[str, bool] = field(default_factory=dict)  # as last answered
    gpu_utilization: Mapping[GpuKey, float] = field(default_factory=dict)
    gpu_memory_peak: Mapping[GpuKey, int] = field(default_factory=dict)
    gpu_energy: Mapping[GpuKey, float] = field(default_factory=dict)  # of the last success
    # Joules of all GPUs over the successful probes; None (no series) until the job is known
    # to run on GPUs with an energy counter.
    gpu_energy_total: float | None = None

    def with_energy(self, version: int) -> JobTally:
        """The tally with its energy counter, at zero if it had none."""
        return dataclasses.replace(
            self, version=version, gpu_energy_total=self.gpu_energy_total or 0.0
        )

    def with_checks(self, checks: Iterable[str], version: int) -> JobTally:
        """The tally with a zero failure counter for every check it did not know yet."""
        known = {**self.check_failures}
        for check in checks:
            known.setdefault(check, 0.0)
        return dataclasses.replace(self, version=version, check_failures=known)

    def after(self, item: ProbeResult | ProbeSkip, version: int) -> JobTally:
        """The tally with one more probe result or skip folded in."""
        if isinstance(item, ProbeSkip):
            return self._after_skip(item, version)
        outcome = item.outcome
        change: dict[str, object] = {
            "probes": self.probes + 1,
            "streak": self.streak.after(item),
            "latest": item,
            "last_probe": item,
            "last_run_at": item.finished_at,
            "interval_s": item.interval_s,
        }
        if item.cold_start is not None:
            change["cold_start"] = item.cold_start
        if item.cold_start:
            change["cold_starts"] = self.cold_starts + 1
        if outcome.reason is not None:
            change["failures"] = _plus(self.failures, outcome.reason.value, 1.0)
        else:
            change.update(self._success(item))
        return dataclasses.replace(self, version=version, **change)  # type: ignore[arg-type]

    def _after_skip(self, item: ProbeSkip, version: int) -> JobTally:
        skips = _plus(self.skips, item.reason, 1.0)
        if item.reason == "overrun":
            return dataclasses.replace(self, version=version, skips=skips)
        return dataclasses.replace(
            self,
            version=version,
            skips=skips,
            latest=item,
            last_run_at=item.finished_at,
            interval_s=item.interval_s,
        )

    def _success(self, result: ProbeResult) -> dict[str, object]:
        outcome, reported = result.outcome, result.outcome.reported
        change: dict[str, object] = {
            "last_success": result,
            "duration": self.duration.after(outcome.duration_s),
        }
        if outcome.ttft_s is not None:
            change["ttft"] = self.ttft.after(outcome.ttft_s)
            change["last_ttft_s"] = outcome.ttft_s
        if (rate := stream_rate(outcome)) is not None:
            change["stream_tokens_per_second"] = rate
        if reported is not None:
            change["reported"] = reported
            if reported.eval_count and reported.eval_s:
                change["generated_tokens"] = self.generated_tokens + reported.eval_count
                change["eval_seconds"] = self.eval_seconds + reported.eval_s
                change["tokens_per_second"] = reported.eval_count / reported.eval_s
        if result.checks:
            change["checks_passed"] = {**self.checks_passed, **result.checks}
            failures = {**self.check_failures}
            for check in (c for c, passed in result.checks.items() if not passed):
                failures[check] = failures.get(check, 0.0) + 1
            change["check_failures"] = failures
        change.update(self._gpu(result.gpu))
        return change

    def _gpu(self, usages: tuple[ProbeGpuUsage, ...]) -> dict[str, object]:
        if not usages:
            return {}
        utilization, peak = {**self.gpu_utilization}, {**self.gpu_memory_peak}
        energy = {**self.gpu_energy}
        for usage in usages:
            gpu = (usage.index, usage.uuid)
            if usage.mean_utilization_ratio is not None:
                utilization[gpu] = usage.mean_utilization_ratio
            if usage.peak_memory_used_bytes is not None:
                peak[gpu] = usage.peak_memory_used_bytes
            if usage.energy_joules is not None:
                energy[gpu] = usage.energy_joules
        change: dict[str, object] = {
            "gpu_utilization": utilization,
            "gpu_memory_peak": peak,
            "gpu_energy": energy,
        }
        joules = [u.energy_joules for u in usages if u.energy_joules is not None]
        if joules:
            total = self.gpu_energy_total or 0.0
            for value in joules:  # one addition per GPU, as a counter incremented per GPU
                total += value
            change["gpu_energy_total"] = total
        return change


def _plus(counts: Mapping[str, float], label: str, amount: float) -> dict[str, float]:
    return {**counts, label: counts.get(label, 0.0) + amount}


class ResultStore:
    """Thread-safe record of the open jobs and their tallies.

    Every change bumps `version` (and gives the changed tally that number), so a reader that
    saw a version knows whether anything changed since.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[JobKey, JobTally] = {}
        self._versions = itertools.count(1)
        self.version = 0

    def open(self, key: JobKey, checks: Iterable[str], *, energy: bool = False) -> None:
        """The job exists: its counters exist at zero; a known job keeps its values (and gets
        a zero counter for each new check). `energy`: the job's probes run on GPUs with an
        energy counter, so its energy counter exists too."""
        checks = tuple(checks)
        with self._lock:
            tally = self._jobs.get(key)
            if (
                tally is not None
                and all(c in tally.check_failures for c in checks)
                and (not energy or tally.gpu_energy_total is not None)
            ):
                return
            tally = (tally or JobTally(0)).with_checks(checks, self._bump())
            self._jobs[key] = tally.with_energy(self.version) if energy else tally

    def close(self, key: JobKey) -> None:
        """The job ended (whatever ended it): its tally, and so all its series, are gone."""
        with self._lock:
            if self._jobs.pop(key, None) is not None:
                self._bump()

    def record(self, item: ProbeResult | ProbeSkip) -> bool:
        """Fold a result or skip into its job; False (and no change) if the job is not open.

        A probe still in flight when a reload removed its job must not bring its series back.
        """
        with self._lock:
            tally = self._jobs.get(item.key)
            if tally is None:
                return False
            self._jobs[item.key] = tally.after(item, self._bump())
            return True

    def set_interval(self, key: JobKey, seconds: float) -> None:
        """A reload changed the job's interval: show it now, if the job has run (the interval
        is known only from the first run on)."""
        with self._lock:
            tally = self._jobs.get(key)
            if tally is not None and tally.interval_s is not None:
                self._jobs[key] = dataclasses.replace(
                    tally, version=self._bump(), interval_s=seconds
                )

    def tallies(self) -> tuple[int, dict[JobKey, JobTally]]:
        """The store's version and every open job's tally, in opening order, at one moment."""
        with self._lock:
            return self.version, dict(self._jobs)

    def get(self, key: JobKey) -> ProbeResult | ProbeSkip | None:
        with self._lock:
            tally = self._jobs.get(key)
            return None if tally is None else tally.latest

    def latest(self) -> dict[JobKey, ProbeResult | ProbeSkip]:
        with self._lock:
            return {k: t.latest for k, t in self._jobs.items() if t.latest is not None}

    def consecutive_failures(self, key: JobKey) -> int:
        """Failed probes in a row of `key` (0 for an unknown job)."""
        with self._lock:
            tally = self._jobs.get(key)
            return 0 if tally is None else tally.streak.count

    def states(self) -> dict[JobKey, JobState]:
        """Every job's latest result with its streak, from one consistent moment."""
        with self._lock:
            return {
                key: JobState(t.latest, t.streak)
                for key, t in self._jobs.items()
                if t.latest is not None
            }

    def _bump(self) -> int:
        self.version = next(self._versions)
        return self.version


def stream_rate(outcome: ProbeOutcome) -> float | None:
    """The client-side decode rate of a successful probe: completion tokens per second from
    the first token to the end of the stream. It includes the network and the server's
    batching, so it is not the server's decode rate (eval_count / eval_duration)."""
    reported, ttft = outcome.reported, outcome.ttft_s
    if reported is None or not reported.eval_count or ttft is None:
        return None
    streaming = outcome.duration_s - ttft
    return reported.eval_count / streaming if streaming > 0 else None
