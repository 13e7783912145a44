"""Duty cycle: the share of a target's wall time spent serving probes, and the stretch that
keeps the schedule under max_duty_cycle.

A probe occupies an Ollama runner; a schedule whose probes take a large share of the time
degrades the service it is meant to watch. When the projected duty (the sum over a target's
jobs of last duration / interval) exceeds the limit, every interval of the target is stretched
by the factor that brings it back to the limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_S = 3600.0


class DutyCycle:
    """Measured and projected probe duty of one target."""

    def __init__(self, max_duty: float, start: float | None = None) -> None:
        self.max_duty = max_duty
        self.stretch = 1.0
        self.ratio = 0.0
        self.projected = 0.0
        self._since = time.time() if start is None else start
        self._lock = threading.Lock()
        self._spans: deque[tuple[float, float]] = deque()
        self._last: dict[str, tuple[float, float]] = {}

    def record(self, job: str, start: float, end: float, interval_s: float) -> None:
        """Note one probe's wall time span and the job's configured interval."""
        with self._lock:
            self._spans.append((start, end))
            self._last[job] = (end - start, interval_s)

    def forget(self, job: str) -> None:
        with self._lock:
            self._last.pop(job, None)

    def update(self, now: float) -> None:
        """Recompute the measured ratio over the last hour and the stretch factor."""
        with self._lock:
            horizon = now - WINDOW_S
            while self._spans and self._spans[0][1] < horizon:
                self._spans.popleft()
            busy = sum(end - max(start, horizon) for start, end in self._spans)
            elapsed = max(min(WINDOW_S, now - self._since), 1e-9)
            self.ratio = busy / elapsed
            self.projected = sum(d / i for d, i in self._last.values())
            self.stretch = max(1.0, self.projected / self.max_duty)
