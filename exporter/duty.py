"""Duty cycle: the share of a target's wall time spent serving probes, and the stretch that
keeps the schedule under max_duty_cycle.

A probe occupies an Ollama runner; a schedule whose probes take a large share of the time
degrades the service it is meant to watch. When the projected duty (the sum over a target's
jobs of last duration / interval) exceeds the limit, every interval of the target is stretched
by the factor that brings it back to the limit.

The measured duty adds up busy seconds in one-minute buckets rather than keeping every probe's
span (one span per probe grew to ~12 MB after an hour at 30 probes/s). The buckets are a ring of
61 slots allocated with the target, so nothing is allocated as the first hour fills: a growing
list of buckets was a steady share of the exporter's RSS creep in the footprint soak.
"""

from __future__ import annotations

import math
import threading
import time
from array import array

WINDOW_S = 3600.0
BUCKET_S = 60.0
# The hour's 60 minutes and the oldest one, partly inside it. Any two minutes one window can
# hold differ by at most 60, so they never share a slot.
SLOTS = int(WINDOW_S // BUCKET_S) + 1
EMPTY = -(2**63)  # the minute index of a slot that holds none


def _bucket(t: float) -> int:
    return math.floor(t / BUCKET_S)


class DutyCycle:
    """Measured and projected probe duty of one target.

    `ratio` is the probe wall time over the last hour (or since `start`, if shorter) divided by
    that elapsed time. The window's oldest minute lies partly outside it; its busy seconds are
    assumed spread evenly over the minute and counted for the share inside. Against per-span
    accounting the error is therefore at most that one bucket's busy seconds over the elapsed
    time: at most 60 s per probe running in parallel, i.e. 0.017 of ratio per concurrent probe
    over a full hour.
    """

    def __init__(self, max_duty: float, start: float | None = None) -> None:
        self.max_duty = max_duty
        self.stretch = 1.0
        self.ratio = 0.0
        self.projected = 0.0
        self._since = time.time() if start is None else start
        self._lock = threading.Lock()
        # Slot minute % SLOTS holds that minute's busy seconds while _minute names it.
        self._minute = array("q", [EMPTY]) * SLOTS
        self._busy = array("d", [0.0]) * SLOTS
        self._last: dict[str, tuple[float, float]] = {}

    @property
    def buckets(self) -> int:
        """How many minute buckets are held (at most SLOTS)."""
        with self._lock:
            return sum(1 for minute in self._minute if minute != EMPTY)

    def record(self, job: str, start: float, end: float, interval_s: float) -> None:
        """Note one probe's wall time span and the job's configured interval."""
        with self._lock:
            self._last[job] = (end - start, interval_s)
            # Seconds before the oldest bucket an update at `end` keeps can never count; skipping
            # them keeps an hour-long span from wrapping round the ring onto its own minutes.
            t = max(start, _bucket(end - WINDOW_S) * BUCKET_S)
            while t < end:
                index = _bucket(t)
                edge = min(end, (index + 1) * BUCKET_S)
                self._add(index, edge - t)
                t = edge

    def forget(self, job: str) -> None:
        with self._lock:
            self._last.pop(job, None)

    def update(self, now: float) -> None:
        """Recompute the measured ratio over the last hour and the stretch factor."""
        with self._lock:
            horizon = now - WINDOW_S
            oldest, newest = _bucket(horizon), _bucket(now)
            inside = ((oldest + 1) * BUCKET_S - horizon) / BUCKET_S
            busy = 0.0
            for slot, minute in enumerate(self._minute):
                if minute == EMPTY:
                    continue
                # Minutes after now's exist only if the clock went back; they are outside too.
                if not oldest <= minute <= newest:
                    self._minute[slot] = EMPTY
                    continue
                busy += self._busy[slot] * (inside if minute == oldest else 1.0)
            elapsed = max(min(WINDOW_S, now - self._since), 1e-9)
            self.ratio = busy / elapsed
            self.projected = sum(d / i for d, i in self._last.values())
            self.stretch = max(1.0, self.projected / self.max_duty)

    def _add(self, index: int, seconds: float) -> None:
        slot = index % SLOTS
        if self._minute[slot] != index:
            # The slot is empty or holds a minute at least SLOTS away, which no window that
            # includes this one can count.
            self._minute[slot] = index
            self._busy[slot] = 0.0
        self._busy[slot] += seconds
