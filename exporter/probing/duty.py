"""Duty cycle: the projected share of a target's time its probes take, and the stretch that
keeps the schedule under max_duty_cycle.

A probe occupies an Ollama runner; a schedule whose probes take a large share of the time
degrades the service it is meant to watch. The limit applies per concurrency slot: a target
probed `concurrency_per_target` at a time has that many slots' worth of time. When the projected
duty (the sum over a target's jobs of last duration / interval, per slot) exceeds the limit,
every interval of the target is stretched by the factor that brings it back to the limit.

The measured duty is not kept here: the exporter counts each probe's duration in
ollama_exporter_probe_busy_seconds_total, and the ollama_exporter_probe_duty_cycle_ratio
recording rule (prometheus/rules/exporter.yml) divides its rate by the slots.
"""

from __future__ import annotations

import threading


class DutyCycle:
    """Projected probe duty of one target, and the stretch it calls for.

    `projected` is the sum over the target's jobs of (last duration / configured interval),
    divided by `slots`; `stretch` is max(1, projected / max_duty). Both change at update().
    """

    def __init__(self, max_duty: float, slots: int = 1) -> None:
        self.max_duty = max_duty
        self.slots = slots  # concurrency_per_target: the projection is per slot
        self.stretch = 1.0
        self.projected = 0.0
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, float]] = {}  # job -> (last duration, interval)
        self._notice = StretchNotice()

    def record(self, job: str, duration_s: float, interval_s: float) -> None:
        """Note one probe's measured duration and the job's configured interval."""
        with self._lock:
            self._last[job] = (duration_s, interval_s)

    def forget(self, job: str) -> None:
        with self._lock:
            self._last.pop(job, None)

    def update(self) -> str | None:
        """Recompute the projection and the stretch factor.

        Returns what the log should say about the stretch (see StretchNotice), if anything.
        """
        with self._lock:
            self.projected = sum(d / i for d, i in self._last.values()) / self.slots
            self.stretch = max(1.0, self.projected / self.max_duty)
            return self._notice.update(self.stretch)


# Stretch factors at which the log speaks: a stretch starts being reported at START (small
# stretches come and go as durations vary), and is reported again only when it moved by a factor
# of CHANGE either way, or when it ended. The factor itself always applies exactly.
START = 1.1
CHANGE = 1.5


class StretchNotice:
    """Hysteresis for the stretch log lines: a start, large changes and the end, not every wobble.

    Stretching once logged 10 lines in 2 minutes, four of them "1.00x".
    """

    def __init__(self) -> None:
        self.reported = 1.0  # the last stretch a log line reported; 1.0 = not stretched

    def update(self, stretch: float) -> str | None:
        """ "started", "changed" or "ended" when the log should say so, else None."""
        before = self.reported
        if before == 1.0:
            event = "started" if stretch >= START else None
        elif stretch <= 1.0:
            event = "ended"
        elif max(stretch / before, before / stretch) >= CHANGE:
            event = "changed"
        else:
            event = None
        if event is not None:
            self.reported = max(stretch, 1.0)
        return event
