"""The probe series' own rendering against stock prometheus_client holding the same series.

The ResultStore keeps plain per-job tallies and exporter.exposition.probe_series re-renders only
the jobs whose tally changed; stock prometheus_client objects (tests/stock_rendering.py, also the
scrape-cost baseline) are the reference. The same history goes to both, and after every step
the two texts must carry the same family headers in the same order and the same sample lines,
so a stale per-job cache or an escaping slip shows.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.exposition.probe_series import ProbeSeries
from exporter.exposition.scrape import Exposition
from exporter.gpu import ProbeGpuUsage
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.probe import BackendTimings, ProbeOutcome, Reason
from exporter.results import ResultStore
from tests.fakes.static_target import StaticTarget
from tests.stock_rendering import StockProbeMetrics

HOSTILE = ('quote"d', "back\\slash", "new\nline", "zażółć:7b", "🥑", "", "a,b=c}")
CHECKS = ("min_words", "contains_any", "language")


class Pair:
    """The exporter's store and renderer, and the stock reference, given the same history."""

    def __init__(self) -> None:
        self.store = ResultStore()
        self.series = ProbeSeries()
        self.registry = CollectorRegistry(auto_describe=False)
        self.stock = StockProbeMetrics(self.registry)

    def register(self, key: JobKey, checks: tuple[str, ...], *, energy: bool = False) -> None:
        self.store.open(key, checks, energy=energy)
        self.stock.register(key, checks, energy=energy)

    def remove(self, key: JobKey) -> None:
        self.store.close(key)
        self.stock.remove(key)

    def observe(self, result: ProbeResult) -> None:
        assert self.store.record(result)
        self.stock.observe(result)

    def skip(self, item: ProbeSkip) -> None:
        assert self.store.record(item)
        self.stock.skip(item)

    def assert_same(self) -> None:
        mine = self.series.render(self.store.tallies()[1]).decode().splitlines()
        stock = generate_latest(self.registry).decode().splitlines()
        assert [h for h in mine if h.startswith("#")] == [h for h in stock if h.startswith("#")]
        assert sorted(mine) == sorted(stock)


def _result(key: JobKey, rng: random.Random, i: int) -> ProbeResult:
    cold = rng.choice([None, True, False])
    if rng.random() < 0.3:
        reason = rng.choice(list(Reason))
        outcome = ProbeOutcome(reason, "detail", rng.uniform(0, 700))
        return ProbeResult(key, outcome, 1.79e9 + i, rng.choice([60.0, 300.0, 1e7]), cold)
    seconds = rng.choice([0.0, 0.1, 0.25, 1e-9, 59.999, 60.0, 600.0, 601.0, rng.uniform(0, 700)])
    server = BackendTimings(
        total_s=rng.choice([None, seconds]),
        load_s=rng.choice([None, 0.0, 0.5]),
        prompt_eval_s=rng.choice([None, 0.2]),
        eval_s=rng.choice([None, 0.0, seconds / 2 + 1e-6]),
        prompt_tokens=rng.choice([None, 31]),
        eval_count=rng.choice([None, 0, 400, 2_500_000]),  # large: Go-style exponent
        done_reason="stop",
    )
    outcome = ProbeOutcome(
        None,
        "ok",
        seconds,
        rng.choice([None, seconds / 3]),
        "Awokado zawiera potas. " * rng.randint(0, 5),
        rng.choice([None, server]),
    )
    checks = {c: rng.random() < 0.5 for c in rng.sample(CHECKS, rng.randint(0, 3))}
    gpu = tuple(
        ProbeGpuUsage(
            g,
            f"GPU-{g}",
            rng.choice([None, 0.87]),
            rng.choice([None, 7 << 30]),
            rng.choice([None, 0.0, 41.5, 123.456]),
        )
        for g in range(rng.randint(0, 2))
    )
    return ProbeResult(key, outcome, 1.79e9 + i, 300.0, cold, checks, gpu, 7_500_000_000)


