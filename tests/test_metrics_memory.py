"""A scrape does not hold more memory than before it: a job's text is rendered when its probe
ends, over the memory of its old text, not by the next scrape (exporter.metrics)."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator

import pytest

from exporter.exposition import Exposition
from exporter.results import JobKey, ProbeSkip
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


def scraped(rng: random.Random) -> tuple[Exposition, int]:
    """Every job probed once and the text cached, as a scrape leaves it; and the text's size."""
    exposition = Exposition(live_collectors=())
    for i, key in enumerate(KEYS):
        exposition.register_job(key, CHECKS)
        exposition.observe(_result(key, rng, i))
    return exposition, len(exposition.render())


@pytest.mark.usefixtures("traced")
def test_a_scrape_after_probe_ends_holds_no_more_memory() -> None:
    rng = random.Random(7)
    exposition, text = scraped(rng)
    ended = KEYS[::2]
    for i, key in enumerate(ended):
        exposition.observe(_result(key, rng, len(KEYS) + i))
    ended_text = text * len(ended) // len(KEYS)

    before = in_use()
    exposition.body()
    grown = in_use() - before

    # Rendered by the scrape, the ended jobs' texts would be new memory here (their size and
    # more); rendered as each probe ended, they took the place of the old ones.
    assert grown < ended_text // 10, (grown, ended_text)


@pytest.mark.usefixtures("traced")
def test_a_skip_and_a_re_registration_render_their_job_at_once() -> None:
    exposition, text = scraped(random.Random(8))
    for i, key in enumerate(KEYS[::2]):
        exposition.skip(ProbeSkip(key, "not_loaded", "skipped", 1.8e9 + i, 300.0))
    for key in KEYS[1::2]:
        exposition.register_job(key, CHECKS[:1])

    before = in_use()
    exposition.body()
    assert in_use() - before < text // 10
