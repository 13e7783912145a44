"""Static tests of grafana/: generated JSON, provisioning, queries and the names they use.

Grafana itself cannot be installed in CI, so these tests check what a provisioned Grafana
would load: the committed JSON is exactly the generator's output, every query panel points at
the provisioned datasource uid with a query and a unit, every metric and recording rule a query
names exists, and every expression (variables expanded) parses, through promtool.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.dashgen import render_all
from grafana.dashgen.__main__ import stale_files
from grafana.dashgen.readback import (
    expand,
    label_values_query,
    metric_names,
    panels,
    queries,
    query_panels,
    table_columns,
    variable_values,
    variables,
)

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
GOLDEN_DIR = ROOT / "tests" / "golden"
RULES_DIR = ROOT / "prometheus" / "rules"
PROMETHEUS_UID = {"type": "prometheus", "uid": "prometheus"}
# Grafana's own variables, as an example dashboard would expand them.
BUILTINS = {"__range": "1h", "__rate_interval": "1m", "__interval": "15s"}
# A model name with regex characters, to prove the escaping of a single selected value.
TRICKY_MODEL = "llama3.2:latest"


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


def all_panels(dashboards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, dashboard in dashboards.items():
        for panel in query_panels(dashboard):
            yield f"{name}: {panel.get('title')}", panel


# --- generation -----------------------------------------------------------------------------


def test_committed_json_is_what_the_generator_writes() -> None:
    stale = stale_files(render_all(), DASHBOARD_DIR)
    assert not stale, f"regenerate with `python -m grafana.dashgen`: {stale}"


def test_the_three_dashboards_exist(dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(dashboards) == {"model-comparison.json", "kpis-slos.json", "gpu.json"}


def test_json_targets_the_recorded_grafana_version(dashboards: dict[str, dict[str, Any]]) -> None:
    version = (GRAFANA / "VERSION").read_text(encoding="utf-8").strip()
    assert version == "11.6.0"
    # The SDK build decides the schema; its version is EPOCH!GRAFANA_VERSION.
    sdk = importlib.metadata.version("grafana-foundation-sdk")
    assert sdk.split("!")[-1] == version, f"SDK build {sdk} does not target Grafana {version}"
    # Grafana 11.6 writes schemaVersion 41; older ones would be migrated on every load.
    assert {d["schemaVersion"] for d in dashboards.values()} == {41}


# --- structure ------------------------------------------------------------------------------


def test_dashboard_uids_are_unique_and_fixed(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), uid
    # A numeric id would tie the file to one Grafana database; provisioning matches by uid.
    assert all("id" not in d or d["id"] is None for d in dashboards.values())


def test_panel_ids_are_unique_per_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), name
        assert all(isinstance(i, int) and i > 0 for i in ids), name


def test_no_exported_datasource_inputs() -> None:
    for path in DASHBOARD_DIR.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "${DS_" not in text and "__inputs" not in text, path.name


def test_every_query_panel_has_datasource_query_unit_and_description(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for where, panel in all_panels(dashboards):
        assert panel["datasource"] == PROMETHEUS_UID, where
        targets = panel.get("targets") or []
        assert targets, f"{where}: no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(set(ref_ids)) == len(ref_ids), where
        for target in targets:
            assert target.get("expr", "").strip(), f"{where} {target['refId']}: empty query"
            assert target.get("datasource", PROMETHEUS_UID) == PROMETHEUS_UID, where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
        assert panel.get("description", "").strip(), f"{where}: no description"


def test_panels_fit_the_grid_without_overlapping(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        taken: set[tuple[int, int]] = set()
        for panel in panels(dashboard):
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, panel.get("title"))
            cells = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & taken, (name, panel.get("title"))
            taken |= cells


def test_model_comparison_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    by_name = {v["name"]: v for v in variables(dashboards["model-comparison.json"])}
    for name in ("target", "model"):
        variable = by_name[name]
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
        assert variable["datasource"] == PROMETHEUS_UID
    prompt = by_name["prompt"]
    assert not prompt["multi"] and not prompt["includeAll"]
    assert prompt["current"]["value"] == "avocado_pl"
    assert "label_values(" in prompt["query"] and ", prompt)" in prompt["query"]


def test_every_variable_used_is_defined(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        defined = {v["name"] for v in variables(dashboard)} | set(BUILTINS)
        texts = [q.expr for q in queries(dashboard)]
        texts += [v.get("query", "") for v in variables(dashboard) if v["type"] == "query"]
        texts += [p.get("title", "") for p in panels(dashboard)]
        used = {m[0] or m[1] for t in texts for m in re.findall(r"\$\{(\w+)\}|\$(\w+)", t)}
        assert used <= defined, f"{name}: undefined {used - defined}"


def test_stat_thresholds_are_the_kpis(dashboards: dict[str, dict[str, Any]]) -> None:
    steps = {
        panel["title"]: [
            s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]
        for panel in query_panels(dashboards["kpis-slos.json"])
        if panel["type"] == "stat"
    }
    assert steps["Mean response time < 60 s"] == [None, 60]
    assert steps["Error rate < 1 %"] == [None, 0.01]
    assert steps["Availability > 99.9 %"] == [None, 0.999]
    assert steps["GPU utilisation < 80 %"] == [None, 0.8]


def panel_titled(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in query_panels(dashboard) if p["title"] == title]
    return panel


def test_every_range_column_of_the_model_table_has_its_sample_count_beside_it(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """A mean or ratio over the range is followed by the n it rests on, before any column
    that describes the latest probe; a count of probes is rounded, as probes are whole."""
    table = panel_titled(dashboards["model-comparison.json"], "Models on prompt $prompt")
    columns = table_columns(table)
    counts = {name: expr for name, expr in columns.items() if name.startswith("n (")}
    assert set(counts) == {"n (ok)", "n (all)"}
    assert all(expr.startswith("round(") for expr in counts.values()), counts
    waiting: list[str] = []  # range columns still without their count
    for name, expr in columns.items():
        if name in counts:
            assert waiting, f"{name} follows no range column"
            waiting = []
        elif "[$__range]" in expr:
            waiting.append(name)
        else:
            assert not waiting, f"{waiting} have no sample count before {name}"
    assert not waiting, f"{waiting} have no sample count"


def test_only_the_response_time_panel_draws_the_60_second_kpi(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """The KPI is on the whole response; time to first token has no threshold of its own."""
    dashboard = dashboards["model-comparison.json"]
    response = panel_titled(dashboard, "Response time: mean and p95")["fieldConfig"]["defaults"]
    assert response["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert [s["value"] for s in response["thresholds"]["steps"]] == [None, 60]
    ttft = panel_titled(dashboard, "Time to first token: mean and p95")
    defaults = ttft["fieldConfig"]["defaults"]
    assert defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off") == "off"
    assert "thresholds" not in defaults
    assert "dashed line" not in ttft["description"]


def alert_rules() -> dict[str, list[dict[str, Any]]]:
    rules: dict[str, list[dict[str, Any]]] = {}
    for path in RULES_DIR.glob("*.yml"):
        for group in (read_yaml(path) or {}).get("groups", []):
            for rule in group.get("rules", []):
                rules.setdefault(rule.get("alert") or rule["record"], []).append(rule)
    return rules


# alert -> (dashboard, stat panel, metric whose range window must agree, threshold)
KPI_ALERTS = {
    "OllamaResponseTimeKPIBreached": (
        "kpis-slos.json",
        "Mean response time < 60 s",
        "ollama_probe_duration_seconds_sum",
        60,
    ),
    "OllamaErrorRateKPIBreached": (
        "kpis-slos.json",
        "Error rate < 1 %",
        "ollama_probe_failures_total",
        0.01,
    ),
    "GPUUtilizationKPIBreached": (
        "kpis-slos.json",
        "GPU utilisation < 80 %",
        "nvml_gpu_utilization_ratio",
        0.8,
    ),
    "GPUMemoryNearlyFull": ("gpu.json", "Memory used", "", 0.95),
}


def window_of(metric: str, expr: str) -> set[str]:
    return set(re.findall(rf"\b{re.escape(metric)}(?:{{[^}}]*}})?\[(\w+)\]", expr))


@pytest.mark.parametrize("alert", sorted(KPI_ALERTS))
def test_kpi_stats_agree_with_their_alert(
    alert: str, dashboards: dict[str, dict[str, Any]]
) -> None:
    """Same threshold and same window: a red stat and a firing alert mean the same thing."""
    rules = alert_rules().get(alert)
    if not rules:
        pytest.skip("prometheus/rules not there yet (rules issue)")
    file, title, metric, threshold = KPI_ALERTS[alert]
    (panel,) = [p for p in query_panels(dashboards[file]) if p["title"] == title]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == threshold
    (rule,) = rules
    assert re.search(rf">\s*{re.escape(str(threshold))}(?![\d.])", rule["expr"]), rule["expr"]
    if metric:
        (target,) = panel["targets"]
        assert window_of(metric, target["expr"]) == window_of(metric, rule["expr"]) != set()


def test_availability_stat_is_the_slo_objective(dashboards: dict[str, dict[str, Any]]) -> None:
    objectives = alert_rules().get("slo:objective:ratio", [])
    if not objectives:
        pytest.skip("prometheus/rules not there yet (rules issue)")
    (availability,) = [r for r in objectives if r["labels"]["slo"] == "availability"]
    (panel,) = [
        p
        for p in query_panels(dashboards["kpis-slos.json"])
        if p["title"] == "Availability > 99.9 %"
    ]
    threshold = panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]
    assert availability["expr"].strip() == f"vector({threshold})"


# --- provisioning ---------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def scrape_interval() -> str:
    """The exporter job's scrape interval from prometheus/prometheus.yml (15s until it lands)."""
    path = ROOT / "prometheus" / "prometheus.yml"
    if not path.is_file():
        return "15s"
    config = read_yaml(path)
    default = config.get("global", {}).get("scrape_interval", "1m")
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == "ollama-probe-exporter":
            return str(job.get("scrape_interval", default))
    return str(default)


