"""Prototypes of the exporter changes the benchmarks argue for, measured beside the real code.

Nothing here is used by the exporter. The benchmarks run "as shipped" and "proposed" side by
side so RESULTS.md can show before/after numbers; the real change belongs in exporter/ (see
benches/findings.md). Proposals 2, 3 and 5 were adopted in exporter/ at commit 845dd33 (with
the probe clock starting at the first request byte); on newer commits they patch in as no-ops.
The prototypes lean on prometheus_client internals (`_metrics`, `_samples`, `_labelnames`,
`_get_metric`) to stay small; a real implementation should own its per-job state instead.

1. IncrementalExposition: the probe series are cached as text per job and per family; a
   write marks its job dirty and a scrape re-renders only dirty jobs, so a probe ending no
   longer throws away the text of the other 599 jobs. The gzip of that text is cached too
   (a gzip stream may hold several members; Prometheus's Go reader and Python's gzip read
   them as one), so a scrape compresses only the few live lines.
2. shared_tls_http_clients: one SSLContext per distinct TLS setting instead of one per client;
   each context loads the CA bundle (~0.8 MB resident).
3. TCP_NODELAY on the /metrics server's sockets: BaseHTTPRequestHandler writes headers and
   body separately, and Nagle then holds the body until the client's delayed ACK (~40 ms).
4. Staggered first runs: each job's first run at start-up + U(0, min(60 s, its interval))
   instead of all at the same instant. Runs keep their phase (next = previous planned +
   interval x (1 + jitter)), so jobs that start together stay clumped for many cycles; 600
   probes at once saturate two cores and inflate the durations the duty cycle then stretches
   the schedule by.
5. The schedule-lag observation published after the probe, not before: before, a scrape that
   re-renders under the exposition lock holds every starting probe back, unseen by the lag
   histogram.
6. Duty cycle from Ollama's own total_duration where the answer carries it: the exporter's
   wall time also counts its own CPU and GIL contention, which then stretches the schedule as
   if Ollama were busy.
"""

from __future__ import annotations

import gzip
import random
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpx
from prometheus_client import PROCESS_COLLECTOR, CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import server, targets
from exporter.config import TargetConfig
from exporter.exposition import Exposition
from exporter.metrics import ProbeMetrics
from exporter.results import JobKey, ProbeResult, ProbeSkip
from exporter.runner import JobSpec
from exporter.scheduler import JitteredInterval, ProbeScheduler
from exporter.server_metrics import ExporterMetrics, ServerMetrics

Labels = tuple[str, ...]


class _JobView(Collector):
    """The probe families restricted to one job's children."""

    def __init__(self, families: list[MetricWrapperBase], children: dict[int, list[Labels]]):
        self._families = families
        self._children = children

    def collect(self) -> Iterable[Metric]:
        for i, parent in enumerate(self._families):
            family = parent._get_metric()  # type: ignore[no-untyped-call]
            for values in self._children.get(i, []):
                child = parent._metrics.get(values)
                if child is None:
                    continue
                series = dict(zip(parent._labelnames, values, strict=True))
                for sample in child._samples():
                    family.add_sample(
                        parent._name + sample.name, series | sample.labels, sample.value
                    )
            yield family


