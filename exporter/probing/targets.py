"""What the exporter knows about each server: its probe-able models and its health.

Inventory (the backend's listing, plus its capabilities once per new model) decides which
models get probe jobs. A failed or empty listing keeps the last good inventory, so a server
restart never makes series vanish. Health (the version, the resident models) feeds
availability and residency. Every server call goes through the target's backend. A Target
keeps all of this as state, with a version bumped at every change; the exposition builds the
per-target series from the live targets at scrape time (exporter.exposition.target_series).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import certifi
import httpx

from exporter.backends import (
    ApiClient,
    BackendApiError,
    ListedModel,
    RunningModel,
    backend_named,
)
from exporter.config import Config, TargetConfig
from exporter.probing.health import HealthTracker
from exporter.redact import Redactor, printable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inventory:
    """The models of a target that get probe jobs, keyed by their `model` label value."""

    models: dict[str, ListedModel]
    dropped: int = 0


@dataclass(frozen=True)
class Residency:
    """One /api/ps reading, by `model` label value: the models with jobs, and the resident ones
    (which may include models without jobs)."""

    known: tuple[str, ...]
    resident: Mapping[str, RunningModel]


class Target:
    """One server: its backend and API, its last good inventory, its health."""

    def __init__(
        self, config: TargetConfig, api_client: httpx.Client, probe_client: httpx.Client
    ) -> None:
        self.config = config
        self.name = config.name
        self.backend = backend_named(config.protocol)
        self.api = ApiClient(api_client, config.url, config.headers)
        self.probe_client = probe_client
        self.redact = Redactor(config.headers.values())
        self.health = HealthTracker(config.name)
        self._lock = threading.Lock()
        self._version = 0  # bumped after every change of the state below or of health
        self._inventory: Inventory | None = None
        self._residency: Residency | None = None  # the last /api/ps reading of a health check
        self._listed: tuple[ListedModel, ...] | None = None  # the last good listing
        self.listing_error: str | None = None  # the last failed listing's reason, redacted
        self._capabilities: dict[str, tuple[str, ...]] = {}
        self._labels: dict[str, str] = {}  # model_key -> label value, for residency series
        # By model_key, for every model ever listed (not only the probed ones): a model that
        # leaves the listing and comes back under a new digest still counts as changed.
        self._digests: dict[str, str] = {}
        self._digest_changes: dict[str, int] = {}

    @property
    def inventory(self) -> Inventory | None:
        with self._lock:
            return self._inventory

    @property
    def residency(self) -> Residency | None:
        with self._lock:
            return self._residency

    def digest_changes(self, model: str) -> int:
        """How often the listed digest of `model` (a name or label value) changed so far."""
        with self._lock:
            return self._digest_changes.get(self.backend.model_key(model), 0)

    @property
    def version(self) -> int:
        """Changes after every change of health, inventory or residency (read it first)."""
        return self._version

    def refresh_inventory(self, config: Config, timeout: float) -> bool:
        """List the target's models and select the ones to probe; True if the listing worked.

        A failed or empty listing keeps the last good one. Configured models are selected even
        before any listing worked: they get jobs, which fail with `connect` while Ollama is down.
        """
        try:
            listed = self.backend.list_models(self.api, timeout)
        except BackendApiError as exc:
            error = self.redact(str(exc))
            if self.listing_error is None:  # said once per outage, not at every retry
                kept = ", keeping the last one" if self._listed is not None else ""
                log.warning("target %s: model listing failed%s: %s", self.name, kept, error)
            self.listing_error = error
            if self.inventory is None:  # configured models get their jobs all the same
                self._select_from_last(config, timeout, "listing")
            return False
        if self.listing_error is not None:
            log.info("target %s: model listing works again", self.name)
            self.listing_error = None
        if not listed and self._listed is not None:
            log.warning("target %s: empty model listing, keeping the last one", self.name)
            return True
        self._listed = tuple(listed)
        self._note_digests(listed)
        self._select_from_last(config, timeout, "listing")
        inventory = self.inventory
        self.health.listed(len(listed), len(inventory.models) if inventory else 0)
        return True

    def _note_digests(self, listed: Sequence[ListedModel]) -> None:
        """Count and log each model whose digest differs from the one last listed for it.

        Only good listings get here, so an outage is never a change. A model listed without a
        digest keeps the one it had: no digest is not a new digest.
        """
        changed = []
        with self._lock:
            for model in listed:
                key = self.backend.model_key(model.name)
                old = self._digests.get(key)
                if not model.digest or old == model.digest:
                    continue
                self._digests[key] = model.digest
                if old is not None:
                    self._digest_changes[key] = self._digest_changes.get(key, 0) + 1
                    changed.append((model.name, old, model.digest))
            if changed:
                self._version += 1
        for name, old, new in changed:
            log.info(
                "target %s: model %s changed digest %s -> %s",
                self.name,
                printable(name),
                short_digest(old),
                short_digest(new),
            )

    def reselect(self, config: Config, timeout: float) -> None:
        """Select again from the last listing under a reloaded configuration."""
        self._select_from_last(config, timeout, "configuration")

    def _select_from_last(self, config: Config, timeout: float, cause: str) -> None:
        if self._listed is None and not config.models:
            return  # nothing is known to select from yet
        inventory = self._select(config, self._listed or (), timeout)
        with self._lock:
            before, self._inventory = self._inventory, inventory
            self._labels = {self.backend.model_key(label): label for label in inventory.models}
            self._version += 1
        _log_selection(self.name, before, inventory, cause)

    def _select(self, config: Config, listed: Sequence[ListedModel], timeout: float) -> Inventory:
        if not config.models:
            # A target without discovery (openai's default) and without models probes nothing.
            if not self.config.discovers():
                return Inventory({})
            return self._discover(config, listed, timeout)
        # Configured names are probed even when unlisted: a deleted model must show up as
        # model_not_found failures, not as silence.
        by_key = {self.backend.model_key(m.name): m for m in listed}
        return Inventory(
            {
                name: by_key.get(self.backend.model_key(name), _unlisted(name))
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
        known = self.inventory
        if dropped and (known is None or known.dropped != dropped):  # once, not every listing
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
                self._capabilities[model.name] = self.backend.capabilities(
                    self.api, model.name, timeout
                )
            except BackendApiError as exc:
                log.warning(
                    "target %s: /api/show %s failed, assuming it generates: %s",
                    self.name,
                    printable(model.name),
                    self.redact(str(exc)),
                )
                return ("completion",)
        return self._capabilities[model.name]

    def check_health(self, timeout: float) -> None:
        """One version check (availability) and one read of the resident models (residency)."""
        error = None
        try:
            version: str | None = self.backend.version(self.api, timeout)
        except BackendApiError as exc:
            version, error = None, self.redact(str(exc))
        self.health.checked(version, error)  # logs only when the target goes down or comes back
        with self._lock:
            self._version += 1
        if version is None or not self.backend.residency:
            return
        try:
            running = self.backend.running(self.api, timeout)
        except BackendApiError as exc:
            log.warning("target %s: /api/ps failed: %s", self.name, self.redact(str(exc)))
            return
        self.note_residency(running)

    def note_residency(self, running: Sequence[RunningModel]) -> None:
        """Keep an /api/ps reading, by label value, for the residency series."""
        with self._lock:
            labels = self._labels
            resident = {labels.get(self.backend.model_key(m.name), m.name): m for m in running}
            self._residency = Residency(tuple(sorted(labels.values())), resident)
            self._version += 1

    def resident(self, timeout: float) -> dict[str, RunningModel] | None:
        """The resident models by model_key, or None when /api/ps fails or the backend has no
        residency."""
        if not self.backend.residency:
            return None
        try:
            running = self.backend.running(self.api, timeout)
        except BackendApiError as exc:
            log.warning(
                "target %s: /api/ps failed before a probe: %s", self.name, self.redact(str(exc))
            )
            return None
        return {self.backend.model_key(m.name): m for m in running}


# How many model names the first selection's log line names before it only counts the rest.
SHOWN_MODELS = 10


def _log_selection(target: str, before: Inventory | None, after: Inventory, cause: str) -> None:
    """Log the models a selection added or removed, once each (nothing when nothing changed)."""
    if before is None:
        names = [printable(m) for m in sorted(after.models)]
        more = len(names) - SHOWN_MODELS
        log.info(
            "target %s: probing %d model(s): %s%s",
            target,
            len(names),
            ", ".join(names[:SHOWN_MODELS]) or "none",
            f" and {more} more" if more > 0 else "",
        )
        return
    place = "the listing" if cause == "listing" else "the reloaded configuration"
    for model in sorted(after.models.keys() - before.models.keys()):
        log.info("target %s: model %s appeared in %s, probing it", target, printable(model), place)
    for model in sorted(before.models.keys() - after.models.keys()):
        log.info(
            "target %s: model %s left %s; its jobs and series are removed",
            target,
            printable(model),
            place,
        )


# Digests in labels and logs: 12 hex digits, as `ollama list` shows them; enough to tell
# versions of one model apart.
SHORT_DIGEST = 12


def short_digest(digest: str) -> str:
    """The first 12 hex digits of a digest ("" stays "")."""
    return digest[:SHORT_DIGEST]


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
    its socket and its deadline covers the connect. The probe's clock starts only as the
    request goes out, after the connect (exporter.probing.probe.run_probe).
    """
    verify: ssl.SSLContext | bool = False
    if not config.tls_insecure_skip_verify:
        verify = _tls_context(config.tls_ca_file)
    api = httpx.Client(verify=verify, trust_env=False)
    probes = httpx.Client(
        verify=verify, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
    )
    return api, probes
