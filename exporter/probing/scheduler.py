"""Background scheduling: probe jobs, health checks and inventory refreshes on APScheduler.

Each (target, model, prompt) is one job: at most one instance, coalesced, never dropped for
lateness. Its first run is at start-up, or when an inventory refresh or a reload adds it; a
reload leaves the schedule of every job it keeps alone. First runs are paced at STARTUP_RATE
per second across the exporter, so many jobs added at once start over a few seconds instead of
as one burst (600 jobs within 12 s). Later runs follow the job's
effective interval plus a jitter of at most 10 %. Each target has its own pool of
at most concurrency_per_target worker threads, so a slow target cannot starve
another, and jobs of one target queue for its slots. Health checks and inventory refreshes run
at once and are not paced. A target's first listing is at start-up; after a listing that
succeeded the next is an inventory_interval later, after one that failed a health_interval.

This module owns the jobs' lifecycle (added, updated, replanned, moved, removed). How late
runs start, how busy they keep a target and how far that stretches its intervals is
exporter.probing.pacing's, which every run goes through.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from exporter.config import Config
from exporter.probing.jobs import JobKey, JobLedger, ProbeSkip
from exporter.probing.pacing import Pacing
from exporter.probing.readiness import StartupReadiness
from exporter.probing.runner import JobSpec, ProbeRunner
from exporter.probing.targets import Target

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


class ProbeScheduler:
    """Owns the APScheduler instance and the probe jobs of the current configuration.

    One per process: a reload applies the new configuration to it (apply()), so every job it
    keeps keeps its schedule, and every job that ends, whatever ended it, leaves through
    _remove_job, which removes its series and its status row at once.
    """

    def __init__(self, store: JobLedger, runner: ProbeRunner, pacing: Pacing) -> None:
        self._store = store
        self._runner = runner
        self.pacing = pacing
        self._lock = threading.RLock()
        self._specs: dict[str, JobSpec] = {}
        self._readiness = StartupReadiness()
        self._targets: dict[str, Target] = {}
        self._next_first_run = 0.0  # Unix time: the earliest slot for the next job's first run
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            executors={"default": ThreadPoolExecutor(4, {"thread_name_prefix": "exporter-upkeep"})},
        )
        self._scheduler.add_listener(self._overrun, EVENT_JOB_MAX_INSTANCES)

    @property
    def config(self) -> Config:
        return self._runner.config

    def start(self, targets: list[Target]) -> None:
        for target in targets:
            self._add_target(target)
        with self._lock:
            self._readiness.started()
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop scheduling and abort the probes in flight."""
        self._scheduler.shutdown(wait=False)
        self._runner.cancel_all()

    def apply(self, config: Config, targets: list[Target]) -> None:
        """Switch to a reloaded configuration, changing only what changed.

        `targets` are the new configuration's targets: an unchanged target is the same object
        as before. Jobs that remain keep their schedule and series; only jobs the reload adds
        get a first run. Scheduling pauses meanwhile, so no run starts half-way through.
        """
        self._scheduler.pause()
        try:
            with self._lock:
                self._runner.config = config
                wanted = {t.name: t for t in targets}
                for name, old in list(self._targets.items()):
                    if wanted.get(name) is not old:
                        self._remove_target(name)
                for target in targets:
                    if target.name in self._targets:
                        self._reconfigure(target)
                        target.reselect(config, min(config.probe.timeout, 30.0))
                        self._reconcile(target)
                    else:
                        self._add_target(target)
        finally:
            self._scheduler.resume()

    def ready(self) -> bool:
        """True once start-up is over (see exporter.probing.readiness)."""
        with self._lock:
            return self._readiness.ready

    def waiting_for(self) -> str | None:
        """None when ready, else what start-up still waits for."""
        with self._lock:
            return self._readiness.waiting_for()

    def _add_target(self, target: Target) -> None:
        with self._lock:
            self._targets[target.name] = target
            self._readiness.target_added(target.name)
        self.pacing.add_target(target.name, self.config.probe)
        self._add_executor(target)
        self._scheduler.add_job(
            self._check_health,
            JitteredInterval(lambda: self.config.probe.health_interval),
            args=(target,),
            id=f"health:{target.name}",
        )
        # Each listing plans the next itself (_plan_next_listing), from how it ended.
        self._scheduler.add_job(
            self._refresh_inventory,
            JitteredInterval(lambda: self.config.probe.inventory_interval),
            args=(target,),
            id=_inventory(target.name),
        )

    def _reconfigure(self, target: Target) -> None:
        """Apply changed probe settings to a kept target's pacing and worker pool."""
        if self.pacing.reconfigure(target.name, self.config.probe):
            # A pool's size is fixed: a new one replaces it. The scheduler is paused (apply()),
            # so no job is looked up while the alias is briefly missing.
            self._scheduler.remove_executor(_executor(target.name), shutdown=False)
            self._add_executor(target)

    def _add_executor(self, target: Target) -> None:
        self._scheduler.add_executor(
            self.pacing.executor(target.name, self.config.probe.concurrency_per_target),
            alias=_executor(target.name),
        )

    def _remove_target(self, name: str) -> None:
        # Called with self._lock held.
        target = self._targets.pop(name)
        for job_id in [j for j, s in self._specs.items() if s.target is target]:
            self._remove_job(job_id)
        for job_id in (f"health:{name}", _inventory(name)):
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(job_id)
        self._scheduler.remove_executor(_executor(name), shutdown=False)
        self.pacing.remove_target(name)
        self._readiness.target_removed(name)

    def _check_health(self, target: Target) -> None:
        probe = self.config.probe
        target.check_health(min(probe.health_interval, 5.0))

    def _refresh_inventory(self, target: Target) -> None:
        config = self.config
        listed = target.refresh_inventory(config, min(config.probe.timeout, 30.0))
        with self._lock:
            if self._targets.get(target.name) is not target:
                return  # removed by a reload while it listed
            if self.config is not config:  # a reload came while it listed: select under it
                target.reselect(self.config, min(self.config.probe.timeout, 30.0))
            jobs = self._reconcile(target)
            self._readiness.listing_ended(target.name, jobs)
        self._plan_next_listing(target, listed)

    def _plan_next_listing(self, target: Target, listed: bool) -> None:
        """The next listing: an inventory_interval after a success, a health_interval after a
        failure (a retry), with the usual jitter.

        APScheduler plans a job's next run when it submits this one, before the outcome is
        known; that plan is replaced here. (It once made the second listing come a health
        interval after the first, whatever the first's outcome.)
        """
        probe = self.config.probe
        interval = probe.inventory_interval if listed else probe.health_interval
        delay = interval * (1 + random.uniform(0, JITTER_RATIO))
        self._move(_inventory(target.name), time.time() + delay)

    def _reconcile(self, target: Target) -> dict[str, JobKey]:
        """Make the target's jobs match its inventory and the prompts; its jobs afterwards."""
        inventory = target.inventory
        wanted = {
            f"probe:{target.name}:{model}:{prompt.id}": (model, prompt)
            for model in (inventory.models if inventory else {})
            for prompt in self.config.prompts
        }
        with self._lock:
            current = {j for j, s in self._specs.items() if s.target is target}
            for job_id in current - wanted.keys():
                self._remove_job(job_id)
            for job_id in sorted(wanted.keys()):
                model, prompt = wanted[job_id]
                key = JobKey(target.name, model, prompt.id)
                spec = JobSpec(key, target, prompt, self.config.interval_of(prompt))
                if job_id in current:
                    self._update_job(job_id, spec)
                else:
                    self._add_job(job_id, spec)
            return {j: self._specs[j].key for j in wanted}

    def _add_job(self, job_id: str, spec: JobSpec) -> None:
        # Called with self._lock held, which keeps the first-run plan in order.
        self._specs[job_id] = spec
        self._store.open(
            spec.key, spec.prompt.checks.names(), energy=self._runner.measures_energy(spec)
        )
        first = max(time.time(), self._next_first_run)
        self._next_first_run = first + 1 / STARTUP_RATE
        self._scheduler.add_job(
            self._run,
            JitteredInterval(lambda: self._effective_interval(job_id), not_before=first),
            args=(job_id,),
            id=job_id,
            executor=_executor(spec.key.target),
        )

    def _update_job(self, job_id: str, spec: JobSpec) -> None:
        """A kept job whose prompt may have changed: same schedule, same counters."""
        old = self._specs[job_id]
        if spec == old:
            return
        self._specs[job_id] = spec
        checks = spec.prompt.checks.names()
        if checks != old.prompt.checks.names():
            self._store.open(spec.key, checks)
        if spec.interval_s != old.interval_s:
            self._replan(job_id, spec)

    def _replan(self, job_id: str, spec: JobSpec) -> None:
        """A kept job's interval changed: show it at once, and plan the next run from the last
        one with it (a shortened interval must not wait for a run planned with the old one)."""
        interval = self._effective_interval(job_id)
        self._store.set_interval(spec.key, interval)
        last = self._store.get(spec.key)
        if last is None:
            return  # its first run is still to come, as planned
        due = last.finished_at + interval * (1 + random.uniform(0, JITTER_RATIO))
        if due <= time.time():  # overdue with the new interval: a paced slot, as first runs
            due = max(time.time(), self._next_first_run)
            self._next_first_run = due + 1 / STARTUP_RATE
        self._move(job_id, due)

    def _move(self, job_id: str, when: float) -> None:
        """Plan a job's next run at the Unix time `when`, unless the job is gone."""
        with contextlib.suppress(JobLookupError):
            self._scheduler.modify_job(job_id, next_run_time=datetime.fromtimestamp(when, UTC))

    def _remove_job(self, job_id: str) -> None:
        spec = self._specs.pop(job_id)
        self._readiness.job_removed(job_id)
        self.pacing.forget(job_id, spec.key.target)
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(job_id)
        self._store.close(spec.key)

    def _effective_interval(self, job_id: str) -> float:
        # No lock: APScheduler calls this (through the trigger) holding its job store lock,
        # which _add_job waits for while holding self._lock. One dict read is atomic.
        spec = self._specs.get(job_id)
        if spec is None:
            return self.config.probe.interval  # removed: the job is about to go
        return self.pacing.interval(spec)

    def _run(self, job_id: str) -> None:
        with self.pacing.run(job_id) as run:
            with self._lock:
                spec = self._specs.get(job_id)
            if spec is None:
                return  # removed while queued
            result = self._runner.run(spec, self._effective_interval(job_id))
            if result is not None:
                self._store.record(result)
            self.pacing.began(spec.key.target, run, result)
            if result is None:
                return
            with self._lock:
                if self._specs.get(job_id) is None:
                    return  # removed while it ran: it counts no more
                self.pacing.ended(job_id, spec.key.target, spec.interval_s, result)
                self._readiness.job_ran(job_id)

    def _overrun(self, event: JobSubmissionEvent) -> None:
        # No lock: APScheduler sends this event holding its job store lock, which _add_job
        # waits for while holding self._lock. One dict read is atomic.
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
            self._effective_interval(event.job_id),
        )
        self._store.record(skip)


def _executor(target: str) -> str:
    return f"target:{target}"


def _inventory(target: str) -> str:
    return f"inventory:{target}"
