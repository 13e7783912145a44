"""Observations for the compare tests: a warm 1 s success unless told otherwise."""

from __future__ import annotations

from typing import Any

from exporter.compare.observations import Observation


def observation(
    duration_s: float | None = 1.0,
    *,
    target: str = "lab",
    model: str = "m",
    prompt: str = "p",
    reason: str | None = None,
    cold_start: bool | None = False,
    **extra: Any,
) -> Observation:
    """One probe; a warm success of 1 s unless told otherwise."""
    return Observation(
        target=target,
        model=model,
        prompt=prompt,
        finished_at=1_700_000_000.0,
        reason=reason,
        duration_s=duration_s,
        cold_start=cold_start,
        **extra,
    )
