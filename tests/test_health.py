"""A target's health state and its log: one line per transition, not one per check.

HealthTracker on its own with a hand-driven clock, then Target.check_health and
refresh_inventory against the Ollama double on loopback (stopped to take the target down).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from exporter.config import parse_config
from exporter.probing.health import HealthTracker, duration_text
from exporter.probing.targets import Target
from tests.fakes.ollama_double import ModelScript, OllamaDouble

LOGGER = "exporter.probing.health"


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


# --- the tracker ------------------------------------------------------------------------------


def test_first_check_up_logs_one_info_line_with_the_version(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tracker = HealthTracker("local", clock)
    assert tracker.snapshot().up is None  # unknown until the first check
    tracker.checked("0.32.15")
    clock.now += 15
    tracker.checked("0.32.15")
    state = tracker.snapshot()
    assert (state.up, state.since, state.version, state.failed_checks) == (
        True,
        1_000.0,
        "0.32.15",
        0,
    )
    assert records(caplog_info) == [(logging.INFO, "target local: up, Ollama 0.32.15")]


def test_first_check_down_logs_one_warning_with_the_reason(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tracker = HealthTracker("local", clock)
    for _ in range(3):
        tracker.checked(None, "ConnectError: [Errno 111] Connection refused")
        clock.now += 15
    state = tracker.snapshot()
    assert (state.up, state.since, state.failed_checks, state.error_at) == (
        False,
        1_000.0,
        3,
        1_030.0,
    )
    assert state.error == "ConnectError: [Errno 111] Connection refused"
    assert records(caplog_info) == [
        (
            logging.WARNING,
            "target local: health check failed, now down: "
            "ConnectError: [Errno 111] Connection refused",
        )
    ]


def test_down_then_recovered_logs_each_transition_once_with_the_outage_length(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tracker = HealthTracker("local", clock)
    tracker.checked("0.32.15")
    clock.now = 1_100.0
    tracker.checked(None, "HTTP 500")
    for _ in range(10):  # an outage of many checks: no line per check
        clock.now += 15
        tracker.checked(None, "HTTP 500")
    assert tracker.snapshot().failed_checks == 11
    clock.now = 1_100.0 + 245
    tracker.checked("0.33.0")
    state = tracker.snapshot()
    assert (state.up, state.since, state.version, state.failed_checks) == (
        True,
        1_345.0,
        "0.33.0",
        0,
    )
    # The error of the outage stays readable after it, with its time.
    assert (state.error, state.error_at) == ("HTTP 500", 1_250.0)
    # The totals behind ollama_health_checks_total and ollama_health_check_failures_total.
    assert (state.checks_made, state.checks_failed) == (13, 11)
    assert state.version_changes == 1  # it came back upgraded: one change, the outage is none
    assert records(caplog_info) == [
        (logging.INFO, "target local: up, Ollama 0.32.15"),
        (logging.WARNING, "target local: health check failed, now down: HTTP 500"),
        (logging.INFO, "target local: recovered after 4 min 5 s down, Ollama 0.33.0"),
        (logging.INFO, "target local: Ollama version changed 0.32.15 -> 0.33.0"),
    ]


def test_repeated_failures_are_only_debug_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    tracker = HealthTracker("local", Clock())
    tracker.checked(None, "timeout")
    tracker.checked(None, "timeout")
    assert [level for level, _ in records(caplog)] == [logging.WARNING, logging.DEBUG]
    assert records(caplog)[1][1] == "target local: still down after 2 failed health checks: timeout"


def test_a_hostile_error_or_name_stays_on_one_log_line(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    tracker = HealthTracker("evil\nFORGED", Clock())
    tracker.checked(None, "bad\nFORGED line")
    [(_, message)] = records(caplog_info)
    assert "\n" not in message
    assert message == "target evil\\nFORGED: health check failed, now down: bad\\nFORGED line"


def test_a_listing_is_recorded_with_its_time_and_counts() -> None:
    clock = Clock()
    tracker = HealthTracker("local", clock)
    tracker.listed(5, 3)
    state = tracker.snapshot()
    assert (state.listed_at, state.listed_models, state.probed_models) == (1_000.0, 5, 3)
    assert state.up is None  # a listing says nothing about /api/version


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42.4, "42 s"),
        (303, "5 min 3 s"),
        (7_500, "2 h 5 min"),
        (273_600, "3 d 4 h"),
        (-5, "0 s"),  # a clock step backwards
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


# --- through Target, against the double -------------------------------------------------------


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    models = [
        ModelScript("gemma3:12b"),
        ModelScript("mistral:7b"),
        ModelScript("nomic-embed-text", capabilities=["embedding"]),
    ]
    with OllamaDouble(models) as d:
        yield d


def make_target(url: str, clients: Any) -> tuple[Target, Any]:
    config = parse_config({"targets": [{"name": "local", "url": url}]}, "test.yaml", {})
    return Target(config.targets[0], *clients), config


def test_target_logs_the_outage_once_and_its_recovery(
    double: OllamaDouble, clients: Any, caplog_info: pytest.LogCaptureFixture
) -> None:
    target, _ = make_target(double.url, clients)
    target.check_health(5.0)
    double.stop()
    for _ in range(3):
        target.check_health(5.0)
    down = target.health.snapshot()
    assert (down.up, down.failed_checks, down.version) == (False, 3, double.version)
    assert down.error is not None and "ConnectError" in down.error
    double.start()
    target.check_health(5.0)
    assert target.health.snapshot().up is True
    lines = records(caplog_info)
    assert [level for level, _ in lines] == [logging.INFO, logging.WARNING, logging.INFO]
    assert lines[0][1] == f"target local: up, Ollama {double.version}"
    assert lines[1][1].startswith("target local: health check failed, now down: ")
    assert re.fullmatch(
        rf"target local: recovered after \d+ s down, Ollama {re.escape(double.version)}",
        lines[2][1],
    ), lines[2][1]


def test_target_health_error_is_redacted(clients: Any) -> None:
    """A target whose reply quotes the secret header back: the page must not show it."""
    secret = "tok-0123456789abcdef"

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, text=f"bad token {request.headers['Authorization']}")

    config = parse_config(
        {
            "targets": [
                {
                    "name": "local",
                    "url": "http://ollama.test:11434",
                    "headers": {"Authorization": f"Bearer {secret}"},
                }
            ]
        },
        "test.yaml",
        {},
    )
    client = httpx.Client(transport=httpx.MockTransport(echo))
    target = Target(config.targets[0], client, client)
    target.check_health(5.0)
    error = target.health.snapshot().error
    assert error is not None and "401" in error
    assert secret not in error


def test_a_successful_listing_is_recorded_with_listed_and_probed_counts(
    double: OllamaDouble, clients: Any
) -> None:
    target, config = make_target(double.url, clients)
    assert target.health.snapshot().listed_at is None
    assert target.refresh_inventory(config, 5.0)
    state = target.health.snapshot()
    assert state.listed_at is not None
    inventory = target.inventory
    assert inventory is not None
    # The embedding-only model is listed but gets no job.
    assert (state.listed_models, state.probed_models) == (3, len(inventory.models))
    assert "nomic-embed-text" not in inventory.models


def test_a_failed_listing_keeps_the_last_successful_one(double: OllamaDouble, clients: Any) -> None:
    target, config = make_target(double.url, clients)
    target.refresh_inventory(config, 5.0)
    before = target.health.snapshot()
    double.stop()
    assert not target.refresh_inventory(config, 5.0)  # failed; the last inventory is kept
    assert target.health.snapshot() == before
