"""The /metrics text: cached probe and server series plus live process and GPU readings.

Writers (probe jobs, health checks, the scheduler) call the methods below; each runs under one
lock and bumps a version. A probe's end re-renders its own job's text (exporter.metrics keeps
it per job). A scrape rebuilds the cached part only when the version moved: it joins the jobs'
texts and re-renders the small per-target registry if one of its writers ran. So a scrape's cost
does not grow with probe time, and it never waits for a probe in flight. Process and NVML readings
are cheap and describe "now", so they are collected fresh at every scrape.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

from exporter.memory import release_free_memory
from exporter.metrics import ProbeMetrics
from exporter.ollama import ListedModel, RunningModel
from exporter.results import JobKey, ProbeResult, ProbeSkip
from exporter.server_metrics import ExporterMetrics, ServerMetrics

# Counters' *_created series add a sample per series and nothing the rules use.
disable_created_metrics()  # type: ignore[no-untyped-call]

GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream
P = ParamSpec("P")
R = TypeVar("R")


def _writer(registry: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a writer under the exposition lock and invalidate the cached text; a writer of the
    per-target registry also invalidates that registry's text (probe writers mark their job)."""

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            self = args[0]
            assert isinstance(self, Exposition)
            with self._lock:
                result = method(*args, **kwargs)
                self._version += 1
                self._registry_version += registry
                return result

        wrapper.__doc__ = method.__doc__
        return wrapper

    return decorate


_write = _writer(registry=True)
_write_probes = _writer(registry=False)


class Exposition:
    """Owns every series the exporter serves."""

    def __init__(self, live_collectors: Iterable[Collector] = (PROCESS_COLLECTOR,)) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._registry_version = 0
        self._cache = _Cached(-1, b"")
        self._registry_cache: tuple[int, bytes] = (-1, b"")
        self.probes = ProbeMetrics()
        self._registry = CollectorRegistry(auto_describe=False)
        self.servers = ServerMetrics(self._registry)
        self.exporter = ExporterMetrics(self._registry)
        self._live = CollectorRegistry(auto_describe=False)
        for collector in live_collectors:
            self._live.register(collector)

    @_write_probes
    def register_job(self, key: JobKey, checks: Iterable[str]) -> None:
        self.probes.register(key, checks)

    @_write_probes
    def remove_job(self, key: JobKey) -> None:
        self.probes.remove(key)

    @_write
    def register_target(self, target: str) -> None:
        self.servers.register(target)
        self.exporter.register(target)

    @_write
    def remove_target(self, target: str) -> None:
        self.servers.remove(target)
        self.exporter.remove(target)

    @_write_probes
    def observe(self, result: ProbeResult) -> bool:
        """Apply a probe's result; False (and nothing changes) if its job was removed.

        A probe still in flight when a reload removed its job must not bring its series back.
        """
        if result.key not in self.probes:
            return False
        self.probes.observe(result)
        return True

    @_write_probes
    def skip(self, item: ProbeSkip) -> bool:
        if item.key not in self.probes:
            return False
        self.probes.skip(item)
        return True

    @_write_probes
    def interval(self, key: JobKey, seconds: float) -> None:
        if key in self.probes:
            self.probes.interval(key, seconds)

    @_write
    def health(self, target: str, version: str | None) -> None:
        self.servers.health(target, version)

    @_write
    def inventory(self, target: str, models: Mapping[str, ListedModel], dropped: int) -> None:
        self.servers.inventory(target, models)
        self.exporter.models_dropped.labels(target).set(dropped)

    @_write
    def residency(
        self, target: str, known: Sequence[str], resident: Mapping[str, RunningModel]
    ) -> None:
        self.servers.residency(target, known, resident)

    @_write
    def reload_result(self, ok: bool, at: float) -> None:
        """A configuration load (at start or a reload) ended; `at` is its Unix time."""
        self.exporter.reload_ok.set(1 if ok else 0)
        if ok:
            self.exporter.reload_success_time.set(at)

    @_write
    def schedule(self, target: str, lag_s: float, queue_wait_s: float) -> None:
        self.exporter.lag.labels(target).observe(max(lag_s, 0.0))
        self.exporter.queue_wait.labels(target).observe(queue_wait_s)

    @_write
    def duty(self, target: str, busy_s: float, stretch: float, slots: int) -> None:
        """Add a run's busy seconds (its probe's measured duration; 0 for a skip) and set the
        target's interval stretch and concurrency slots."""
        self.exporter.busy.labels(target).inc(busy_s)
        self.exporter.stretch.labels(target).set(stretch)
        self.exporter.slots.labels(target).set(slots)

    def body(self, gzipped: bool = False) -> tuple[bytes, ...]:
        """The whole exposition as the pieces a scrape sends in order; gzip-compressed when asked.

        The cached part is sent as it is kept: joining it to the live lines would copy it on
        every scrape (about 5 MB at 600 jobs, a fresh buffer and a millisecond each time). The
        compressed cached part is kept with the compressor's state after it, so a gzipped
        scrape compresses only the live lines and still sends one gzip member (some clients,
        httpx among them, read only the first member of a multi-member stream).
        """
        with self._lock:
            rebuilt = self._cache.version != self._version
            if rebuilt:
                # One join: the text is megabytes at hundreds of jobs, so no second copy.
                text = b"".join([*self.probes.parts(), self._registry_text()])
                self._cache = _Cached(self._version, text)
            cache = self._cache
        if rebuilt:
            release_free_memory()  # the previous text and its gzip were just freed
        live = generate_latest(self._live)
        if not gzipped:
            return (cache.text, live)
        return cache.gzipped(live)

    def render(self, gzipped: bool = False) -> bytes:
        """body() in one piece, for callers that want the text itself."""
        return b"".join(self.body(gzipped))

    def _registry_text(self) -> bytes:
        if self._registry_cache[0] != self._registry_version:
            self._registry_cache = (self._registry_version, generate_latest(self._registry))
        return self._registry_cache[1]


class _Cached:
    """One version of the cached text and, once a gzipped scrape asked for it, its gzip start."""

    def __init__(self, version: int, text: bytes) -> None:
        self.version = version
        self.text = text
        self._lock = threading.Lock()
        self._gzip: tuple[bytes, Any] | None = None  # compressed text, compressor after it

    def gzipped(self, live: bytes) -> tuple[bytes, bytes]:
        """One gzip member of the cached text followed by `live`, in two pieces."""
        # Compressed outside the exposition lock, so writers do not wait for it.
        with self._lock:
            if self._gzip is None:
                compressor = zlib.compressobj(1, zlib.DEFLATED, GZIP_WBITS)
                self._gzip = (compressor.compress(self.text), compressor)
            start, after_text = self._gzip
            tail = after_text.copy()  # the cached state stays ready for the next scrape
        return (start, tail.compress(live) + tail.flush())
