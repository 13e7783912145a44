"""One probe as the comparison sees it, whichever source it came from.

Both sources produce these: the live rounds (from the exporter's own ProbeResult) and the
record Prometheus holds (recovered from the last-probe gauges). Everything downstream of this
module works on observations only, so the statistics cannot tell the sources apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.probing.jobs import ProbeResult


@dataclass(frozen=True)
class Observation:
    """What one finished probe measured. `reason` is None exactly when it succeeded."""

    target: str
    model: str
    prompt: str
    finished_at: float  # Unix time
    reason: str | None
    duration_s: float | None  # wall time; failures included where the source has it
    ttft_s: float | None = None
    tokens_per_second: float | None = None  # the server's decode rate (eval_count / eval_s)
    load_s: float | None = None  # the server's load_duration
    cold_start: bool | None = None  # None: unknown
    characters: int | None = None
    words: int | None = None
    checks: Mapping[str, bool] = field(default_factory=dict)
    vram_bytes: int | None = None  # the model's VRAM from /api/ps before the probe
    gpu_peak_memory_bytes: int | None = None  # over the target's GPUs, summed
    gpu_utilization_ratio: float | None = None  # mean over the target's GPUs

    @property
    def success(self) -> bool:
        return self.reason is None

    @property
    def warm(self) -> bool:
        """A successful probe of a resident model: the only kind the warm figures use."""
        return self.success and self.cold_start is False

    @property
    def checks_passed(self) -> bool:
        return all(self.checks.values())


def from_result(result: ProbeResult) -> Observation:
    """The observation of one probe the exporter's own runner made."""
    outcome, reported = result.outcome, result.outcome.reported
    rate = None
    if outcome.success and reported and reported.eval_count and reported.eval_s:
        rate = reported.eval_count / reported.eval_s
    peaks = [g.peak_memory_used_bytes for g in result.gpu if g.peak_memory_used_bytes is not None]
    loads = [g.mean_utilization_ratio for g in result.gpu if g.mean_utilization_ratio is not None]
    return Observation(
        target=result.key.target,
        model=result.key.model,
        prompt=result.key.prompt,
        finished_at=result.finished_at,
        reason=None if outcome.success else str(outcome.reason),
        duration_s=outcome.duration_s,
        ttft_s=outcome.ttft_s if outcome.success else None,
        tokens_per_second=rate,
        load_s=reported.load_s if reported and outcome.success else None,
        cold_start=result.cold_start,
        characters=result.response_characters if outcome.success else None,
        words=result.response_words if outcome.success else None,
        checks=dict(result.checks) if outcome.success else {},
        vram_bytes=result.vram_bytes,
        gpu_peak_memory_bytes=sum(peaks) if peaks else None,
        gpu_utilization_ratio=sum(loads) / len(loads) if loads else None,
    )
