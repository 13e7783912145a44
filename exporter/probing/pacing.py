"""Pacing: how late each probe run starts, how long it keeps its target busy, and the interval
stretch that follows; the scheduler (exporter.probing.scheduler) decides which jobs exist.

Per run:
- start lag and queue wait: APScheduler hands the planned run time (jitter included) to the
  executor but not to the job, so each target's StampingExecutor notes it with the submission
  time. When the probe's request went out, the delay since the plan splits into queue wait
  (the run was submitted while its worker was still busy with another run of the target) and
  lag (the rest: waking a worker, a busy exporter's CPU, a slow /api/ps look-up).
- busy time: each probe's own measured duration (request sent to the done chunk, or to the
  failure; a timeout counts the timeout) is added to the target's busy counter and is the job's
  last duration in the target's DutyCycle. The time around it (the /api/ps look-up, waiting for
  the exposition lock, a busy exporter's CPU) is not Ollama's, and counting it stretched every
  interval under load. Skipped runs send nothing and count nothing.
- stretch: the DutyCycle's projection sets the factor every interval of the target is
  multiplied by (interval()), read by the triggers at each next-run computation.

The figures are kept per target as a PacingTally, which the exposition reads at scrape time
(exporter.exposition.exporter_series); a target's tally exists exactly while the target does.

interval() runs inside APScheduler's job store lock (through the trigger), so nothing here
takes the scheduler's lock: its state is read with single dict look-ups, and the tallies have a
lock of their own that no trigger takes.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor

from exporter.config import ProbeConfig
from exporter.probing.duty import DutyCycle
from exporter.probing.jobs import ProbeResult, ProbeSkip
from exporter.probing.runner import JobSpec

log = logging.getLogger(__name__)
# Upper bounds of the lag and queue-wait histograms: a millisecond to five minutes.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class Observed:
    """A histogram's state: observations per bucket (the last one above every bound), sum."""

    counts: tuple[int, ...] = (0,) * (len(LAG_BUCKETS) + 1)
    total: float = 0.0

    def add(self, value: float) -> Observed:
        i = bisect.bisect_left(LAG_BUCKETS, value)  # `le` bounds: a value on a bound is in it
        counts = (*self.counts[:i], self.counts[i] + 1, *self.counts[i + 1 :])
        return Observed(counts, self.total + value)


@dataclass(frozen=True)
class PacingTally:
    """One target's pacing figures since it was added."""

    slots: int
    stretch: float = 1.0
    busy_s: float = 0.0  # its probes' measured durations, summed
    lag: Observed = Observed()
    queue_wait: Observed = Observed()


class StampingExecutor(ThreadPoolExecutor):  # type: ignore[misc]
    """A target's probe workers, noting when each run was submitted and for which planned time.

    A plain bounded thread pool: at most `workers` threads (the target's concurrency slots),
    started as runs need them.
    """

    def __init__(self, workers: int, name: str, stamps: dict[str, tuple[float, float]]) -> None:
        super().__init__(workers, {"thread_name_prefix": name})
        self._stamps = stamps

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._stamps[job.id] = (run_times[-1].timestamp(), time.time())
        super()._do_submit_job(job, run_times)


@dataclass(frozen=True)
class Run:
    """One run's timing as its worker picked it up (Unix times)."""

    planned: float  # the trigger's time, jitter included
    submitted: float  # when APScheduler handed it to the target's pool
    slot_free: float  # when its worker was free for it (submitted, unless it waited)
    started: float  # when the worker began it


