"""Changes become data: a model's digest and the server's version, counted and logged once.

Against the Ollama double over loopback: its ModelScript.digest (through set_models) and its
version change between two listings or health checks, and the counters must go 0 -> 1 exactly
once per change, log one line each, and stay put across a failed listing or check.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.exposition.scrape import Exposition
from exporter.probing.targets import Target
from tests.fakes.ollama_double import ModelScript, OllamaDouble

GEMMA = "gemma3:12b"
LLAMA = "llama3.2"
OLD = hashlib.sha256(b"old").hexdigest()
NEW = hashlib.sha256(b"new").hexdigest()


def models(gemma_digest: str = OLD) -> list[ModelScript]:
    return [ModelScript(GEMMA, digest=gemma_digest), ModelScript(LLAMA, digest="ab" * 32)]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(models(), version="0.32.15") as d:
        yield d


class Setup:
    def __init__(self, double: OllamaDouble, clients: Any, **top: Any) -> None:
        data = {"targets": [{"name": "local", "url": double.url}], **top}
        self.config = parse_config(data, "test.yaml", {})
        self.target = Target(self.config.targets[0], *clients)
        self.exposition = Exposition(targets=lambda: [self.target], live_collectors=())

    def refresh(self) -> bool:
        return self.target.refresh_inventory(self.config, 5.0)

    def value(self, name: str, **labels: str) -> float | None:
        text = self.exposition.render().decode()
        found = [
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        ]
        assert len(found) <= 1, found
        return found[0] if found else None

    def changes(self, model: str = GEMMA) -> float | None:
        return self.value("ollama_model_changes_total", target="local", model=model)

    def version_changes(self) -> float | None:
        return self.value("ollama_server_version_changes_total", target="local")


def change_lines(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if what in r.getMessage()]


# --- model digests ------------------------------------------------------------------------


def test_model_info_carries_the_short_digest(double: OllamaDouble, clients: Any) -> None:
    setup = Setup(double, clients)
    setup.refresh()
    assert setup.value("ollama_model_info", model=GEMMA, digest=OLD[:12]) == 1
    assert setup.value("ollama_model_info", model="llama3.2:latest", digest="ab" * 6) == 1


def test_digest_change_counts_once_and_logs_once(
    double: OllamaDouble, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    setup = Setup(double, clients)
    setup.refresh()
    assert setup.changes() == 0  # created at zero when first listed
    assert setup.changes("llama3.2:latest") == 0
    setup.refresh()  # the same listing again: no change
    assert setup.changes() == 0

    double.set_models(models(NEW))  # `ollama pull` brought a new version of gemma
    setup.refresh()
    assert setup.changes() == 1
    setup.refresh()
    setup.refresh()
    assert setup.changes() == 1  # one change, however often it is listed since
    assert setup.changes("llama3.2:latest") == 0
    assert setup.value("ollama_model_info", model=GEMMA, digest=NEW[:12]) == 1
    assert change_lines(caplog, "changed digest") == [
        f"target local: model {GEMMA} changed digest {OLD[:12]} -> {NEW[:12]}"
    ]


def test_failed_listing_is_no_change(double: OllamaDouble, clients: Any) -> None:
    setup = Setup(double, clients)
    setup.refresh()
    double.fail_endpoint("/api/tags", 500)
    assert setup.refresh() is False
    assert setup.changes() == 0
    double.set_models([])  # an Ollama back before it scanned its models: no change either
    double.fail_endpoint("/api/tags", None)
    assert setup.refresh() is True
    assert setup.changes() == 0
    double.set_models(models(NEW))
    setup.refresh()
    assert setup.changes() == 1
    double.fail_endpoint("/api/tags", 503)
    setup.refresh()
    assert setup.changes() == 1  # kept through the failure, not reset


def test_model_back_under_a_new_digest_counts_as_a_change(
    double: OllamaDouble, clients: Any
) -> None:
    setup = Setup(double, clients)
    setup.refresh()
    double.set_models([ModelScript(LLAMA, digest="ab" * 32)])  # gemma deleted
    setup.refresh()
    assert setup.changes() is None  # its jobs are gone, and its series with them
    double.set_models(models(NEW))  # pulled again: another build than the one remembered
    setup.refresh()
    assert setup.changes() == 1


def test_configured_model_counts_changes_under_its_configured_name(
    double: OllamaDouble, clients: Any
) -> None:
    setup = Setup(double, clients, models=["Gemma3:12B"])
    setup.refresh()
    assert setup.changes("Gemma3:12B") == 0
    double.set_models(models(NEW))
    setup.refresh()
    assert setup.changes("Gemma3:12B") == 1


# --- server version -----------------------------------------------------------------------


def test_version_change_counts_once_and_logs_once(
    double: OllamaDouble, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    setup = Setup(double, clients)
    assert setup.version_changes() == 0  # created at zero, before the first check
    setup.target.check_health(5.0)
    setup.target.check_health(5.0)
    assert setup.version_changes() == 0
    double.version = "0.33.0"  # upgraded
    setup.target.check_health(5.0)
    setup.target.check_health(5.0)
    assert setup.version_changes() == 1
    assert setup.value("ollama_build_info", target="local", version="0.33.0") == 1
    assert change_lines(caplog, "version changed") == [
        "target local: Ollama version changed 0.32.15 -> 0.33.0"
    ]


def test_failed_health_check_is_no_version_change(double: OllamaDouble, clients: Any) -> None:
    setup = Setup(double, clients)
    setup.target.check_health(5.0)
    double.fail_endpoint("/api/version", 500)
    setup.target.check_health(5.0)
    double.fail_endpoint("/api/version", None)
    setup.target.check_health(5.0)  # back with the same version: an outage, not an upgrade
    assert setup.version_changes() == 0
    double.fail_endpoint("/api/version", 503)
    setup.target.check_health(5.0)
    double.version = "0.33.0"
    double.fail_endpoint("/api/version", None)
    setup.target.check_health(5.0)  # restarted into a new version during the outage
    assert setup.version_changes() == 1
