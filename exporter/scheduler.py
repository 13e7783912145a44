"""Background scheduling: probe jobs, health checks and inventory refreshes on APScheduler.

Each (target, model, prompt) is one job: at most one instance, coalesced, never dropped for
lateness. Its first run is at start-up, or when an inventory refresh or a reload adds it; first
runs are paced at STARTUP_RATE per second across the exporter, so many jobs added at once start
over a few seconds instead of as one burst (600 jobs within 12 s). Later runs follow the job's
effective interval plus a jitter of at most 10 %. Each target has its own pool of
concurrency_per_target worker threads, all started with it, so a slow target cannot starve
another, and jobs of one target queue for its slots. Health checks and inventory refreshes run
at once and are not paced.

The duty cycle counts each probe's own measured time (request sent to done chunk), not the
run's time in the exporter, so a busy exporter does not stretch the schedule.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from exporter.config import Config
from exporter.exposition import Exposition
from exporter.results import JobKey, ProbeResult, ProbeSkip, ResultStore
from exporter.runner import JobSpec, ProbeRunner
from exporter.targets import Target

log = logging.getLogger(__name__)
JITTER_RATIO = 0.1
# First runs planned per second across the exporter. Started all at once, 600 first runs (20
# targets at concurrency 30) started up to 1.8 s late and stayed clumped for many cycles, since
# later runs keep their phase. At 50 per second 3 jobs start within 60 ms and 600 within 12 s.
STARTUP_RATE = 50.0


class JitteredInterval(BaseTrigger):  # type: ignore[misc]
    """Fires at once (or at the Unix time not_before, if later), then every interval() seconds
    plus up to 10 % random jitter.

    The interval is read at each computation, so a stretched interval applies from the next run.
    """

    def __init__(
        self,
        interval: Callable[[], float],
        not_before: float | None = None,
    ) -> None:
        self._interval = interval
        self._not_before = not_before

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            if self._not_before is None:
                return now
            # The planned time is what the scheduler stamps, so the lag histogram measures
            # from it, not from the moment the job was added.
            return max(now, datetime.fromtimestamp(self._not_before, now.tzinfo))
        seconds = self._interval()
        return previous_fire_time + timedelta(
            seconds=seconds * (1 + random.uniform(0, JITTER_RATIO))
        )


class FixedThreadPool(BasePoolExecutor):  # type: ignore[misc]
    """A thread pool whose workers all start with it and live as long as it does.

    concurrent.futures starts a worker only when a run finds every worker busy, so a pool's
    thread count crept up for hours as rare bursts reached its bound. With every worker up
    front, the exporter's threads are fixed by its configuration from the start.
    """

    def __init__(self, workers: int, name: str) -> None:
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name)
        # Each worker holds the gate until all have arrived, so no submission finds an idle
        # worker and each one starts another, up to the bound.
        gate = threading.Barrier(workers)
        try:
            for _ in range(workers):
                pool.submit(gate.wait)
        except BaseException:
            gate.abort()  # a worker failed to start: release those already waiting
            pool.shutdown(wait=False)
            raise
        super().__init__(pool)


class StampingExecutor(FixedThreadPool):
    """A target's probe workers, noting when each run was submitted and for which planned time.

    APScheduler passes the planned run times (jitter included) to the executor but not to the
    job function; the stamp lets a job split its delay into scheduling lag and queue wait.
    """

    def __init__(self, workers: int, name: str, stamps: dict[str, tuple[float, float]]) -> None:
        super().__init__(workers, name)
        self._stamps = stamps

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._stamps[job.id] = (run_times[-1].timestamp(), time.time())
        super()._do_submit_job(job, run_times)


class ProbeScheduler:
    """Owns the APScheduler instance and the probe jobs of the current configuration."""

    def __init__(self, exposition: Exposition, store: ResultStore, runner: ProbeRunner) -> None:
        self._exposition = exposition
        self._store = store
        self._runner = runner
        self._stamps: dict[str, tuple[float, float]] = {}
        self._lock = threading.RLock()
        self._specs: dict[str, JobSpec] = {}
        self._first_done: set[str] = set()
        self._inventoried: set[str] = set()
        self._targets: dict[str, Target] = {}
        self._next_first_run = 0.0  # Unix time: the earliest slot for the next job's first run
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            executors={"default": FixedThreadPool(4, "exporter-upkeep")},
        )
        self._scheduler.add_listener(self._overrun, EVENT_JOB_MAX_INSTANCES)

    @property
    def config(self) -> Config:
        return self._runner.config

    def start(self, targets: list[Target]) -> None:
        for target in targets:
            self._add_target(target)
        self._scheduler.start()

    def shutdown(self, cancel: bool = True) -> None:
        """Stop scheduling; abort probes in flight unless a reload lets them finish."""
        self._scheduler.shutdown(wait=False)
        if cancel:
            self._runner.cancel_all()

    def job_keys(self) -> set[JobKey]:
        with self._lock:
            return {spec.key for spec in self._specs.values()}

    def ready(self) -> bool:
        """True once every target was inventoried and every job ran (or skipped) once."""
        with self._lock:
            return self._inventoried >= set(self._targets) and self._first_done >= set(self._specs)

    def _add_target(self, target: Target) -> None:
        with self._lock:
            self._targets[target.name] = target
            target.duty.max_duty = self.config.probe.max_duty_cycle
        self._exposition.register_target(target.name)
        self._scheduler.add_executor(
            StampingExecutor(
                self.config.probe.concurrency_per_target, f"probe-{target.name}", self._stamps
            ),
            alias=_executor(target.name),
        )
        self._scheduler.add_job(
            self._check_health,
            JitteredInterval(lambda: self.config.probe.health_interval),
            args=(target,),
            id=f"health:{target.name}",
        )
        self._scheduler.add_job(
            self._refresh_inventory,
            JitteredInterval(lambda: self._inventory_interval(target)),
            args=(target,),
            id=f"inventory:{target.name}",
        )

    def _inventory_interval(self, target: Target) -> float:
        # Until the first listing succeeds, retry at the (short) health interval.
        probe = self.config.probe
        return probe.inventory_interval if target.inventory is not None else probe.health_interval

    def _check_health(self, target: Target) -> None:
        probe = self.config.probe
        target.check_health(min(probe.health_interval, 5.0))

    def _refresh_inventory(self, target: Target) -> None:
        known = target.refresh_inventory(self.config, min(self.config.probe.timeout, 30.0))
        if known:
            self._reconcile(target)
            with self._lock:
                # Only a listing that succeeded tells which jobs readiness must wait for.
                self._inventoried.add(target.name)

    def _reconcile(self, target: Target) -> None:
        """Add jobs for new models, remove those of models that left the inventory."""
        inventory = target.inventory
        wanted = {
            f"probe:{target.name}:{model}:{prompt.id}": (model, prompt)
            for model in (inventory.models if inventory else {})
            for prompt in self.config.prompts
        }
        with self._lock:
            current = {j for j, s in self._specs.items() if s.key.target == target.name}
            for job_id in current - wanted.keys():
                self._remove_job(job_id)
            for job_id in sorted(wanted.keys() - current):
                model, prompt = wanted[job_id]
                key = JobKey(target.name, model, prompt.id)
                spec = JobSpec(key, target, prompt, self.config.interval_of(prompt))
                self._add_job(job_id, spec)

    def _add_job(self, job_id: str, spec: JobSpec) -> None:
        # Called with self._lock held, which keeps the first-run plan in order.
        self._specs[job_id] = spec
        self._exposition.register_job(spec.key, spec.prompt.checks.names())
        first = max(time.time(), self._next_first_run)
        self._next_first_run = first + 1 / STARTUP_RATE
        self._scheduler.add_job(
            self._run,
            JitteredInterval(lambda: self._effective_interval(spec), not_before=first),
            args=(job_id,),
            id=job_id,
            executor=_executor(spec.key.target),
        )

    def _remove_job(self, job_id: str) -> None:
        spec = self._specs.pop(job_id)
        self._first_done.discard(job_id)
        spec.target.duty.forget(job_id)
        self._scheduler.remove_job(job_id)
        self._exposition.remove_job(spec.key)
        self._store.forget({spec.key})

    def _effective_interval(self, spec: JobSpec) -> float:
        return spec.interval_s * spec.target.duty.stretch

    def _run(self, job_id: str) -> None:
        started = time.time()
        try:
            self._run_once(job_id, started)
        finally:
            _worker.last_finished = time.time()

    def _run_once(self, job_id: str, started: float) -> None:
        with self._lock:
            spec = self._specs.get(job_id)
        if spec is None:
            return  # removed while queued
        planned, submitted = self._stamps.pop(job_id, (started, started))
        # A run waited for a slot only if this worker was still busy with another run when this
        # one was submitted; the rest of the delay (waking a worker, a busy exporter's CPU) is
        # lag, which is what the histogram must show.
        slot_free = max(submitted, getattr(_worker, "last_finished", submitted))
        result = self._runner.run(spec, self._effective_interval(spec))
        begun = started
        if isinstance(result, ProbeResult):
            begun = result.finished_at - result.outcome.duration_s  # its request went out
        # Published after the probe: taking the exposition lock first could hold the probe's
        # start behind a scrape's render.
        queue_wait = slot_free - submitted
        self._exposition.schedule(spec.key.target, begun - planned - queue_wait, queue_wait)
        if result is None:
            return
        self._after_run(job_id, spec, result)

    def _after_run(self, job_id: str, spec: JobSpec, result: ProbeResult | ProbeSkip) -> None:
        duty = spec.target.duty
        if isinstance(result, ProbeResult):
            # The probe's own clock (request sent to done chunk, or to the failure). The time
            # around it (the /api/ps look-up, waiting for the exposition lock, a busy exporter's
            # CPU) is not Ollama's, and counting it stretched every interval under load.
            end = result.finished_at
            duty.record(job_id, end - result.outcome.duration_s, end, spec.interval_s)
        stretch_before = duty.stretch
        duty.update(time.time())
        if duty.stretch != stretch_before:
            log.warning(
                "target %s: probes would use %.0f%% of its time, stretching intervals "
                "by %.2fx (max_duty_cycle %.2f)",
                spec.key.target,
                duty.projected * 100,
                duty.stretch,
                duty.max_duty,
            )
        self._exposition.duty(spec.key.target, duty.ratio, duty.stretch)
        with self._lock:
            self._first_done.add(job_id)

    def _overrun(self, event: JobSubmissionEvent) -> None:
        with self._lock:
            spec = self._specs.get(event.job_id)
        if spec is None:
            return
        log.warning(
            "probe run skipped, the previous one is still queued or running: "
            "target=%s model=%s prompt=%s",
            *spec.key.labels(),
        )
        skip = ProbeSkip(
            spec.key,
            "overrun",
            "previous run still in progress",
            time.time(),
            self._effective_interval(spec),
        )
        self._exposition.skip(skip)


# Per worker thread: when its last run ended (a run submitted before that waited for a slot).
_worker = threading.local()


def _executor(target: str) -> str:
    return f"target:{target}"
