"""Start-up readiness: what `/-/ready` waits for, and what its 503 body says is still missing.

Ready means every target's first listing attempt has ended (success or failure) and every job
known at that moment has ended its first run (success, failure or skip). Once reached it stays:
a reload or a model appearing later adds jobs, but an exporter that served its first results
does not leave a load balancer's rotation for that.
"""

from __future__ import annotations

from exporter.probing.jobs import JobKey

# How many job names the 503 body lists before it only counts the rest.
SHOWN_JOBS = 5


class StartupReadiness:
    """Tracks the first listing of each target and the first run of each job known then.

    Not thread-safe: the scheduler calls it under its own lock.
    """

    def __init__(self) -> None:
        self._started = False
        self._ready = False
        self._listings: set[str] = set()  # targets whose first listing attempt has not ended
        self._first_runs: dict[str, JobKey] = {}  # job id -> key, first run not ended yet

    @property
    def ready(self) -> bool:
        return self._ready

    def started(self) -> None:
        """Every target of the start-up configuration was added."""
        self._started = True
        self._check()

    def target_added(self, target: str) -> None:
        if not self._ready:
            self._listings.add(target)

    def target_removed(self, target: str) -> None:
        self._listings.discard(target)
        self._first_runs = {j: k for j, k in self._first_runs.items() if k.target != target}
        self._check()

    def listing_ended(self, target: str, jobs: dict[str, JobKey]) -> None:
        """A target's listing attempt ended; `jobs` are its jobs known now."""
        if self._ready or target not in self._listings:
            return
        self._listings.discard(target)
        self._first_runs.update(jobs)
        self._check()

    def job_ran(self, job_id: str) -> None:
        self._first_runs.pop(job_id, None)
        self._check()

    job_removed = job_ran  # a job that no longer exists is not waited for

    def waiting_for(self) -> str | None:
        """None when ready, else what start-up still waits for, in words."""
        if self._ready:
            return None
        if not self._started:
            return "the scheduler to start"
        parts = []
        if self._listings:
            names = ", ".join(sorted(self._listings))
            parts.append(f"the first model listing of target(s) {names}")
        if self._first_runs:
            keys = sorted(self._first_runs.values())
            named = ", ".join("/".join(k.labels()) for k in keys[:SHOWN_JOBS])
            more = f" and {len(keys) - SHOWN_JOBS} more" if len(keys) > SHOWN_JOBS else ""
            parts.append(f"the first probe of {len(keys)} job(s): {named}{more}")
        return "; ".join(parts)

    def _check(self) -> None:
        if self._started and not self._listings and not self._first_runs:
            self._ready = True
