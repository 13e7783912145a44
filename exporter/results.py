"""The values that cross from probing to exposition: job keys, probe results, skips.

The ResultStore keeps the latest result of every job and its failure streak (consecutive
failed probes) for the status page and the `probe` command; the metrics module keeps the
cumulative series. Both fold the same results with FailureStreak.after, so the status page's
streak and the `ollama_probe_consecutive_failures` gauge follow one rule.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.gpu import ProbeGpuUsage
from exporter.probe import ProbeOutcome


@dataclass(frozen=True, order=True)
class JobKey:
    """One probe job: a prompt sent to a model of a target (the label set of its series)."""

    target: str
    model: str
    prompt: str

    def labels(self) -> tuple[str, str, str]:
        return (self.target, self.model, self.prompt)


@dataclass(frozen=True)
class ProbeResult:
    """Everything one finished probe produced, published at once."""

    key: JobKey
    outcome: ProbeOutcome
    finished_at: float  # Unix time of the probe's end
    interval_s: float  # the job's effective interval when the probe ended
    cold_start: bool | None = None  # None: /api/ps failed, so it is unknown
    checks: Mapping[str, bool] = field(default_factory=dict)
    gpu: tuple[ProbeGpuUsage, ...] = ()
    vram_bytes: int | None = None  # the model's size_vram from /api/ps before the probe

    @property
    def response_characters(self) -> int:
        return len(self.outcome.answer)

    @property
    def response_words(self) -> int:
        return len(self.outcome.answer.split())


@dataclass(frozen=True)
class ProbeSkip:
    """A run that did not probe, and why (e.g. only_loaded and the model is not resident)."""

    key: JobKey
    reason: str
    detail: str
    finished_at: float
    interval_s: float


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


class ResultStore:
    """Thread-safe latest result and failure streak per job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[JobKey, ProbeResult | ProbeSkip] = {}
        self._streaks: dict[JobKey, FailureStreak] = {}

    def put(self, item: ProbeResult | ProbeSkip) -> None:
        with self._lock:
            self._latest[item.key] = item
            self._streaks[item.key] = self._streaks.get(item.key, FailureStreak()).after(item)

    def forget(self, keys: set[JobKey]) -> None:
        with self._lock:
            for key in keys:
                self._latest.pop(key, None)
                self._streaks.pop(key, None)

    def get(self, key: JobKey) -> ProbeResult | ProbeSkip | None:
        with self._lock:
            return self._latest.get(key)

    def latest(self) -> dict[JobKey, ProbeResult | ProbeSkip]:
        with self._lock:
            return dict(self._latest)

    def consecutive_failures(self, key: JobKey) -> int:
        """Failed probes in a row of `key` (0 for an unknown job)."""
        with self._lock:
            return self._streaks.get(key, FailureStreak()).count

    def states(self) -> dict[JobKey, JobState]:
        """Every job's latest result with its streak, from one consistent moment."""
        with self._lock:
            return {key: JobState(item, self._streaks[key]) for key, item in self._latest.items()}