class IncrementalExposition(Exposition):
    """Exposition whose probe text is cached per job; drop-in for exporter.exposition's."""

    def __init__(self, live_collectors: Iterable[Collector] = (PROCESS_COLLECTOR,)) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._registry = CollectorRegistry()
        self.probes = ProbeMetrics(self._registry)
        self._others = CollectorRegistry()
        self.servers = ServerMetrics(self._others)
        self.exporter = ExporterMetrics(self._others)
        self._live = CollectorRegistry()
        for collector in live_collectors:
            self._live.register(collector)
        self._families: list[MetricWrapperBase] = list(self.probes._all())
        self._jobs: set[JobKey] = set()
        self._headers = self._split(generate_latest(_JobView(self._families, {})), headers=True)
        self._fragments: dict[JobKey, list[bytes]] = {}
        self._dirty: set[JobKey] = set()
        self._index: dict[Labels, dict[int, list[Labels]]] = {}
        self._indexed_sizes: list[int] = [-1] * len(self._families)
        self._text_version = -1
        self._text = b""
        # Writes to probe series are counted apart, so the server and exporter families
        # (health, inventory, scheduling) are re-rendered only when one of those changed.
        self._probe_writes = 0
        self._others_mark = -1
        self._others_text = b""
        self._gzipped: bytes | None = None

    # Writers that touch probe series also mark their job dirty, under the same lock.
    def register_job(self, key: JobKey, checks: Iterable[str]) -> None:
        with self._lock:
            self._jobs.add(key)
            self.probes.register(key, checks)
            self._touch(key)

    def remove_job(self, key: JobKey) -> None:
        with self._lock:
            self._jobs.discard(key)
            self.probes.remove(key)
            self._fragments.pop(key, None)
            self._dirty.discard(key)
            self._version += 1
            self._probe_writes += 1

    def observe(self, result: ProbeResult) -> bool:
        with self._lock:
            if result.key not in self._jobs:
                return False  # removed by a reload while in flight, as Exposition does
            self.probes.observe(result)
            self._touch(result.key)
            return True

    def skip(self, item: ProbeSkip) -> bool:
        with self._lock:
            if item.key not in self._jobs:
                return False
            self.probes.skip(item)
            self._touch(item.key)
            return True

    def _touch(self, key: JobKey) -> None:
        self._dirty.add(key)
        self._version += 1
        self._probe_writes += 1

    def render(self, gzipped: bool = False) -> bytes:
        with self._lock:
            if self._text_version != self._version:
                self._text = self._rebuild()
                self._gzipped = None
                self._text_version = self._version
            text = self._text
            if gzipped and self._gzipped is None:
                self._gzipped = gzip.compress(text, compresslevel=1)
            packed = self._gzipped
        live = generate_latest(self._live)
        if gzipped:
            assert packed is not None
            return packed + gzip.compress(live, compresslevel=1)
        return text + live

    def _rebuild(self) -> bytes:
        self._reindex()
        for key in self._dirty:
            children = self._index.get(key.labels(), {})
            self._fragments[key] = self._split(generate_latest(_JobView(self._families, children)))
        self._dirty.clear()
        parts: list[bytes] = []
        for i, header in enumerate(self._headers):
            parts.append(header)
            parts.extend(fragments[i] for fragments in self._fragments.values())
        mark = self._version - self._probe_writes
        if mark != self._others_mark:
            self._others_text = generate_latest(self._others)
            self._others_mark = mark
        return b"".join(parts) + self._others_text

    def _reindex(self) -> None:
        """Map each job to its children, family by family, when a family gained or lost any."""
        for i, parent in enumerate(self._families):
            if len(parent._metrics) == self._indexed_sizes[i]:
                continue
            for by_family in self._index.values():
                by_family.pop(i, None)
            for values in map(tuple, list(parent._metrics)):
                job = self._index.setdefault(values[:3], {})
                job.setdefault(i, []).append(values)
            self._indexed_sizes[i] = len(parent._metrics)

    @staticmethod
    def _split(text: bytes, headers: bool = False) -> list[bytes]:
        """Per family, in order: its sample lines, or (headers=True) its HELP and TYPE lines."""
        chunks: list[bytes] = []
        for block in text.split(b"# HELP ")[1:]:
            help_line, type_line, samples = block.split(b"\n", 2)
            chunks.append(b"# HELP %s\n%s\n" % (help_line, type_line) if headers else samples)
        return chunks


# --- shared TLS contexts -----------------------------------------------------------------
_contexts: dict[str | None, ssl.SSLContext] = {}  # one per CA file (None: the default CAs)
_contexts_lock = threading.Lock()


