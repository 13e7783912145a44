"""Every dashboard query against a real Prometheus filled by the exporter.

The exporter probes two Ollama test doubles (target `local`: three models; target `remote`: one
slower model that fails some probes on purpose; two prompts, short intervals) and an OpenAI
double (target `openai`, `protocol: openai`: one of `local`'s models, with llama.cpp's timings),
with the stand-in pynvml module first on its PYTHONPATH, so GPU series exist without a GPU.
Prometheus scrapes it with the shipped rules (time-scaled by tests/e2e/stack.py, names
unchanged). Then each panel query of the committed dashboards, and each annotation query (after
a model digest change, an Ollama version change and a reload made for them), with the variables
expanded to All and to one model, must return at least one series, queried the way Grafana
queries it (range queries over the test's lifetime, instant queries now); the variables'
label_values queries must return the targets, models and prompts; and the model table's sample
counts and relative speeds must be the numbers that follow from the exporter's samples
Prometheus holds. The comparison's queries return the openai target beside the ollama one,
except those of series its protocol does not have, where it is absent.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from grafana.dashgen.readback import (
    PanelQuery,
    expand,
    label_values_query,
    queries,
    query_panels,
    table_columns,
    variable_values,
    variables,
)
from tests.e2e.stack import (
    Prometheus,
    TimeScale,
    alerting_stack,
    start_exporter,
    wait_for,
)
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.fakes.openai_double import OpenAIDouble, OpenAIModelScript

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
STANDIN_DIR = ROOT / "tests" / "fakes" / "nvml_standin"
SCRAPE_SECONDS = 1
SCALE = TimeScale(1 / 60)  # an hour of the shipped rules takes a minute here
DEADLINE = 90.0  # for all queries together, once the data is there

POLISH_ANSWER = (
    "Awokado zawiera dużo potasu i błonnika, a także zdrowe tłuszcze. Jest to owoc, który "
    "wspiera serce i trawienie, i jest bardzo smaczny na śniadanie oraz na kolację."
)
# The single model of the "one model" expansion: its dot must be regex-escaped as Grafana does.
ONE_MODEL = "llama3.2:1b"
SLOW_MODEL = "mistral:7b"
# Answers in English: its answer checks fail, which makes OllamaAnswerCheckFailing fire and
# gives the "Firing alerts" table a row.
BAD_ANSWER_MODEL = "gemma3:1b"
MODELS = [
    ModelScript(ONE_MODEL, answer=POLISH_ANSWER, family="llama", token_interval=0.001),
    ModelScript(SLOW_MODEL, answer=POLISH_ANSWER, family="mistral", token_interval=0.01),
    ModelScript(BAD_ANSWER_MODEL, answer="Avocados are good for you.", token_interval=0.002),
]
# The second target's only model: slower than the fastest model of `local`, so relative speed
# is 100 % for it only when models are compared within their own target. Some of its probes
# fail, so its successful probes (n ok) are fewer than its probes (n all).
REMOTE_MODEL = "phi3:mini"
REMOTE_MODELS = [
    ModelScript(REMOTE_MODEL, answer=POLISH_ANSWER, family="phi3", token_interval=0.005),
]
# The openai target serves one of local's models, so the comparison shows it through both
# protocols; its GPU is the stand-in's too (gpu: true), so its energy panels fill as well.
OPENAI_MODELS = [OpenAIModelScript(ONE_MODEL, answer=POLISH_ANSWER, token_interval=0.002)]
JOBS = len(MODELS + REMOTE_MODELS) + len(OPENAI_MODELS)  # (target, model) rows
PROMPTS = {"liveness", "avocado_pl"}
TABLE = "Models on prompt $prompt"


def exporter_config(url: str, remote_url: str, openai_url: str) -> dict[str, Any]:
    return {
        "targets": [
            {"name": "local", "url": url, "gpu": True},
            {"name": "remote", "url": remote_url, "gpu": False},
            {
                "name": "openai",
                "url": openai_url,
                "protocol": "openai",
                "discover": True,
                "gpu": True,
            },
        ],
        "prompts": [
            {"id": "liveness", "text": "Say hello.", "interval": "3s"},
            {
                "id": "avocado_pl",
                "text": "Jakie są korzyści zdrowotne jedzenia awokado?",
                "interval": "2s",
                "checks": {"min_words": 10, "contains_any": ["potas"], "language": "pl"},
            },
        ],
        "probe": {
            "timeout": "1500ms",
            "health_interval": "1s",
            "inventory_interval": "10s",
            # The doubles answer in well under a second, yet ten jobs every 2-3 s would exceed
            # the default duty cap and stretch the intervals; the test wants them as written.
            "max_duty_cycle": 1.0,
        },
        "gpu": {"enabled": True},
    }


@dataclass
class Live:
    prometheus: Prometheus
    double: OllamaDouble
    remote: OllamaDouble
    openai: OpenAIDouble
    started: float  # Unix time before the first probe


def query_range(prometheus: Prometheus, expr: str, start: float) -> list[dict[str, Any]]:
    """A range query from `start` to now, as a time series panel sends it."""
    response = httpx.get(
        f"{prometheus.url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": time.time(), "step": SCRAPE_SECONDS},
        timeout=10,
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def label_values(prometheus: Prometheus, selector: str, label: str) -> set[str]:
    """What Grafana's label_values(selector, label) returns (the match[] label values API)."""
    response = httpx.get(
        f"{prometheus.url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
    )
    response.raise_for_status()
    return set(response.json()["data"])