def test_datasources_are_provisioned_by_fixed_uid() -> None:
    files = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yaml"))
    sources = {s["uid"]: s for f in files for s in read_yaml(f)["datasources"]}
    prometheus = sources["prometheus"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["jsonData"]["timeInterval"] == scrape_interval()
    alertmanager = sources["alertmanager"]
    assert alertmanager["type"] == "alertmanager"
    assert alertmanager["url"] == "http://alertmanager:9093"
    assert alertmanager["jsonData"]["implementation"] == "prometheus"


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    files = sorted((GRAFANA / "provisioning" / "dashboards").glob("*.yaml"))
    providers = [p for f in files for p in read_yaml(f)["providers"]]
    assert len(providers) == 1
    assert providers[0]["type"] == "file"
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


# --- names and expressions ------------------------------------------------------------------


def exported_names() -> set[str]:
    """Sample names in the exporter's golden expositions."""
    names: set[str] = set()
    for path in GOLDEN_DIR.glob("metrics-*.prom"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def recording_rules() -> set[str]:
    return {
        rule["record"]
        for path in RULES_DIR.glob("*.yml")
        for group in (read_yaml(path) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "record" in rule
    }


def used_names(dashboards: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for name, dashboard in dashboards.items():
        texts = [q.expr for q in queries(dashboard)]
        texts += [
            label_values_query(v["query"])[0] for v in variables(dashboard) if v["type"] == "query"
        ]
        for text in texts:
            for metric in metric_names(text):
                used.setdefault(metric, set()).add(name)
    return used


def test_metric_name_extraction() -> None:
    expr = (
        'min(sum by (model, le) (rate(a_bucket{x=~"$m", y="q(r)"}[$__range])))'
        " / on() group_right() (b and on (model) c == 1) or vector(0) * d offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d"}
    assert metric_names("slo:sli_error:ratio_rate1h / on (slo) group_left() e") == {
        "slo:sli_error:ratio_rate1h",
        "e",
    }


def test_every_metric_and_rule_used_exists(dashboards: dict[str, dict[str, Any]]) -> None:
    exported = exported_names()
    if not exported:
        pytest.skip("tests/golden/metrics-*.prom not there yet (exporter core)")
    rules = recording_rules()
    used = used_names(dashboards)
    recorded = {name for name in used if name.startswith("slo:")}
    if recorded and not rules:
        pytest.skip("prometheus/rules not there yet (rules issue)")
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if name not in exported | rules | {"ALERTS"}
    }
    assert not missing, f"names no golden exposition or rule file has: {missing}"


def expanded_exprs(dashboards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """Every panel query with the variables set to All, then to one awkward model name."""
    for name, dashboard in dashboards.items():
        for model in ("$__all", TRICKY_MODEL):
            values = variable_values(dashboard, BUILTINS, model=model)
            for query in queries(dashboard):
                yield f"{name} / {query.panel} / {query.ref_id}", expand(query.expr, values)


def test_every_expression_parses(tmp_path: Path, dashboards: dict[str, dict[str, Any]]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    # promtool has no expression command; a rule file of one recording rule per expression
    # makes `check rules` run Prometheus's own parser over each of them.
    exprs = list(expanded_exprs(dashboards))
    rules = [{"record": f"dashboard_query:{i}", "expr": e} for i, (_, e) in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        bad = sorted({w for i, (w, _) in enumerate(exprs) if f'"dashboard_query:{i}"' in output})
        pytest.fail(f"promtool rejected dashboard queries {bad}:\n{result.stdout}{result.stderr}")
