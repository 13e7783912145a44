"""Wiring: one running exporter (targets, runner, scheduler) and configuration reloads.

A reload changes exactly what changed: the one scheduler applies the new configuration, so every
job that remains keeps its schedule, counters and histograms, and only the jobs a reload adds
get a first run. A bad file keeps the old configuration running, and the reload-success gauge,
which the exposition reads from load_state, shows 0. The targets of `target_files`
(exporter.target_files) are read again at every reload and, between reloads, whenever a file
changes; what changed in them is applied the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.registry import Collector

from exporter.config import Config, TargetConfig, load_config
from exporter.exposition.exporter_series import LoadState
from exporter.exposition.scrape import Exposition
from exporter.gpu import DisabledGpuReader, GpuReader
from exporter.probing.pacing import Pacing
from exporter.probing.runner import ProbeRunner
from exporter.probing.scheduler import ProbeScheduler
from exporter.probing.targets import Target, http_clients
from exporter.results import ResultStore
from exporter.target_files import TargetFiles, patterns_of
from exporter.validation import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    """How a configuration load ended: `error` is None when it succeeded; `warnings` name
    changes that the running process cannot apply."""

    at: float  # Unix time
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


class Service:
    """The exporter's moving parts for the running configuration; reload() changes them."""

    def __init__(
        self,
        config: Config,
        config_path: str | Path | None,
        gpu: GpuReader,
        live_collectors: Iterable[Collector] = (),
        loader: Callable[[str | Path | None], Config] = load_config,
    ) -> None:
        self.config = config
        self.store = ResultStore()
        self.pacing = Pacing()
        self.exposition = Exposition(
            self.store,
            lambda: self.targets,
            lambda: self.load_state,
            self.pacing,
            live_collectors,
            shard=lambda: self.config.shard,
        )
        self._path = config_path
        self._gpu = gpu if config.gpu.enabled is not False else DisabledGpuReader()
        self._loader = loader
        self._lock = threading.Lock()
        self._files = TargetFiles(patterns_of(config, config_path))
        self._files.refresh({t.name for t in config.targets})
        self._targets = {t.name: self._target(t, {}) for t in self._wanted(config)}
        self._watching = threading.Event()  # set: stop watching the target files
        runner = ProbeRunner(config, self._gpu)
        self._scheduler = ProbeScheduler(self.store, runner, self.pacing)
        self.last_reload: ReloadOutcome | None = None  # None: no reload since the start
        self._loaded_at = time.time()  # the last load that succeeded, at start-up the first

    @property
    def load_state(self) -> LoadState:
        """The reload-success series' state: the last load's outcome, the last good one's time."""
        last = self.last_reload
        return LoadState(last is None or last.ok, self._loaded_at, self._files.states)

    @property
    def targets(self) -> list[Target]:
        """The running configuration's targets in this replica's shard, in configuration order."""
        return list(self._targets.values())

    def start(self) -> None:
        self._scheduler.start(list(self._targets.values()))
        threading.Thread(target=self._watch_target_files, name="target-files", daemon=True).start()

    def ready(self) -> bool:
        return self._scheduler.ready()

    def waiting_for(self) -> str | None:
        """None once ready, else what start-up still waits for (the 503 body of /-/ready)."""
        return self._scheduler.waiting_for()

    def stop(self) -> None:
        self._watching.set()
        self._scheduler.shutdown()

    def reload(self) -> ReloadOutcome:
        """Load the config file again and apply what changed; on error the old config stays."""
        with self._lock:
            try:
                config = self._loader(self._path)
            except ConfigError as exc:
                log.error("reload failed, keeping the running configuration: %s", exc)
                return self._reloaded(ReloadOutcome(time.time(), error=str(exc)))
            warnings = _restart_only_changes(self.config, config)
            for warning in warnings:
                log.warning("reload: %s", warning)
            self._files.patterns = patterns_of(config, self._path)
            self._files.refresh({t.name for t in config.targets})
            self._apply(config)
            log.info("configuration reloaded from %s", self._path)
            return self._reloaded(ReloadOutcome(time.time(), warnings=warnings))

    def refresh_target_files(self) -> bool:
        """Read the target files that changed; apply their targets if they changed (True)."""
        with self._lock:
            if self._watching.is_set():
                return False  # stopping: the scheduler may be shut down already
            if not self._files.refresh({t.name for t in self.config.targets}):
                return False
            self._apply(self.config)
            return True

    def _watch_target_files(self) -> None:
        # A reload reads the files too; this catches the changes between reloads.
        while not self._watching.wait(self.config.target_files_refresh_interval):
            try:
                self.refresh_target_files()
            except Exception:  # the watcher must outlive any one bad refresh
                log.exception("reading the target files failed")

    def _apply(self, config: Config) -> None:
        """Run `config` with the target files' targets: only targets that changed start or stop."""
        self._targets = {t.name: self._target(t, self._targets) for t in self._wanted(config)}
        self._scheduler.apply(config, list(self._targets.values()))
        self.config = config

    def _wanted(self, config: Config) -> list[TargetConfig]:
        return _sharded(config, [*config.targets, *self._files.targets])

    def _reloaded(self, outcome: ReloadOutcome) -> ReloadOutcome:
        if outcome.ok:
            self._loaded_at = outcome.at
        self.last_reload = outcome
        return outcome

    def _target(self, config: TargetConfig, running: dict[str, Target]) -> Target:
        old = running.get(config.name)
        if old is not None and old.config == config:
            return old  # keeps its inventory, its jobs and their schedule
        if old is not None and old.config.connection() == config.connection():
            old.config = config  # max_models or gpu changed: the same server, reselected
            return old
        return Target(config, *http_clients(config))


def _sharded(config: Config, targets: list[TargetConfig]) -> list[TargetConfig]:
    """The targets (static and from files) this replica probes: its shard's (all unsharded).

    The others get no target, so no jobs, probes, health checks or series: another replica
    of the fleet serves them.
    """
    owned = [t for t in targets if config.shard.owns(t.name)]
    if config.shard.count > 1:
        log.info(
            "shard %d of %d: probing %d of the %d configured targets",
            config.shard.index,
            config.shard.count,
            len(owned),
            len(targets),
        )
    return owned


def _restart_only_changes(running: Config, loaded: Config) -> tuple[str, ...]:
    """Changes in the file that take effect only when the process restarts."""
    warnings = []
    if loaded.web.listen_address != running.web.listen_address:
        warnings.append(
            f"web.listen_address changed from {running.web.listen_address!r} to "
            f"{loaded.web.listen_address!r}: it takes effect only at a restart, the exporter "
            "keeps listening where it started"
        )
    if loaded.gpu.enabled != running.gpu.enabled:
        warnings.append(
            f"gpu.enabled changed from {_yaml(running.gpu.enabled)} to "
            f"{_yaml(loaded.gpu.enabled)}: the GPU "
            "reader is chosen at start-up, so this takes full effect only at a restart"
        )
    return tuple(warnings)


def _yaml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
