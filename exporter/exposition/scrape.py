"""The /metrics text: every series built from the state that owns it, plus live readings.

Nothing pushes series into the exposition; it reads its sources at scrape time:

- the ResultStore (exporter.results), the record of the open probe jobs and their tallies:
  the probe series (probe_series) are rendered from it, each job's lines kept with the
  version of the tally they came from, so a scrape renders again only the jobs whose tally
  changed and forgets the jobs that were closed, and sends the text as one block per family;
- the live targets (a callable, Service.targets in the exporter): their health, inventory and
  residency give the per-target series (target_series); with the configuration's load state,
  the scheduler's pacing tallies (exporter.probing.pacing) and the replica's shard they give
  the exporter's own series (exporter_series). That text is kept until a target's version,
  the load state, the pacing version or the shard changes;
- process and NVML readings, which are cheap and describe "now", collected at every scrape.

So a job's or a target's series exist exactly while the job or target does, a scrape's cost
does not grow with probe time, and a scrape never waits for a probe in flight.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Hashable, Iterable, Sequence

from prometheus_client import (
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.exposition.exporter_series import ExporterSeries, LoadState
from exporter.exposition.probe_series import ProbeSeries
from exporter.exposition.target_series import TargetSeries
from exporter.probing.pacing import Pacing
from exporter.probing.targets import Target
from exporter.results import ResultStore
from exporter.shard import ShardConfig

# Counters' *_created series add a sample per series and nothing the rules use.
disable_created_metrics()  # type: ignore[no-untyped-call]

GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


class Exposition:
    """Renders every series the exporter serves from the state that owns it."""

    def __init__(
        self,
        store: ResultStore | None = None,
        targets: Callable[[], Sequence[Target]] = tuple,
        loads: Callable[[], LoadState] = LoadState,
        pacing: Pacing | None = None,
        live_collectors: Iterable[Collector] = (PROCESS_COLLECTOR,),
        shard: Callable[[], ShardConfig] = ShardConfig,
    ) -> None:
        self._lock = threading.Lock()  # serialises renders
        self._pacing = pacing if pacing is not None else Pacing()
        self._store = store if store is not None else ResultStore()
        self._targets = targets
        self._loads = loads
        self._shard = shard
        self._probes = ProbeSeries()
        self._probe_text: tuple[int, tuple[bytes, ...]] = (-1, ())  # store version, blocks
        self._target_series = TargetSeries(targets)
        self._exporter_series = ExporterSeries(targets, loads, self._pacing.tallies, shard)
        self._target_text: tuple[Hashable, bytes] = (None, b"")
        self._live = CollectorRegistry(auto_describe=False)
        for collector in live_collectors:
            self._live.register(collector)

    def body(self, gzipped: bool = False) -> tuple[bytes, ...]:
        """The whole exposition as the pieces a scrape sends in order; gzip-compressed when asked.

        The pieces are sent as they are kept (a block per probe family, the per-target text,
        the live readings): joining them would copy the probe text on every scrape (about 5 MB
        at 600 jobs).
        """
        with self._lock:
            pieces = (*self._probe_part(), self._target_part())
        pieces += (generate_latest(self._live),)
        if not gzipped:
            return pieces
        # One gzip member: some clients (httpx among them) read only the first of several.
        compressor = zlib.compressobj(1, zlib.DEFLATED, GZIP_WBITS)
        *start, last = pieces
        return (*map(compressor.compress, start), compressor.compress(last) + compressor.flush())

    def render(self, gzipped: bool = False) -> bytes:
        """body() in one piece, for callers that want the text itself."""
        return b"".join(self.body(gzipped))

    def _probe_part(self) -> tuple[bytes, ...]:
        if self._probe_text[0] != self._store.version:
            version, jobs = self._store.tallies()
            self._probe_text = (version, tuple(self._probes.blocks(jobs)))
        return self._probe_text[1]

    def _target_part(self) -> bytes:
        targets, loads, shard = tuple(self._targets()), self._loads(), self._shard()
        # Versions read before the state they describe: a change while rendering shows at the
        # next scrape. (A Target in the key compares by identity: a replaced one is new.)
        key = (tuple((t, t.version) for t in targets), loads, self._pacing.version, shard)
        if self._target_text[0] != key:
            families: list[Metric] = [
                *self._target_series.families(targets),
                *self._exporter_series.families(targets, loads, self._pacing.tallies(), shard),
            ]
            self._target_text = (key, generate_latest(_Families(families)))
        return self._target_text[1]


class _Families(Collector):
    """Families already built, for generate_latest."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families