def _cold_start_seen(live: Live) -> bool:
    # The double keeps a model resident once loaded; unloading it again until Prometheus saw a
    # cold avocado_pl probe (a liveness probe may reload it first) makes the cold-start marker
    # of the load-time panel appear.
    seen = live.prometheus.query(
        f'max_over_time(ollama_probe_cold_start{{model="{ONE_MODEL}", prompt="avocado_pl"}}[1m])'
        " == 1"
    )
    if not seen:
        live.double.set_resident(ONE_MODEL, False)
    return bool(seen)


REMOTE_AVOCADO = f'{{target="remote", model="{REMOTE_MODEL}", prompt="avocado_pl"}}'


def _remote_failed_then_recovered(live: Live) -> bool:
    """Fail the remote model's probes until Prometheus saw an avocado_pl failure, then let them
    succeed until it saw a success after it (the failure streak back at 0)."""
    failed = live.prometheus.query(f"ollama_probe_failures_total{REMOTE_AVOCADO} > 0")
    live.remote.set_fault(REMOTE_MODEL, Fault.NONE if failed else Fault.STATUS_500)
    recovered = live.prometheus.query(f"ollama_probe_consecutive_failures{REMOTE_AVOCADO} == 0")
    return bool(failed and recovered)


def _change_model_version_and_config(live: Live, exporter_url: str) -> None:
    """What the annotations mark: a model pulled again under a new digest, an Ollama
    upgrade and a configuration reload, each seen by Prometheus."""
    live.double.set_models(
        [replace(m, digest="f" * 64) if m.name == ONE_MODEL else m for m in MODELS]
    )
    live.double.version = "0.33.0"
    httpx.post(f"{exporter_url}/-/reload", timeout=10).raise_for_status()
    for expr, what in (
        ("ollama_model_changes_total == 1", "the model change"),
        ("ollama_server_version_changes_total == 1", "the version change"),
        (
            "changes(ollama_exporter_config_last_reload_success_timestamp_seconds[5m]) > 0",
            "the reload",
        ),
    ):
        wait_for(functools.partial(live.prometheus.query, expr), timeout=40, what=what)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("e2e-dashboards")
    python_path = os.pathsep.join(filter(None, [str(STANDIN_DIR), os.environ.get("PYTHONPATH")]))
    with (
        OllamaDouble(MODELS) as double,
        OllamaDouble(REMOTE_MODELS) as remote,
        OpenAIDouble(OPENAI_MODELS, timings=True) as openai,
        ExitStack() as stack,
    ):
        started = time.time()
        exporter = start_exporter(
            workdir,
            exporter_config(double.url, remote.url, openai.url),
            stack,
            env={"PYTHONPATH": python_path},
        )
        alerting = stack.enter_context(
            alerting_stack(
                workdir,
                exporters=[exporter.address],
                scale=SCALE,
                scrape_interval=f"{SCRAPE_SECONDS}s",
            )
        )
        live = Live(alerting.prometheus, double, remote, openai, started)
        # "After two scrape intervals": two samples of the exporter's series.
        wait_for(
            lambda: live.prometheus.query("count_over_time(ollama_up[1m]) >= 2"),
            timeout=30,
            what="two scrapes of the exporter",
            details=alerting.logs,
        )
        wait_for(lambda: _cold_start_seen(live), timeout=30, what="a cold avocado_pl probe")
        wait_for(
            lambda: _remote_failed_then_recovered(live),
            timeout=30,
            what="failed, then successful avocado_pl probes of the remote model",
        )
        _change_model_version_and_config(live, exporter.url)
        yield live


def load_dashboard(file: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARD_DIR / file).read_text(encoding="utf-8"))
    return loaded


def run_query(live: Live, expr: str, instant: bool) -> list[dict[str, Any]]:
    if instant:
        return live.prometheus.query(expr)
    return query_range(live.prometheus, expr, live.started)


