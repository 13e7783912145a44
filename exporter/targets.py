"""What the exporter knows about each Ollama server: its probe-able models and its health.

Inventory (/api/tags, plus /api/show once per new model) decides which models get probe jobs.
A failed or empty listing keeps the last good inventory, so an Ollama restart never makes
series vanish. Health (/api/version, /api/ps) feeds availability and residency.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import certifi
import httpx

from exporter.config import Config, TargetConfig
from exporter.duty import DutyCycle
from exporter.exposition import Exposition
from exporter.health import HealthTracker
from exporter.ollama import ListedModel, OllamaApi, OllamaApiError, RunningModel, model_key
from exporter.redact import Redactor, printable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inventory:
    """The models of a target that get probe jobs, keyed by their `model` label value."""

    models: dict[str, ListedModel]
    dropped: int = 0


class Target:
    """One Ollama server: its API, its last good inventory, its health."""

    def __init__(
        self,
        config: TargetConfig,
        exposition: Exposition,
        api_client: httpx.Client,
        probe_client: httpx.Client,
    ) -> None:
        self.config = config
        self.name = config.name
        self.api = OllamaApi(api_client, config.url, config.headers)
        self.probe_client = probe_client
        self.redact = Redactor(config.headers.values())
        self.duty = DutyCycle(1.0)  # limit set by the scheduler; kept across reloads
        self.health = HealthTracker(config.name)
        self._exposition = exposition
        self._lock = threading.Lock()
        self._inventory: Inventory | None = None
        self._capabilities: dict[str, tuple[str, ...]] = {}
        self._labels: dict[str, str] = {}  # model_key -> label value, for residency series

    @property
    def inventory(self) -> Inventory | None:
        with self._lock:
            return self._inventory

    def refresh_inventory(self, config: Config, timeout: float) -> bool:
        """List the target's models; True when the inventory is known (now or before)."""
        try:
            listed = self.api.list_models(timeout)
        except OllamaApiError as exc:
            log.warning(
                "target %s: model listing failed, keeping the last one: %s",
                self.name,
                self.redact(str(exc)),
            )
            return self.inventory is not None
        if not listed and self.inventory is not None:
            log.warning("target %s: empty model listing, keeping the last one", self.name)
            return True
        inventory = self._select(config, listed, timeout)
        with self._lock:
            self._inventory = inventory
            self._labels = {model_key(label): label for label in inventory.models}
        self.health.listed(len(listed), len(inventory.models))
        self._exposition.inventory(self.name, inventory.models, inventory.dropped)
        return True

    def _select(self, config: Config, listed: Sequence[ListedModel], timeout: float) -> Inventory:
        if not config.models:
            return self._discover(config, listed, timeout)
        # Configured names are probed even when unlisted: a deleted model must show up as
        # model_not_found failures, not as silence.
        by_key = {model_key(m.name): m for m in listed}
        return Inventory(
            {
                name: by_key.get(model_key(name), _unlisted(name))
                for name in config.models
                if not _excluded(name, config.exclude_models)
            }
        )

    def _discover(self, config: Config, listed: Sequence[ListedModel], timeout: float) -> Inventory:
        # Remote/cloud models would send the prompt off the machine: never probed.
        candidates = sorted(
            (m for m in listed if not m.remote and not _excluded(m.name, config.exclude_models)),
            key=lambda m: m.name,
        )
        limit = self.config.max_models
        chosen: dict[str, ListedModel] = {}
        examined = 0
        # Capabilities may cost an /api/show each, so stop asking once the cap is reached.
        for model in candidates:
            if len(chosen) >= limit:
                break
            examined += 1
            if "completion" in self._model_capabilities(model, timeout):
                chosen[model.name] = model  # embedding-only models cannot generate
        dropped = len(candidates) - examined
        if dropped:
            log.warning(
                "target %s lists %d models, probing the first %d (max_models)",
                self.name,
                len(candidates),
                limit,
            )
        return Inventory(chosen, dropped)

    def _model_capabilities(self, model: ListedModel, timeout: float) -> tuple[str, ...]:
        if model.capabilities is not None:
            return model.capabilities
        if model.name not in self._capabilities:
            try:
                self._capabilities[model.name] = self.api.capabilities(model.name, timeout)
            except OllamaApiError as exc:
                log.warning(
                    "target %s: /api/show %s failed, assuming it generates: %s",
                    self.name,
                    printable(model.name),
                    self.redact(str(exc)),
                )
                return ("completion",)
        return self._capabilities[model.name]

    def check_health(self, timeout: float) -> None:
        """One /api/version check (availability) and one /api/ps read (residency)."""
        error = None
        try:
            version: str | None = self.api.version(timeout)
        except OllamaApiError as exc:
            version, error = None, self.redact(str(exc))
        self.health.checked(version, error)  # logs only when the target goes down or comes back
        self._exposition.health(self.name, version)
        if version is None:
            return
        try:
            running = self.api.running(timeout)
        except OllamaApiError as exc:
            log.warning("target %s: /api/ps failed: %s", self.name, self.redact(str(exc)))
            return
        self.publish_residency(running)

    def publish_residency(self, running: Sequence[RunningModel]) -> None:
        with self._lock:
            labels = dict(self._labels)
        resident = {labels.get(model_key(m.name), m.name): m for m in running}
        self._exposition.residency(self.name, sorted(labels.values()), resident)

    def resident(self, timeout: float) -> dict[str, RunningModel] | None:
        """The resident models by model_key, or None when /api/ps fails."""
        try:
            running = self.api.running(timeout)
        except OllamaApiError as exc:
            log.warning(
                "target %s: /api/ps failed before a probe: %s", self.name, self.redact(str(exc))
            )
            return None
        return {model_key(m.name): m for m in running}


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


def _unlisted(name: str) -> ListedModel:
    return ListedModel(name, "", "", "", remote=False, capabilities=None)


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One verifying context per CA file (and version of it): each holds about 1 MB of CAs."""
    path = ca_file or certifi.where()  # httpx's own default bundle
    return _context_for(path, os.stat(path).st_mtime_ns)


@functools.cache
def _context_for(path: str, _mtime_ns: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=path)


def http_clients(config: TargetConfig) -> tuple[httpx.Client, httpx.Client]:
    """Clients for a target's read endpoints and for its probes.

    Probes get no connection reuse: each opens its own connection, so the watchdog can reach
    its socket and a probe's timing includes the connect, as a user's first request would.
    """
    verify: ssl.SSLContext | bool = False
    if not config.tls_insecure_skip_verify:
        verify = _tls_context(config.tls_ca_file)
    api = httpx.Client(verify=verify, trust_env=False)
    probes = httpx.Client(
        verify=verify, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
    )
    return api, probes
