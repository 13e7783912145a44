"""Wiring: one running exporter (targets, runner, scheduler) and configuration reloads.

A reload builds a new scheduler for the new configuration while the exposition and the result
store carry over, so counters and histograms of every job that remains keep their values. A
bad file keeps the old configuration running and sets the reload-success gauge to 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exporter.config import Config, ConfigError, TargetConfig, load_config
from exporter.exposition import Exposition
from exporter.gpu import DisabledGpuReader, GpuReader
from exporter.results import JobKey, ResultStore
from exporter.runner import ProbeRunner
from exporter.scheduler import ProbeScheduler
from exporter.targets import Target, http_clients

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadState:
    """The outcome of the last reload, for the status page."""

    ok: bool
    at: float  # Unix time
    error: str | None = None


class Service:
    """The exporter's moving parts for one configuration, replaceable by reload()."""

    def __init__(
        self,
        config: Config,
        config_path: str | Path | None,
        exposition: Exposition,
        gpu: GpuReader,
        loader: Callable[[str | Path | None], Config] = load_config,
    ) -> None:
        self.config = config
        self.exposition = exposition
        self.store = ResultStore()
        self._path = config_path
        self._gpu = gpu if config.gpu.enabled is not False else DisabledGpuReader()
        self._loader = loader
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}
        self._scheduler = self._build(config)
        self.last_reload: ReloadState | None = None  # None: no reload since the start

    @property
    def targets(self) -> list[Target]:
        """The targets of the running configuration, in configuration order."""
        return list(self._targets.values())

    def start(self) -> None:
        self._scheduler.start(list(self._targets.values()))

    def ready(self) -> bool:
        return self._scheduler.ready()

    def stop(self) -> None:
        self._scheduler.shutdown()

    def reload(self) -> str | None:
        """Load the config file again; None on success, else the error (old config stays)."""
        with self._lock:
            try:
                config = self._loader(self._path)
            except ConfigError as exc:
                log.error("reload failed, keeping the running configuration: %s", exc)
                self.exposition.reload_result(False)
                self.last_reload = ReloadState(False, time.time(), str(exc))
                return str(exc)
            old_targets, old_jobs = dict(self._targets), self._scheduler.job_keys()
            self._scheduler.shutdown(cancel=False)
            self.config = config
            self._scheduler = self._build(config, old_targets)
            self._scheduler.start(list(self._targets.values()))
            self._drop_vanished(old_targets, old_jobs)
            self.exposition.reload_result(True)
            self.last_reload = ReloadState(True, time.time())
            log.info("configuration reloaded from %s", self._path)
            return None

    def _build(self, config: Config, reuse: dict[str, Target] | None = None) -> ProbeScheduler:
        self._targets = {t.name: self._target(t, reuse or {}) for t in config.targets}
        runner = ProbeRunner(config, self.exposition, self.store, self._gpu)
        return ProbeScheduler(self.exposition, self.store, runner)

    def _target(self, config: TargetConfig, reuse: dict[str, Target]) -> Target:
        old = reuse.get(config.name)
        if old is not None and old.config == config:
            return old  # keeps its inventory: no job flaps during a reload
        return Target(config, self.exposition, *http_clients(config))

    def _drop_vanished(self, old_targets: dict[str, Target], old_jobs: set[JobKey]) -> None:
        """Remove the series of targets and prompts the new configuration no longer has."""
        for name in old_targets.keys() - self._targets.keys():
            self.exposition.remove_target(name)
        prompts = {p.id for p in self.config.prompts}
        for key in old_jobs:
            if (
                key.target not in self._targets
                or key.prompt not in prompts
                or (self.config.models and key.model not in self.config.models)
            ):
                self.exposition.remove_job(key)
                self.store.forget({key})