class Pacing:
    """Per-target lag, queue-wait and busy-time accounting, and the stretched intervals."""

    def __init__(self) -> None:
        self._stamps: dict[str, tuple[float, float]] = {}  # job id -> (planned, submitted)
        self._duty: dict[str, DutyCycle] = {}  # target name -> its duty cycle
        self._lock = threading.Lock()  # guards the tallies; never taken by a trigger
        self._tallies: dict[str, PacingTally] = {}
        self.version = 0  # bumped at every change of a tally

    def tallies(self) -> dict[str, PacingTally]:
        """Every live target's figures, in the order the targets were added."""
        with self._lock:
            return dict(self._tallies)

    def duty(self, target: str) -> DutyCycle | None:
        return self._duty.get(target)

    def executor(self, target: str, workers: int) -> StampingExecutor:
        """A new pool for a target's probe runs, stamping their submissions."""
        return StampingExecutor(workers, f"probe-{target}", self._stamps)

    def add_target(self, target: str, probe: ProbeConfig) -> None:
        duty = DutyCycle(probe.max_duty_cycle, probe.concurrency_per_target)
        self._duty[target] = duty
        with self._lock:
            self._tallies[target] = PacingTally(duty.slots)
            self.version += 1

    def reconfigure(self, target: str, probe: ProbeConfig) -> bool:
        """Apply a reload's probe settings to a kept target; True if its slot count changed
        (its pool must then be replaced)."""
        duty = self._duty[target]
        duty.max_duty = probe.max_duty_cycle
        resized = duty.slots != probe.concurrency_per_target
        duty.slots = probe.concurrency_per_target
        # The new limit or slot count applies to the stretch from the target's next run.
        with self._lock:
            tally = self._tallies.get(target)
            if tally is not None:
                self._tallies[target] = dataclasses.replace(tally, slots=duty.slots)
                self.version += 1
        return resized

    def remove_target(self, target: str) -> None:
        self._duty.pop(target, None)
        with self._lock:
            if self._tallies.pop(target, None) is not None:
                self.version += 1

    def forget(self, job_id: str, target: str) -> None:
        """A job ended: its last duration leaves the target's projection."""
        self._stamps.pop(job_id, None)
        duty = self._duty.get(target)
        if duty is not None:
            duty.forget(job_id)

    def interval(self, spec: JobSpec) -> float:
        """The job's effective interval: as configured, times its target's stretch."""
        duty = self._duty.get(spec.key.target)
        return spec.interval_s * (duty.stretch if duty is not None else 1.0)

    @contextlib.contextmanager
    def run(self, job_id: str) -> Iterator[Run]:
        """Time one run of a job on the worker thread running it."""
        started = time.time()
        planned, submitted = self._stamps.pop(job_id, (started, started))
        # A run waited for a slot only if this worker was still busy with another run when this
        # one was submitted; the rest of the delay (waking a worker, a busy exporter's CPU) is
        # lag, which is what the histogram must show.
        slot_free = max(submitted, getattr(_worker, "last_finished", submitted))
        try:
            yield Run(planned, submitted, slot_free, started)
        finally:
            _worker.last_finished = time.time()

    def began(self, target: str, run: Run, result: ProbeResult | ProbeSkip | None) -> None:
        """Publish the run's start lag and queue wait, once its probe is over."""
        begun = run.started
        if isinstance(result, ProbeResult):
            begun = result.finished_at - result.outcome.duration_s  # its request went out
        queue_wait = run.slot_free - run.submitted
        lag = max(begun - run.planned - queue_wait, 0.0)
        with self._lock:
            tally = self._tallies.get(target)
            if tally is not None:  # a run that outlived its target counts nowhere
                self._tallies[target] = dataclasses.replace(
                    tally, lag=tally.lag.add(lag), queue_wait=tally.queue_wait.add(queue_wait)
                )
                self.version += 1

    def ended(
        self, job_id: str, target: str, interval_s: float, result: ProbeResult | ProbeSkip
    ) -> None:
        """Count a finished run of a current job (its configured interval `interval_s`): its
        busy time, the new projection and stretch.

        The scheduler calls this under its lock, after checking the job still exists, so a run
        that outlived its job or target leaves neither a projection nor a series behind.
        """
        duty = self._duty.get(target)
        if duty is None:
            return
        busy = 0.0
        if isinstance(result, ProbeResult):
            busy = result.outcome.duration_s
            duty.record(job_id, busy, interval_s)
        notice = duty.update()
        if notice is not None:
            _log_stretch(target, duty, notice)
        with self._lock:
            tally = self._tallies.get(target)
            if tally is not None:
                self._tallies[target] = dataclasses.replace(
                    tally, busy_s=tally.busy_s + busy, stretch=duty.stretch
                )
                self.version += 1


def _log_stretch(target: str, duty: DutyCycle, notice: str) -> None:
    if notice == "ended":
        log.info(
            "target %s: probes fit max_duty_cycle %.0f%% again, intervals no longer stretched",
            target,
            duty.max_duty * 100,
        )
        return
    log.warning(
        "target %s: %s stretching probe intervals by %.2fx: at their configured intervals its "
        "probes would take %.0f%% of the time of each of its %d concurrency slot(s), above "
        "max_duty_cycle %.0f%%",
        target,
        "now" if notice == "changed" else "started",
        duty.stretch,
        duty.projected * 100,
        duty.slots,
        duty.max_duty * 100,
    )


# Per worker thread: when its last run ended (a run submitted before that waited for a slot).
_worker = threading.local()