def has_a_number(series: list[dict[str, Any]]) -> bool:
    """At least one finite sample: a panel of NaNs (0/0) shows nothing either."""
    samples = [s["value"] for s in series if "value" in s]
    samples += [v for s in series for v in s.get("values", [])]
    return any(math.isfinite(float(value)) for _, value in samples)


def builtins_for(dashboard: dict[str, Any]) -> dict[str, str]:
    """Grafana's built-ins for the dashboard opened at its default time range."""
    # $__range = the default range (now-6h -> 6h); $__rate_interval = 4 x the scrape interval
    # (timeInterval), the floor Grafana applies; $__interval = the scrape interval.
    return {
        "__range": dashboard["time"]["from"].removeprefix("now-"),
        "__rate_interval": f"{4 * SCRAPE_SECONDS}s",
        "__interval": f"{SCRAPE_SECONDS}s",
    }


def empty_queries(
    live: Live, dashboard: dict[str, Any], model: str, deadline: float
) -> list[PanelQuery]:
    """The queries that still return no series with a number when `deadline` passes."""
    values = variable_values(dashboard, builtins_for(dashboard), model=model)
    pending = list(queries(dashboard))
    while True:
        pending = [
            q
            for q in pending
            if not has_a_number(run_query(live, expand(q.expr, values), q.instant))
        ]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.5)  # a poll interval, not a synchronisation: the loop has a deadline


DASHBOARD_FILES = ("model-comparison.json", "kpis-slos.json", "gpu.json")


@pytest.mark.parametrize("model", ["$__all", ONE_MODEL], ids=["all", "one-model"])
@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_every_panel_query_returns_series(live: Live, file: str, model: str) -> None:
    dashboard = load_dashboard(file)
    empty = empty_queries(live, dashboard, model, time.monotonic() + DEADLINE)
    assert not empty, "queries without a series:\n" + "\n".join(
        f"{q.panel} / {q.ref_id}: {q.expr}" for q in empty
    )


def variable_results(live: Live, file: str) -> dict[str, set[str]]:
    dashboard = load_dashboard(file)
    values = variable_values(dashboard, builtins_for(dashboard))
    results = {}
    for variable in variables(dashboard):
        if variable["type"] == "query":
            selector, label = label_values_query(variable["query"])
            results[variable["name"]] = label_values(
                live.prometheus, expand(selector, values), label
            )
    return results


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_variables_return_the_targets_models_and_prompts(live: Live, file: str) -> None:
    results = variable_results(live, file)
    assert results["target"] == {"local", "remote", "openai"}
    if file == "model-comparison.json":
        assert results["model"] == {m.name for m in MODELS + REMOTE_MODELS}
        assert results["prompt"] == PROMPTS


def first_query(file: str, title: str) -> PanelQuery:
    dashboard = load_dashboard(file)
    return next(q for q in queries(dashboard) if q.panel == title)


def values_by_job(live: Live, query: PanelQuery, file: str) -> dict[tuple[str, str], float]:
    dashboard = load_dashboard(file)
    expr = expand(query.expr, variable_values(dashboard, builtins_for(dashboard)))
    series = live.prometheus.query(expr)
    return {(s["metric"]["target"], s["metric"]["model"]): float(s["value"][1]) for s in series}


def test_relative_speed_is_100_percent_for_the_fastest(live: Live) -> None:
    speed = first_query("model-comparison.json", "Speed ranking")

    def every_model() -> dict[tuple[str, str], float] | None:
        speeds = values_by_job(live, speed, "model-comparison.json")
        return speeds if len(speeds) == JOBS else None

    speeds = wait_for(every_model, timeout=30, what="a relative speed for every model")
    assert all(0 < s <= 1 and not math.isnan(s) for s in speeds.values()), speeds
    assert max(speeds.values()) == pytest.approx(1.0)
    assert speeds[("local", SLOW_MODEL)] < speeds[("local", ONE_MODEL)], speeds


# --- the model table's numbers, from the samples Prometheus holds ---------------------------

Row = tuple[str, str]  # (target, model)


