"""A scrape does not hold more memory after it than before it: it renders again the jobs whose
tally changed and drops their old texts (exporter.exposition.probe_series), so what it keeps is
one text per open job, whatever changed."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator

import pytest

from exporter.exposition.scrape import Exposition
from exporter.probing.jobs import JobKey, ProbeSkip
from exporter.results import ResultStore
from tests.test_metrics_reference import CHECKS, _result

KEYS = [JobKey("local", f"model-{m:02d}:8b", p) for m in range(20) for p in ("a", "b", "c")]


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def in_use() -> int:
    return tracemalloc.get_traced_memory()[0]


def scraped(rng: random.Random) -> tuple[ResultStore, Exposition, int]:
    """Every job probed once and the text cached, as a scrape leaves it; and the text's size."""
    store = ResultStore()
    exposition = Exposition(store, live_collectors=())
    for i, key in enumerate(KEYS):
        store.open(key, CHECKS)
        store.record(_result(key, rng, i))
    return store, exposition, len(exposition.render())


def again(store: ResultStore, keys: list[JobKey]) -> None:
    """The jobs' last results once more: new tallies, texts of the same shape as before."""
    latest = store.latest()
    for key in keys:
        assert store.record(latest[key])


@pytest.mark.usefixtures("traced")
def test_a_scrape_after_probe_ends_holds_no_more_memory() -> None:
    rng = random.Random(7)
    store, exposition, text = scraped(rng)
    ended = KEYS[::2]
    again(store, ended)
    ended_text = text * len(ended) // len(KEYS)

    before = in_use()
    exposition.body()
    grown = in_use() - before

    # The ended jobs' new texts took the place of their old ones, and the new joined text that
    # of the old one: kept alongside, they would be new memory here (their size and more).
    assert grown < ended_text // 10, (grown, ended_text)


@pytest.mark.usefixtures("traced")
def test_skips_and_results_replace_their_jobs_texts() -> None:
    store, exposition, text = scraped(random.Random(8))
    for i, key in enumerate(KEYS[::2]):
        store.record(ProbeSkip(key, "not_loaded", "skipped", 1.8e9 + i, 300.0))
    again(store, KEYS[1::2])

    before = in_use()
    exposition.body()
    assert in_use() - before < text // 10
