"""A target's health as the status page shows it, and the log lines of its transitions.

The health check runs every health_interval (15 s by default). Logging each failed check buried
the lines that matter during an outage, and recovery was silent, so the log now follows
transitions: one WARNING when a target goes down (with the reason), one INFO when it comes back
(with how long it was down). The very first check logs once either way: INFO "up" with the
Ollama version, or the WARNING of a target that is down from the start. Later checks that
change nothing log nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from exporter.redact import printable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetHealth:
    """What is known about a target's availability and listing at one moment."""

    up: bool | None = None  # None until the first health check ended
    since: float | None = None  # Unix time of the first check in the current up/down state
    version: str | None = None  # the version of the last successful check
    error: str | None = None  # the last failed check's error text, already redacted
    error_at: float | None = None
    failed_checks: int = 0  # consecutive failed health checks; 0 after a good one
    checks_made: int = 0  # health checks since the target was added, failed ones included
    checks_failed: int = 0  # of those, the ones that failed
    version_changes: int = 0  # checks that answered a version other than the one before
    listed_at: float | None = None  # Unix time of the last successful model listing
    listed_models: int | None = None  # models in that listing
    probed_models: int | None = None  # of those, the models that got probe jobs


class HealthTracker:
    """Thread-safe health state of one target; logs its up/down transitions."""

    def __init__(self, target: str, clock: Callable[[], float] = time.time) -> None:
        self._target = printable(target)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = TargetHealth()

    def snapshot(self) -> TargetHealth:
        with self._lock:
            return self._state

    def checked(self, version: str | None, error: str | None = None) -> None:
        """Record one health check: `version` when it answered, else the (redacted) error."""
        now = self._clock()
        with self._lock:
            before = self._state
            # A failed check keeps the last version, so an outage between two versions is one
            # change, and an outage alone is none.
            changed = version is not None and before.version not in (None, version)
            if version is not None:
                self._state = replace(
                    before,
                    up=True,
                    since=now if before.up is not True else before.since,
                    version=version,
                    failed_checks=0,
                    checks_made=before.checks_made + 1,
                    version_changes=before.version_changes + changed,
                )
            else:
                self._state = replace(
                    before,
                    up=False,
                    since=now if before.up is not False else before.since,
                    error=error or "unknown error",
                    error_at=now,
                    failed_checks=before.failed_checks + 1,
                    checks_made=before.checks_made + 1,
                    checks_failed=before.checks_failed + 1,
                )
            after = self._state
        self._log_transition(before, after, now)
        if changed:
            log.info(
                "target %s: Ollama version changed %s -> %s",
                self._target,
                printable(before.version or ""),
                printable(version or ""),
            )

    def listed(self, listed: int, probed: int) -> None:
        """Record a successful model listing: how many models it had, how many get jobs."""
        now = self._clock()
        with self._lock:
            self._state = replace(
                self._state, listed_at=now, listed_models=listed, probed_models=probed
            )

    def _log_transition(self, before: TargetHealth, after: TargetHealth, now: float) -> None:
        if before.up == after.up:
            if not after.up:
                log.debug(
                    "target %s: still down after %d failed health checks: %s",
                    self._target,
                    after.failed_checks,
                    printable(after.error or ""),
                )
            return
        if after.up:
            if before.up is None:
                log.info("target %s: up%s", self._target, _server(after.version))
            else:
                down_s = now - (before.since or now)
                log.info(
                    "target %s: recovered after %s down%s",
                    self._target,
                    duration_text(down_s),
                    _server(after.version),
                )
            return
        # The wording keeps "target X: health check failed", which operators already grep for.
        log.warning(
            "target %s: health check failed, now down: %s",
            self._target,
            printable(after.error or ""),
        )


def _server(version: str | None) -> str:
    """The log's mention of a server's version ("" for a protocol that has none)."""
    return f", Ollama {printable(version)}" if version else ""


def duration_text(seconds: float) -> str:
    """A short human duration: "42 s", "5 min 3 s", "2 h 5 min", "3 d 4 h"."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