def query_at(live: Live, expr: str, at: float) -> list[dict[str, Any]]:
    """An instant query evaluated at `at`, as the table would be queried at that moment."""
    response = httpx.get(
        f"{live.prometheus.url}/api/v1/query", params={"query": expr, "time": at}, timeout=10
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def by_row(series: list[dict[str, Any]]) -> dict[Row, float]:
    return {(s["metric"]["target"], s["metric"]["model"]): float(s["value"][1]) for s in series}


def last_scrape(live: Live) -> float:
    """The time of the latest scrape of the exporter (all its samples share it).

    The table is checked at that instant: at any later "now" increase() also extrapolates to
    the time since the scrape, and the comparison with whole counts would depend on when
    the test happened to ask.
    """
    (latest,) = live.prometheus.query("max(timestamp(ollama_probes_total))")
    return float(latest["value"][1])


def probes_seen(live: Live, counter: str, window: str, at: float) -> dict[Row, float]:
    """How much `counter` grew over the window ending at `at`, from its raw samples: the
    exporter's own counts as Prometheus scraped them (prompt avocado_pl, the table's)."""
    series = query_at(live, f'{counter}{{prompt="avocado_pl"}}[{window}]', at)
    grown = {}
    for s in series:
        values = [float(v) for _, v in s["values"]]
        assert values == sorted(values), f"{counter} was reset: {s['metric']}"
        grown[(s["metric"]["target"], s["metric"]["model"])] = values[-1] - values[0]
    return grown


def table_at(live: Live, at: float) -> dict[str, dict[Row, float]]:
    """Every column of the model table (variables at their defaults), evaluated at `at`."""
    dashboard = load_dashboard("model-comparison.json")
    (panel,) = [p for p in query_panels(dashboard) if p["title"] == TABLE]
    values = variable_values(dashboard, builtins_for(dashboard))
    return {
        name: by_row(query_at(live, expand(expr, values), at))
        for name, expr in table_columns(panel).items()
    }


def test_sample_counts_are_the_probes_prometheus_saw_in_the_range(live: Live) -> None:
    at = last_scrape(live)
    window = builtins_for(load_dashboard("model-comparison.json"))["__range"]
    table = table_at(live, at)
    successes = probes_seen(live, "ollama_probe_duration_seconds_count", window, at)
    probes = probes_seen(live, "ollama_probes_total", window, at)
    # Exact equality is sound here: probes are rarer than scrapes (avocado_pl every 2 s, a
    # scrape every second), so increase()'s extrapolation to the range's start adds less than
    # half a probe, and the round() in the query takes it away.
    assert table["n (ok)"] == successes
    assert table["n (all)"] == probes
    assert len(probes) == JOBS, probes
    # The remote model failed some probes: its means rest on fewer probes than its success.
    remote = ("remote", REMOTE_MODEL)
    assert 0 < table["n (ok)"][remote] < table["n (all)"][remote], table


def test_relative_speed_compares_models_of_the_same_target(live: Live) -> None:
    table = table_at(live, last_scrape(live))
    means, speeds = table["Mean time"], table["Relative speed"]
    assert set(speeds) == set(means) and len(means) == JOBS
    fastest = {
        target: min(mean for (t, _), mean in means.items() if t == target)
        for target in {t for t, _ in means}
    }
    for (target, model), speed in speeds.items():
        assert speed == pytest.approx(fastest[target] / means[(target, model)]), (target, model)
    # The remote model is slower than the fastest local model, yet the fastest of its target.
    assert means[("remote", REMOTE_MODEL)] > fastest["local"], means
    assert speeds[("remote", REMOTE_MODEL)] == 1.0


# --- the openai target beside the ollama ones -----------------------------------------------

# Comparison queries of series an openai target cannot have (docs/metrics.md): residency and
# VRAM, Ollama's load_duration, cold-start markers, digests, the server's version.
NOT_FOR_OPENAI = {
    ("Models on prompt $prompt", "O"),  # VRAM, or 0 when not loaded: ollama_model_loaded
    ("Models on prompt $prompt", "P"),  # share of the model on the GPU
    ("Load time (cold starts marked)", "A"),
    ("Load time (cold starts marked)", "B"),
    ("annotation Model changed", ""),
    ("annotation Ollama version changed", ""),  # the protocol has no version: always 0
}


def test_comparison_queries_return_the_openai_target_beside_the_ollama_one(live: Live) -> None:
    dashboard = load_dashboard("model-comparison.json")
    values = variable_values(dashboard, builtins_for(dashboard), model="$__all")
    deadline = time.monotonic() + DEADLINE
    pending = [q for q in queries(dashboard) if (q.panel, q.ref_id) not in NOT_FOR_OPENAI]
    while True:
        missing = []
        for q in pending:
            series = run_query(live, expand(q.expr, values), q.instant)
            targets = {s["metric"].get("target") for s in series if has_a_number([s])}
            if "local" in targets and "openai" not in targets:
                missing.append(q)
        if not missing or time.monotonic() >= deadline:
            break
        pending = missing
        time.sleep(0.5)  # a poll interval, not a synchronisation: the loop has a deadline
    assert not missing, "queries with the ollama target but not the openai one:\n" + "\n".join(
        f"{q.panel} / {q.ref_id}: {q.expr}" for q in missing
    )
    # The excluded ones really have no openai series: absent, not 0.
    for q in queries(dashboard):
        if (q.panel, q.ref_id) in NOT_FOR_OPENAI:
            series = run_query(live, expand(q.expr, values), q.instant)
            assert "openai" not in {s["metric"].get("target") for s in series}, q