@pytest.mark.parametrize("seed", range(3))
def test_same_lines_as_stock_after_every_write(seed: int) -> None:
    rng = random.Random(seed)
    keys = [
        JobKey(t, m, p)
        for t, m, p in itertools.product(
            ["local", 'quote"d back\\slash'], ["gemma3:12b", *HOSTILE[3:]], ["ok", "p\n"]
        )
    ]
    pair = Pair()
    registered: set[JobKey] = set()
    pair.assert_same()  # headers only
    for i in range(150):
        key = rng.choice(keys)
        if key not in registered:
            checks = tuple(rng.sample(CHECKS, rng.randint(0, 3)))
            pair.register(key, checks, energy=rng.random() < 0.5)
            registered.add(key)
        elif rng.random() < 0.05:
            pair.remove(key)  # a job that left the inventory takes its series with it
            registered.discard(key)
        elif rng.random() < 0.05:
            pair.register(key, CHECKS)  # a reload: the job keeps its values
        elif rng.random() < 0.15:
            reason = rng.choice(["not_loaded", "residency_unknown", "overrun"])
            pair.skip(ProbeSkip(key, reason, "skipped", 1.79e9 + i, 300.0))
        else:
            pair.observe(_result(key, rng, i))
        pair.assert_same()


def test_counters_survive_reopening_and_reset_after_closing() -> None:
    store, series = ResultStore(), ProbeSeries()
    key = JobKey("local", "gemma3:12b", "liveness")
    failed = ProbeResult(key, ProbeOutcome(Reason.CONNECT, "refused", 0.01), 1.79e9, 300.0)

    def lines() -> list[str]:
        return series.render(store.tallies()[1]).decode().splitlines()

    store.open(key, ())
    store.record(failed)
    assert lines()  # rendered, and kept by the renderer
    store.open(key, ("min_words",))
    line = 'ollama_probes_total{model="gemma3:12b",prompt="liveness",target="local"}'
    assert f"{line} 1.0" in lines()
    store.close(key)
    store.open(key, ())
    assert f"{line} 0.0" in lines()


def one_member(data: bytes) -> bytes:
    """Decode the way httpx does: one gzip member, and nothing may follow it."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = decoder.decompress(data) + decoder.flush()
    assert decoder.eof and decoder.unused_data == b""
    return text


class Live(Collector):
    """A live reading that changes at every scrape, like the process collector's."""

    def __init__(self) -> None:
        self.scrapes = 0

    def collect(self) -> Iterator[Metric]:
        self.scrapes += 1
        yield GaugeMetricFamily("live_scrapes", "Scrapes so far.", value=self.scrapes)


def test_gzip_is_the_same_text_in_one_member_and_follows_changes() -> None:
    live, store, local = Live(), ResultStore(), StaticTarget("local")
    exposition = Exposition(store, lambda: [local.target], live_collectors=(live,))
    key = JobKey("local", "gemma3:12b", "liveness")
    store.open(key, ())
    first = exposition.render()
    assert one_member(exposition.render(gzipped=True)) == first.replace(
        b"live_scrapes 1.0", b"live_scrapes 2.0"
    )
    store.record(ProbeResult(key, ProbeOutcome(Reason.TIMEOUT, "t", 120.0), 1.79e9, 300.0))
    second = exposition.render()
    assert b'reason="timeout",target="local"} 1.0' in second
    assert one_member(exposition.render(gzipped=True)) == second.replace(
        b"live_scrapes 3.0", b"live_scrapes 4.0"
    )
    local.health("0.32.15")  # a change of the per-target part
    third = exposition.render()
    assert b'ollama_build_info{target="local",version="0.32.15"} 1.0' in third
    assert one_member(exposition.render(gzipped=True)) == third.replace(
        b"live_scrapes 5.0", b"live_scrapes 6.0"
    )
