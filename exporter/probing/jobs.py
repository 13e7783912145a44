"""A probe job, what one run of it produces, and where the scheduler records both.

The scheduler records into a JobLedger; the exporter's is the ResultStore (exporter.results),
which the exposition and the status page read. Probing knows only this interface, so its
imports never point downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from exporter.gpu import ProbeGpuUsage
from exporter.probing.probe import ProbeOutcome


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


class JobLedger(Protocol):
    """The record of the live jobs: a job's series exist from open() to close()."""

    def open(self, key: JobKey, checks: Iterable[str], *, energy: bool = False) -> None: ...

    def close(self, key: JobKey) -> None: ...

    def record(self, item: ProbeResult | ProbeSkip) -> bool: ...

    def set_interval(self, key: JobKey, seconds: float) -> None: ...

    def get(self, key: JobKey) -> ProbeResult | ProbeSkip | None: ...
