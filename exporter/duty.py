"""Duty cycle: the share of a target's wall time spent serving probes, and the stretch that
keeps the schedule under max_duty_cycle.

A probe occupies an Ollama runner; a schedule whose probes take a large share of the time
degrades the service it is meant to watch. The limit applies per concurrency slot: a target
probed `concurrency_per_target` at a time has that many slots' worth of time. When the projected
duty (the sum over a target's jobs of last duration / interval, per slot) exceeds the limit,
every interval of the target is stretched by the factor that brings it back to the limit.

The measured duty adds up busy seconds in one-minute buckets rather than keeping every probe's
span: memory stays at most 61 numbers per target whatever the probe rate (one span per probe
grew to ~12 MB after an hour at 30 probes/s).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

WINDOW_S = 3600.0
BUCKET_S = 60.0


def _bucket(t: float) -> int:
    return math.floor(t / BUCKET_S)


class DutyCycle:
    """Measured and projected probe duty of one target.

    `ratio` is the probe wall time over the last hour (or since `start`, if shorter) divided by
    that elapsed time and by the number of slots. The window's oldest minute lies partly outside
    it; its busy seconds are assumed spread evenly over the minute and counted for the share
    inside. Against per-span
    accounting the error is therefore at most that one bucket's busy seconds over the elapsed
    time: at most 60 s per probe running in parallel, i.e. 0.017 of ratio per concurrent probe
    over a full hour.
    """

    def __init__(self, max_duty: float, start: float | None = None, slots: int = 1) -> None:
        self.max_duty = max_duty
        self.slots = slots  # concurrency_per_target: the ratios are per slot
        self.stretch = 1.0
        self.ratio = 0.0
        self.projected = 0.0
        self._since = time.time() if start is None else start
        self._lock = threading.Lock()
        # [minute index (Unix time // 60), busy seconds], oldest first.
        self._buckets: deque[list[float]] = deque()
        self._last: dict[str, tuple[float, float]] = {}
        self._notice = StretchNotice()

    @property
    def buckets(self) -> int:
        """How many minute buckets are held (at most 61 after an update)."""
        with self._lock:
            return len(self._buckets)

    def record(self, job: str, start: float, end: float, interval_s: float) -> None:
        """Note one probe's wall time span and the job's configured interval."""
        with self._lock:
            self._last[job] = (end - start, interval_s)
            # Seconds before the oldest bucket an update at `end` keeps can never count; skipping
            # them bounds the buckets one (hour-long) span can add.
            t = max(start, _bucket(end - WINDOW_S) * BUCKET_S)
            while t < end:
                index = _bucket(t)
                edge = min(end, (index + 1) * BUCKET_S)
                self._add(index, edge - t)
                t = edge
            self._prune(_bucket(end - WINDOW_S), None)

    def forget(self, job: str) -> None:
        with self._lock:
            self._last.pop(job, None)

    def update(self, now: float) -> str | None:
        """Recompute the measured ratio over the last hour and the stretch factor.

        Returns what the log should say about the stretch (see StretchNotice), if anything.
        """
        with self._lock:
            horizon = now - WINDOW_S
            oldest = _bucket(horizon)
            # Buckets after now's exist only if the clock went back; they are outside the window.
            self._prune(oldest, _bucket(now))
            busy = sum(seconds for _, seconds in self._buckets)
            if self._buckets and self._buckets[0][0] == oldest:
                inside = ((oldest + 1) * BUCKET_S - horizon) / BUCKET_S
                busy -= self._buckets[0][1] * (1.0 - inside)
            elapsed = max(min(WINDOW_S, now - self._since), 1e-9)
            self.ratio = busy / elapsed / self.slots
            self.projected = sum(d / i for d, i in self._last.values()) / self.slots
            self.stretch = max(1.0, self.projected / self.max_duty)
            return self._notice.update(self.stretch)

    def _add(self, index: int, seconds: float) -> None:
        # Spans are recorded as probes end, so they nearly always land in the newest bucket or
        # the one before; the walk from the right is a step or two.
        buckets = self._buckets
        pos = len(buckets)
        while pos and buckets[pos - 1][0] > index:
            pos -= 1
        if pos and buckets[pos - 1][0] == index:
            buckets[pos - 1][1] += seconds
        else:
            buckets.insert(pos, [index, seconds])

    def _prune(self, oldest: int, newest: int | None) -> None:
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest:
            buckets.popleft()
        while buckets and newest is not None and buckets[-1][0] > newest:
            buckets.pop()


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
