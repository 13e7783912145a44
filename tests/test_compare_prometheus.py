"""Probes recovered from what Prometheus holds (exporter.compare.prometheus_source).

The unit tests serve hand-built series from a fake Prometheus HTTP API on loopback: it answers
instant queries of raw range selectors with the samples inside the window, applies the target
regex as Prometheus would, and keeps every query it got. The last test runs the real thing:
Debian's Prometheus scraping the exporter, which probes the Ollama double.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from exporter.compare.observations import Observation
from exporter.compare.prometheus_source import (
    PrometheusRecord,
    PrometheusSourceError,
    parse_range,
    read_prometheus,
)
from tests.e2e.stack import EXPORTER_JOB, Prometheus, start_exporter, start_prometheus, wait_for
from tests.exporter_process import exporter_env
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble

# The names as docs/metrics.md lists them, written out here rather than imported, so a wrong
# name in the module under test fails these tests.
RUN = "ollama_probe_last_run_timestamp_seconds"
OK_AT = "ollama_probe_last_success_timestamp_seconds"
PROBES = "ollama_probes_total"
TOKENS = "ollama_probe_generated_tokens_total"
OK = "ollama_probe_success"
DURATION = "ollama_probe_last_duration_seconds"
TTFT = "ollama_probe_last_time_to_first_token_seconds"
RATE = "ollama_probe_tokens_per_second"
LOAD = "ollama_probe_load_duration_seconds"
COLD = "ollama_probe_cold_start"
CHARS = "ollama_probe_response_characters"
WORDS = "ollama_probe_response_words"
VRAM = "ollama_model_vram_bytes"
UP = "ollama_up"


def failures(reason: str) -> str:
    return f'ollama_probe_failures_total{{reason="{reason}"}}'


def check(name: str) -> str:
    return f'ollama_probe_check_passed{{check="{name}"}}'


def gpu(name: str, index: int) -> str:
    return f'{name}{{gpu="{index}",uuid="GPU-{index}"}}'


PEAK, UTIL = "ollama_probe_gpu_memory_peak_bytes", "ollama_probe_gpu_utilization_ratio"

T0 = 1_700_000_000.0
SCRAPE_S = 5.0
JOB = {
    "job": "ollama-probe-exporter",
    "instance": "127.0.0.1:9",
    "target": "local",
    "model": "m:1b",
    "prompt": "hello",
}
# Labels a series of only (target, model) carries, as ollama_model_vram_bytes does.
MODEL_JOB = {k: v for k, v in JOB.items() if k != "prompt"}
Scrape = Mapping[str, float]  # series spec ('name' or 'name{label="value"}') -> value


# --- the fake Prometheus -----------------------------------------------------------------------


@dataclass
class Series:
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)


_SPEC = re.compile(r"(\w+)(?:\{(.*)\})?")
_QUERY = re.compile(r'(\w+)(?:\{target=~"((?:[^"\\]|\\.)*)"\})?\[(\d+)(ms|s)\]')


def series_from(
    scrapes: Sequence[Scrape], labels: Mapping[str, str] = JOB, start: float = T0
) -> list[Series]:
    """One scrape every SCRAPE_S from `start`; a spec missing from a scrape has no sample."""
    found: dict[str, Series] = {}
    for i, scrape in enumerate(scrapes):
        for spec, value in scrape.items():
            match = _SPEC.fullmatch(spec)
            assert match, spec
            name, extra = match.group(1), dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            base = MODEL_JOB if name == VRAM and labels is JOB else labels
            own = {"__name__": name, **base, **extra}
            if name in (VRAM, UP):
                own.pop("prompt", None)
            key = json.dumps(own, sort_keys=True)
            found.setdefault(key, Series(own)).samples.append((start + i * SCRAPE_S, value))
    return list(found.values())


class FakePrometheus:
    """/api/v1/query for `metric[Ns]` and `metric{target=~"re"}[Ns]`, from `series`."""

    def __init__(self, series: Sequence[Series], *, reply: tuple[int, bytes] | None = None):
        self.series = list(series)
        self.reply = reply  # a canned (status, body) answer to every query instead
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = parse_qs(urlsplit(self.path).query)
                status, body = fake.answer(params["query"][0], float(params["time"][0]))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def answer(self, query: str, at: float) -> tuple[int, bytes]:
        self.queries.append(query)
        if self.reply is not None:
            return self.reply
        match = _QUERY.fullmatch(query)
        if match is None:
            error = {"status": "error", "errorType": "bad_data", "error": f"fake: {query}"}
            return 400, json.dumps(error).encode()
        name, pattern, amount, unit = match.groups()
        window = int(amount) / (1000 if unit == "ms" else 1)
        regex = None if pattern is None else re.compile(json.loads(f'"{pattern}"'))
        result = [
            {
                "metric": s.labels,
                "values": [[t, str(v)] for t, v in s.samples if at - window <= t <= at],
            }
            for s in self.series
            if s.labels["__name__"] == name
            and (regex is None or regex.fullmatch(s.labels.get("target", "")))
        ]
        result = [r for r in result if r["values"]]
        data = {"resultType": "matrix", "result": result}
        return 200, json.dumps({"status": "success", "data": data}).encode()


@pytest.fixture
def served() -> Iterator[Any]:
    """Call with series: a started fake Prometheus serving them (stopped after the test)."""
    started: list[FakePrometheus] = []

    def start(series: Sequence[Series], **kwargs: Any) -> FakePrometheus:
        fake = FakePrometheus(series, **kwargs).__enter__()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.__exit__()


def read(fake: FakePrometheus, scrapes: int, **kwargs: Any) -> PrometheusRecord:
    """The record of the last hour up to the last scrape."""
    return read_prometheus(fake.url, 3600, end=T0 + (scrapes - 1) * SCRAPE_S, **kwargs)


# --- the table ---------------------------------------------------------------------------------

SUCCESS_GAUGES: Scrape = {
    OK: 1,
    DURATION: 1.5,
    TTFT: 0.25,
    RATE: 42.0,
    LOAD: 0.01,
    COLD: 0,
    CHARS: 120,
    WORDS: 20,
    check("min_words"): 1,
    check("language"): 0,
    gpu(PEAK, 0): 1000,
    gpu(PEAK, 1): 2000,
    gpu(UTIL, 0): 0.5,
    gpu(UTIL, 1): 0.7,
    VRAM: 7_500_000_000,
}
SUCCESS_FIGURES: dict[str, Any] = {
    "reason": None,
    "duration_s": 1.5,
    "ttft_s": 0.25,
    "tokens_per_second": 42.0,
    "load_s": 0.01,
    "cold_start": False,
    "characters": 120,
    "words": 20,
    "checks": {"min_words": True, "language": False},
    "gpu_peak_memory_bytes": 3000,
    "gpu_utilization_ratio": pytest.approx(0.6),
    "vram_bytes": 7_500_000_000,
}
FAILED_FIGURES: dict[str, Any] = {
    "ttft_s": None,
    "tokens_per_second": None,
    "load_s": None,
    "characters": None,
    "words": None,
    "checks": {},
    "gpu_peak_memory_bytes": None,
    "gpu_utilization_ratio": None,
}


def baseline(probes: float = 3, **extra: float) -> dict[str, float]:
    return {RUN: T0 - 20, OK_AT: T0 - 20, PROBES: probes, TOKENS: 100, **extra}


@dataclass(frozen=True)
class Case:
    name: str
    scrapes: list[Scrape]
    expected: list[dict[str, Any]]  # per observation, in time order: the fields to compare
    unseen: int = 0


CASES = [
    Case(
        "a skipped run moves the timestamp but is no probe; the next probe is one",
        [
            baseline(),
            {**baseline(), RUN: T0 + 2},
            {**SUCCESS_GAUGES, RUN: T0 + 8, OK_AT: T0 + 8, PROBES: 4, TOKENS: 150},
            {**SUCCESS_GAUGES, RUN: T0 + 8, OK_AT: T0 + 8, PROBES: 4, TOKENS: 150},
        ],
        [{"finished_at": T0 + 8, **SUCCESS_FIGURES}],
    ),
    Case(
        "two probes between scrapes: the last is observed, the other counted as unseen",
        [
            baseline(),
            {**SUCCESS_GAUGES, RUN: T0 + 4, OK_AT: T0 + 4, PROBES: 5, TOKENS: 200},
        ],
        [{"finished_at": T0 + 4, **SUCCESS_FIGURES}],
        unseen=1,
    ),
    Case(
        "a counter reset (exporter restart): the rise is the new value",
        [
            baseline(probes=50),
            {PROBES: 0, TOKENS: 0},  # restarted: counters at 0, no gauge until a probe ends
            {**SUCCESS_GAUGES, RUN: T0 + 9, OK_AT: T0 + 9, PROBES: 1, TOKENS: 40},
            {**SUCCESS_GAUGES, RUN: T0 + 14, OK_AT: T0 + 14, PROBES: 3, TOKENS: 120},
        ],
        [
            {"finished_at": T0 + 9, **SUCCESS_FIGURES},
            {"finished_at": T0 + 14, **SUCCESS_FIGURES},
        ],
        unseen=1,
    ),
    Case(
        "a restart between two scrapes: the counter drops from 50 to 2, so 2 probes ran",
        [
            baseline(probes=50),
            {**SUCCESS_GAUGES, RUN: T0 + 3, OK_AT: T0 + 3, PROBES: 2, TOKENS: 150},
        ],
        [{"finished_at": T0 + 3, **SUCCESS_FIGURES}],
        unseen=1,
    ),
    Case(
        "the failure reason is the one whose counter rose; a failure keeps its duration",
        [
            baseline(**{failures("timeout"): 1, failures("http_status"): 2}),
            {
                RUN: T0 + 4,
                OK_AT: T0 - 20,
                PROBES: 4,
                TOKENS: 100,
                OK: 0,
                DURATION: 0.2,
                COLD: 1,
                VRAM: 5,
                failures("timeout"): 1,
                failures("http_status"): 3,
            },
        ],
        [
            {
                "finished_at": T0 + 4,
                "reason": "http_status",
                "duration_s": 0.2,
                "cold_start": True,
                "vram_bytes": 5,
                **FAILED_FIGURES,
            }
        ],
    ),
    Case(
        "two reasons rose between scrapes: the last probe's reason cannot be told",
        [
            baseline(**{failures("timeout"): 0, failures("http_status"): 0}),
            {
                RUN: T0 + 4,
                PROBES: 5,
                OK: 0,
                DURATION: 30,
                failures("timeout"): 1,
                failures("http_status"): 1,
            },
        ],
        [{"reason": "unknown", "duration_s": 30, **FAILED_FIGURES}],
        unseen=1,
    ),
    Case(
        "a failure after a success: the answer gauges still hold the success and are not used",
        [
            baseline(**{failures("timeout"): 0}),
            {**SUCCESS_GAUGES, RUN: T0 + 3, OK_AT: T0 + 3, PROBES: 4, TOKENS: 150},
            {
                **SUCCESS_GAUGES,  # TTFT, rate, answer size, checks, GPU: the success's values
                RUN: T0 + 8,
                OK_AT: T0 + 3,
                PROBES: 5,
                TOKENS: 150,
                OK: 0,
                DURATION: 30.0,
                failures("timeout"): 1,
            },
        ],
        [
            {"finished_at": T0 + 3, **SUCCESS_FIGURES},
            {
                "finished_at": T0 + 8,
                "reason": "timeout",
                "duration_s": 30.0,
                "cold_start": False,
                **FAILED_FIGURES,
            },
        ],
    ),
    Case(
        "a model_not_found probe leaves the cold-start gauge as it was: unknown",
        [
            baseline(**{failures("model_not_found"): 0}),
            {
                RUN: T0 + 4,
                PROBES: 4,
                OK: 0,
                DURATION: 0.01,
                COLD: 1,
                failures("model_not_found"): 1,
            },
        ],
        [{"reason": "model_not_found", "cold_start": None, "duration_s": 0.01}],
    ),
    Case(
        "a success that counted no tokens: the rate gauge is an older probe's",
        [
            baseline(),
            {**SUCCESS_GAUGES, RUN: T0 + 4, OK_AT: T0 + 4, PROBES: 4, TOKENS: 100},
        ],
        [{"tokens_per_second": None, "ttft_s": 0.25}],
    ),
    Case(
        "a skip after the probe before the scrape: the probe's time is its success time",
        [
            baseline(),
            {**SUCCESS_GAUGES, RUN: T0 + 4.5, OK_AT: T0 + 2, PROBES: 4, TOKENS: 150},
        ],
        [{"finished_at": T0 + 2, "reason": None}],
    ),
    Case(
        "the job's first probe, before which only its counters existed, is an observation",
        [
            {PROBES: 0, TOKENS: 0},
            {**SUCCESS_GAUGES, RUN: T0 + 3, OK_AT: T0 + 3, PROBES: 1, TOKENS: 30},
        ],
        [{"finished_at": T0 + 3, **SUCCESS_FIGURES}],
    ),
    Case(
        "the first sample is the baseline: a probe it already shows is not counted",
        [
            {**SUCCESS_GAUGES, RUN: T0 - 1, OK_AT: T0 - 1, PROBES: 7, TOKENS: 30},
            {**SUCCESS_GAUGES, RUN: T0 - 1, OK_AT: T0 - 1, PROBES: 7, TOKENS: 30},
        ],
        [],
    ),
    Case(
        "a scrape without the success gauge cannot tell the outcome: counted, not recovered",
        [baseline(), {RUN: T0 + 4, PROBES: 4}],
        [],
        unseen=1,
    ),
]


def project(observation: Observation, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: getattr(observation, name) for name in fields}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_probes_are_recovered_from_the_scrapes(served: Any, case: Case) -> None:
    fake = served(series_from(case.scrapes))
    record = read(fake, len(case.scrapes))
    got = [project(o, want) for o, want in zip(record.observations, case.expected, strict=False)]
    assert len(record.observations) == len(case.expected), record.observations
    assert got == case.expected
    assert record.unseen_probes == case.unseen
    for o in record.observations:
        assert (o.target, o.model, o.prompt) == ("local", "m:1b", "hello")


# --- selection, reading and notes --------------------------------------------------------------


def one_probe(labels: Mapping[str, str]) -> list[Series]:
    return series_from(
        [baseline(), {**SUCCESS_GAUGES, RUN: T0 + 3, OK_AT: T0 + 3, PROBES: 4, TOKENS: 150}],
        labels,
    )


def test_target_names_are_matched_literally_in_the_selector(served: Any) -> None:
    names = ["a.b", "axb", "c|d", "c", 'q"x\\y']
    fake = served([s for name in names for s in one_probe({**JOB, "target": name})])
    record = read(fake, 2, targets=["a.b", "c|d", 'q"x\\y'])
    assert sorted(o.target for o in record.observations) == ["a.b", "c|d", 'q"x\\y']
    assert record.targets == ["a.b", "c|d", 'q"x\\y']
    assert f'{PROBES}{{target=~"a\\\\.b|c\\\\|d|q\\"x\\\\\\\\y"}}[3600s]' in fake.queries


def test_no_targets_reads_every_target_without_a_filter(served: Any) -> None:
    fake = served([*one_probe({**JOB, "target": "x"}), *one_probe({**JOB, "target": "y"})])
    record = read(fake, 2)
    assert record.targets == ["x", "y"]
    assert len(record.observations) == 2
    assert f"{PROBES}[3600s]" in fake.queries
    assert not any("{" in query for query in fake.queries)


def test_a_job_scraped_from_two_instances_is_read_twice_and_the_notes_say_so(
    served: Any,
) -> None:
    fake = served([*one_probe(JOB), *one_probe({**JOB, "instance": "127.0.0.1:10"})])
    record = read(fake, 2)
    assert len(record.observations) == 2
    assert any("more than one scraped series" in note for note in record.notes)
    single = read(served(one_probe(JOB)), 2)
    assert not any("more than one scraped series" in note for note in single.notes)


def test_a_range_longer_than_a_day_is_read_a_day_at_a_time_without_losing_a_probe(
    served: Any,
) -> None:
    # Scrapes every 5 s across the edge between the last day and the one before it.
    edge = T0 + 2 * 86400.0
    first = edge - 2 * SCRAPE_S
    scrapes = [
        baseline(),
        baseline(),
        {**SUCCESS_GAUGES, RUN: first + 9, OK_AT: first + 9, PROBES: 4, TOKENS: 150},
        {**SUCCESS_GAUGES, RUN: first + 14, OK_AT: first + 14, PROBES: 5, TOKENS: 190},
    ]
    fake = served(series_from(scrapes, start=first))
    record = read_prometheus(fake.url, 3 * 86400, end=edge + 86400)
    assert [o.finished_at for o in record.observations] == [first + 9, first + 14]
    assert sum(query.startswith(f"{PROBES}[") for query in fake.queries) == 3
    assert record.start == edge - 2 * 86400


def test_the_notes_give_the_intervals_and_warn_when_scrapes_are_too_rare(served: Any) -> None:
    # A probe every 20 s, scraped every 5 s.
    scrapes = [baseline()] + [
        {**SUCCESS_GAUGES, RUN: T0 - 20 + 20 * (i // 4), PROBES: 3 + i // 4, TOKENS: 100 + i}
        for i in range(1, 12)
    ]
    record = read(served(series_from(scrapes)), len(scrapes))
    assert record.scrape_interval_s == SCRAPE_S
    assert record.probe_interval_s == 20
    assert len(record.observations) == 2
    assert any("scraped every 5 s and the jobs ran every 20 s" in n for n in record.notes)
    assert not any("are lost" in note for note in record.notes)

    # A probe at every scrape, and two between some: the scrapes are too rare.
    rare = [baseline()] + [
        {**SUCCESS_GAUGES, RUN: T0 + 4 * i, PROBES: 3 + 2 * i, TOKENS: 100 + i} for i in range(1, 5)
    ]
    record = read(served(series_from(rare)), len(rare))
    assert record.probe_interval_s is not None and record.probe_interval_s <= SCRAPE_S
    assert record.unseen_probes == 4
    assert any("are lost" in note for note in record.notes)
    assert any("4 probes" in note for note in record.notes)


def test_ollama_up_names_targets_that_have_no_probe_series(served: Any) -> None:
    down = {**JOB, "target": "down"}
    fake = served([*one_probe(JOB), *series_from([{UP: 0}, {UP: 0}], down)])
    assert read(fake, 2).targets == ["down", "local"]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (
            (
                422,
                b'{"status":"error","errorType":"execution","error":"query processing would '
                b'load too many samples into memory"}',
            ),
            "HTTP 422, execution): query processing would load too many samples",
        ),
        ((200, b'{"status":"error","errorType":"bad_data","error":"bad"}'), "bad_data): bad"),
        ((502, b"<html>Bad Gateway</html>"), "HTTP 502 with a body that is not a JSON object"),
        ((200, b"[1, 2]"), "not a JSON object"),
        (
            (200, b'{"status":"success","data":{"resultType":"vector","result":[]}}'),
            "with a vector, not a matrix",
        ),
    ],
    ids=["prometheus-error", "error-status-200", "not-json", "not-an-object", "not-a-matrix"],
)
def test_a_failed_query_is_a_source_error_naming_the_url(
    served: Any, reply: tuple[int, bytes], message: str
) -> None:
    fake = served([], reply=reply)
    with pytest.raises(PrometheusSourceError) as caught:
        read(fake, 1)
    assert fake.url in str(caught.value)
    assert message in str(caught.value)


def test_an_unreachable_prometheus_is_a_source_error_naming_the_url() -> None:
    with socket.socket() as sock:  # a port that was free and is now closed: refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(PrometheusSourceError, match=f"cannot reach Prometheus at {url}"):
        read_prometheus(url, 3600, end=T0)


# --- parse_range -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 604800),
        ("12h", 43200),
        ("90m", 5400),
        ("1h30m", 5400),
        ("45s", 45),
        ("1500ms", 1.5),
        ("2w", 1209600),
        ("1y", 31536000),
        ("1d12h", 129600),
        (" 7d ", 604800),
    ],
)
def test_parse_range_reads_prometheus_durations(text: str, seconds: float) -> None:
    assert parse_range(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7 days", "1.5h", "30m1h", "-1d", "7D", "0s", "0d0h"])
def test_parse_range_rejects_anything_else_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"Prometheus duration|longer than zero") as caught:
        parse_range(text)
    assert repr(text) in str(caught.value)


# --- a real Prometheus scraping the real exporter ----------------------------------------------

GOOD, BAD = "good:1b", "bad:1b"  # the double answers GOOD and fails BAD with HTTP 500
FLAKY = "flaky:1b"  # answers until Prometheus saw it succeed, then fails
ANSWER = "Avocado is rich in potassium and fibre, and it keeps well."
PROBE_S, SCRAPE = 1.0, "500ms"  # scrapes twice per probe interval: few probes go unseen
RANGE_S = 600.0
EVENTS = 8  # probes of each model Prometheus must hold before the record is read


def live_config(url: str) -> dict[str, Any]:
    return {
        "targets": [{"name": "local", "url": url}],
        "prompts": [{"id": "hello", "text": "Say hello.", "interval": f"{PROBE_S}s"}],
        "probe": {
            "timeout": "800ms",
            "health_interval": "1s",
            "inventory_interval": "30s",
            "max_duty_cycle": 1.0,  # two jobs every second would be stretched otherwise
        },
        "gpu": {"enabled": False},
    }


def scrape_config(exporter: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE},
        "scrape_configs": [{"job_name": EXPORTER_JOB, "static_configs": [{"targets": [exporter]}]}],
    }


def raw_matrix(prometheus: Prometheus, selector: str, at: float) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{prometheus.url}/api/v1/query", params={"query": selector, "time": at}, timeout=10
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def probes_counted(prometheus: Prometheus, at: float) -> dict[str, float]:
    """Per model, how much ollama_probes_total rose over the range: last minus first sample.

    Prometheus' own resets() says there was no reset, so no reset handling is needed here.
    """
    resets = prometheus.query(f"resets(ollama_probes_total[{RANGE_S:.0f}s]) > 0")
    assert not resets, resets
    rose: dict[str, float] = {}
    for series in raw_matrix(prometheus, f"ollama_probes_total[{RANGE_S:.0f}s]", at):
        values = [float(v) for _, v in series["values"]]
        model = series["metric"]["model"]
        rose[model] = rose.get(model, 0.0) + values[-1] - values[0]
    return rose


def enough_probes(prometheus: Prometheus) -> bool:
    seen = prometheus.query(
        f"changes(ollama_probe_last_run_timestamp_seconds[{RANGE_S:.0f}s]) >= {EVENTS}"
    )
    return {s["metric"]["model"] for s in seen} >= {GOOD, BAD}


def flaky_failed_after_success(prometheus: Prometheus, double: OllamaDouble) -> bool:
    """Fail FLAKY once Prometheus saw it succeed; true once Prometheus saw it fail too.

    Its answer gauges then hold the success while its later probes fail: the values that must
    not leak into the failures' observations.
    """
    # Two changes: successes after the first sample, which is only the record's baseline.
    succeeded = prometheus.query(
        f'changes(ollama_probe_last_success_timestamp_seconds{{model="{FLAKY}"}}[1h]) >= 2'
    )
    double.set_fault(FLAKY, Fault.STATUS_500 if succeeded else Fault.NONE)
    return bool(prometheus.query(f'ollama_probe_failures_total{{model="{FLAKY}"}} > 0'))


@pytest.mark.e2e
def test_a_real_prometheus_record_of_the_exporter_gives_its_probes(tmp_path: Path) -> None:
    models = [
        ModelScript(GOOD, answer=ANSWER, token_interval=0.001),
        ModelScript(BAD, fault=Fault.STATUS_500),
        ModelScript(FLAKY, answer=ANSWER),
    ]
    with OllamaDouble(models) as double, ExitStack() as stack:
        exporter = start_exporter(tmp_path, live_config(double.url), stack)
        prometheus = start_prometheus(tmp_path, scrape_config(exporter.address), stack)
        wait_for(
            # Both every time: the first one steers the double.
            lambda: all(
                [flaky_failed_after_success(prometheus, double), enough_probes(prometheus)]
            ),
            timeout=40,
            what=f"{EVENTS} probes of each model and a failure of {FLAKY} in Prometheus",
            details=lambda: exporter.process.log_tail() + "\n" + prometheus.process.log_tail(),
        )
        end = time.time()
        record = read_prometheus(prometheus.url, RANGE_S, ["local"], end=end)
        counted = probes_counted(prometheus, end)
        kept_ttft = prometheus.query(
            f'ollama_probe_last_time_to_first_token_seconds{{model="{FLAKY}"}}'
        )
        command = [sys.executable, "-m", "exporter", "compare", "--from-prometheus"]
        cli = subprocess.run(
            [*command, prometheus.url, "--range", "10m", "--output", "json", "--seed", "3"],
            env=exporter_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # The command builds its report from the same record: failures in it make the status 1.
    assert cli.returncode == 1, cli.stderr
    report = json.loads(cli.stdout)
    assert (report["rounds"], report["per_visit"], report["seed"]) == (None, None, 3)
    assert "Prometheus" in report["method"] and report["notes"]
    by_name = {r["model"]: r for r in report["results"]}
    assert by_name[GOOD]["n"] >= EVENTS - 2 and by_name[GOOD]["failures"] == {}
    assert by_name[BAD]["n"] == 0 and by_name[BAD]["failures"]["http_status"] >= EVENTS - 1

    by_model = {m: [o for o in record.observations if o.model == m] for m in (GOOD, BAD)}
    assert record.targets == ["local"]
    assert len(by_model[GOOD]) >= EVENTS - 1 and len(by_model[BAD]) >= EVENTS - 1
    # Every probe the counter counts is either an observation or an unseen probe.
    assert len(record.observations) + record.unseen_probes == sum(counted.values())
    assert record.unseen_probes <= len(record.observations) // 2, record.notes

    for o in by_model[GOOD]:
        assert o.success and o.prompt == "hello" and o.target == "local"
        assert o.duration_s is not None and o.duration_s > 0
        assert o.ttft_s is not None and 0 < o.ttft_s <= o.duration_s
        assert o.tokens_per_second is not None and o.tokens_per_second > 0
        assert (o.characters, o.words) == (len(ANSWER), len(ANSWER.split()))
        assert o.cold_start is not None
        assert record.start < o.finished_at <= end
    for o in by_model[BAD]:
        assert o.reason == "http_status"
        assert o.duration_s is not None and o.duration_s > 0
        # The answer gauges of a failing job never existed; nothing may be invented for it.
        assert (o.ttft_s, o.tokens_per_second, o.characters, o.checks) == (None, None, None, {})
    assert kept_ttft, "the exporter should keep the last successful TTFT of the failing model"
    flaky = [o for o in record.observations if o.model == FLAKY]
    assert {o.reason for o in flaky} == {None, "http_status"}
    for o in flaky:
        assert (o.ttft_s is None) == (o.reason is not None), o
        assert (o.characters is None) == (o.reason is not None), o
    times = [o.finished_at for o in by_model[GOOD]]
    assert times == sorted(times) and len(set(times)) == len(times)

    assert record.scrape_interval_s == pytest.approx(0.5, abs=0.1)
    assert record.probe_interval_s == pytest.approx(PROBE_S, rel=0.3)
    assert any("scraped every 0.5 s" in note for note in record.notes)