def _context(config: TargetConfig) -> ssl.SSLContext | bool:
    if config.tls_insecure_skip_verify:
        return False
    key = config.tls_ca_file
    with _contexts_lock:
        if key not in _contexts:
            _contexts[key] = (
                ssl.create_default_context(cafile=config.tls_ca_file)
                if config.tls_ca_file
                else httpx.create_ssl_context()
            )
        return _contexts[key]


def shared_tls_http_clients(config: TargetConfig) -> tuple[httpx.Client, httpx.Client]:
    """exporter.targets.http_clients with one SSLContext per TLS setting, shared."""
    context = _context(config)
    api = httpx.Client(verify=context, trust_env=False)
    probes = httpx.Client(
        verify=context, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
    )
    return api, probes


# --- scheduling ----------------------------------------------------------------------------
STAGGER_S = 60.0


def staggered_add_job(self: ProbeScheduler, job_id: str, spec: JobSpec) -> None:
    """ProbeScheduler._add_job with the first run spread over the first seconds (proposal 4)."""
    self._specs[job_id] = spec
    self._exposition.register_job(spec.key, spec.prompt.checks.names())
    first = random.uniform(0.0, min(STAGGER_S, spec.interval_s))
    self._scheduler.add_job(
        self._run,
        JitteredInterval(lambda: self._effective_interval(spec), first_delay=first),
        args=(job_id,),
        id=job_id,
        executor=f"target:{spec.key.target}",
    )


def lag_after_probe_run(self: ProbeScheduler, job_id: str) -> None:
    """ProbeScheduler._run publishing the schedule lag after the probe (proposal 5)."""
    started = time.time()
    with self._lock:
        spec = self._specs.get(job_id)
    if spec is None:
        return
    planned, submitted = self._stamps.pop(job_id, (started, started))
    result = self._runner.run(spec, self._effective_interval(spec))
    self._exposition.schedule(spec.key.target, submitted - planned, started - submitted)
    if result is not None:
        self._after_run(job_id, spec, result, started)


def server_time_after_run(
    self: ProbeScheduler, job_id: str, spec: JobSpec, result: object, started: float
) -> None:
    """ProbeScheduler._after_run counting Ollama's busy time in the duty cycle (proposal 6)."""
    duty = spec.target.duty
    if not isinstance(result, ProbeSkip):
        end = time.time()
        server = result.outcome.server if isinstance(result, ProbeResult) else None
        busy = server.total_s if server is not None and server.total_s else end - started
        duty.record(job_id, end - busy, end, spec.interval_s)
    duty.update(time.time())
    self._exposition.duty(spec.key.target, duty.ratio, duty.stretch)
    with self._lock:
        self._first_done.add(job_id)


# Same names as the methods they replace, so logs (and the scheduler benchmark) read alike.
staggered_add_job.__name__, staggered_add_job.__qualname__ = "_add_job", "ProbeScheduler._add_job"
lag_after_probe_run.__name__, lag_after_probe_run.__qualname__ = "_run", "ProbeScheduler._run"


def apply_all() -> None:
    """Patch the exporter in this process with every prototype (see exporter_proposed)."""
    import exporter.cli
    import exporter.service

    exporter.cli.Exposition = IncrementalExposition  # type: ignore[attr-defined]
    exporter.service.http_clients = shared_tls_http_clients  # type: ignore[attr-defined]
    targets.http_clients = shared_tls_http_clients
    server._Handler.disable_nagle_algorithm = True
    ProbeScheduler._add_job = staggered_add_job  # type: ignore[method-assign]
    ProbeScheduler._run = lag_after_probe_run  # type: ignore[method-assign]
    ProbeScheduler._after_run = server_time_after_run  # type: ignore[method-assign]


def no_delay(http_server: server.HttpServer) -> server.HttpServer:
    """Serve with TCP_NODELAY (proposal 3) on an already built HttpServer."""

    class Handler(server._Handler):
        disable_nagle_algorithm = True

    inner: Any = http_server._server
    inner.RequestHandlerClass = Handler
    return http_server
