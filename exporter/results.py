"""The values that cross from probing to exposition: job keys, probe results, skips.

The ResultStore keeps the latest result of every job for the status page and the `probe`
command; the metrics module keeps the cumulative series.
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


class ResultStore:
    """Thread-safe latest result per job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[JobKey, ProbeResult | ProbeSkip] = {}

    def put(self, item: ProbeResult | ProbeSkip) -> None:
        with self._lock:
            self._latest[item.key] = item

    def forget(self, keys: set[JobKey]) -> None:
        with self._lock:
            for key in keys:
                self._latest.pop(key, None)

    def get(self, key: JobKey) -> ProbeResult | ProbeSkip | None:
        with self._lock:
            return self._latest.get(key)

    def latest(self) -> dict[JobKey, ProbeResult | ProbeSkip]:
        with self._lock:
            return dict(self._latest)
