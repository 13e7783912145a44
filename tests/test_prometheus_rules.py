"""Static checks and promtool/amtool runs for prometheus/ (rules, configs, rule unit tests).

The tools come from Debian's `prometheus` and `prometheus-alertmanager` packages; a missing tool
fails these tests (the README's test command installs it), it never skips them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prometheus.runbook_links import RUNBOOK_BASE_URL, missing_links, rewrite, stale_files
from tests.e2e.stack import (
    ALERTMANAGER_CONFIG,
    EXPORTER_JOB,
    PROMETHEUS_CONFIG,
    REPO_ROOT,
    RULE_TESTS_DIR,
    RULES_DIR,
    TimeScale,
    amtool,
    derive_alertmanager_config,
    derive_prometheus_config,
    promtool,
    write_scaled_rules,
    write_yaml,
)

GOLDEN_DIR = REPO_ROOT / "tests" / "golden"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
Rule = dict[str, Any]

# The alert contract of the rules issue: name -> severities.
ALERTS = {
    "OllamaResponseTimeKPIBreached": {"ticket"},
    "OllamaErrorRateKPIBreached": {"ticket"},
    "GPUUtilizationKPIBreached": {"ticket"},
    "OllamaAvailabilityBudgetBurn": {"page", "ticket"},
    "OllamaLatencyBudgetBurn": {"page", "ticket"},
    "OllamaDown": {"page"},
    "OllamaExporterDown": {"page"},
    "OllamaExporterShardMissing": {"page"},
    "OllamaProbeFailing": {"page"},
    "OllamaProbesStale": {"ticket"},
    "OllamaAnswerCheckFailing": {"ticket"},
    "GPUMemoryNearlyFull": {"ticket"},
    "NVMLUnavailable": {"ticket"},
    "OllamaModelRegressed": {"ticket"},
    "OllamaModelPartiallyOffloaded": {"ticket"},
}
# Labels each alert must carry (its grouping), on top of job and instance (job only for
# NO_INSTANCE: the replica that should serve a missing shard reports nothing to take one from).
ALERT_LABELS = {
    "OllamaResponseTimeKPIBreached": {"target", "model", "prompt"},
    "OllamaErrorRateKPIBreached": {"target", "model"},
    "GPUUtilizationKPIBreached": {"gpu", "uuid"},
    "OllamaAvailabilityBudgetBurn": {"target", "slo"},
    "OllamaLatencyBudgetBurn": {"target", "model", "prompt", "slo"},
    "OllamaDown": {"target"},
    "OllamaExporterDown": set(),
    "OllamaExporterShardMissing": {"shard_index"},
    "OllamaProbeFailing": {"target", "model"},
    "OllamaProbesStale": {"target", "model", "prompt"},
    "OllamaAnswerCheckFailing": {"target", "model", "prompt", "check"},
    "GPUMemoryNearlyFull": {"gpu", "uuid"},
    "NVMLUnavailable": set(),
    "OllamaModelRegressed": {"target", "model", "prompt"},
    "OllamaModelPartiallyOffloaded": {"target", "model"},
}
NO_INSTANCE = {"OllamaExporterShardMissing"}
SLO_RECORDS = {
    f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
} | {"slo:objective:ratio", "slo:error_budget:ratio", "slo:period_error_budget_remaining:ratio"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root; the caller asserts on the exit status."""
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def rule_files() -> list[Path]:
    files = sorted(RULES_DIR.glob("*.yml"))
    assert files, "prometheus/rules/*.yml: no rule file"
    return files


def all_rules() -> list[Rule]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]


def alert_rules() -> list[Rule]:
    return [rule for rule in all_rules() if "alert" in rule]


# --- the tools --------------------------------------------------------------------------------


def test_promtool_checks_the_shipped_config_and_its_rules() -> None:
    # The compose service names (exporter, alertmanager) need not resolve: promtool does not
    # look them up. The rule files are found through rule_files, relative to the config.
    result = run([promtool(), "check", "config", str(PROMETHEUS_CONFIG)])
    assert_ok(result)
    assert f"{len(rule_files())} rule files found" in result.stdout + result.stderr


def test_promtool_checks_the_rules_with_every_lint() -> None:
    assert_ok(
        run([promtool(), "check", "rules", "--lint=all", "--lint-fatal", *map(str, rule_files())])
    )


def test_amtool_checks_the_shipped_alertmanager_config() -> None:
    assert_ok(run([amtool(), "check-config", str(ALERTMANAGER_CONFIG)]))


def test_the_derived_loopback_configs_pass_the_tools(tmp_path: Path) -> None:
    """What the end-to-end test runs is valid too, scaled rules included."""
    rules = write_scaled_rules(tmp_path / "rules", TimeScale(factor=1 / 60))
    config = derive_prometheus_config(
        exporters=["127.0.0.1:1"], alertmanager="127.0.0.1:2", rule_files=rules
    )
    assert_ok(run([promtool(), "check", "config", str(write_yaml(tmp_path / "p.yml", config))]))
    manager = derive_alertmanager_config(webhook_url="http://127.0.0.1:3")
    assert_ok(run([amtool(), "check-config", str(write_yaml(tmp_path / "am.yml", manager))]))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_rule_unit_tests(path: Path) -> None:
    assert_ok(run([promtool(), "test", "rules", str(path)]))


def test_the_generated_regression_rule_tests_are_current() -> None:
    """prometheus/tests/regression_test.yml is written by its script from seeded scenarios."""
    command = [sys.executable, "-m", "prometheus.tests.regression_series", "--check"]
    assert_ok(run(command))


def test_there_are_rule_unit_tests() -> None:
    # Parametrising over an empty list would pass silently.
    assert len(rule_test_files()) >= 5


# --- names: every metric a rule reads is one the exporter emits -------------------------------

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression reads: identifiers that are not functions/keywords."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"#[^\n]*", "", text)  # comments (no string is left to hold a "#")
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub(" ", text)  # `sum by (x) (...)` becomes `sum  (...)`: a call
    names = set()
    for name, call in _IDENTIFIER.findall(text):
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (job, le) (rate(a_bucket{le="60.0", x=~"[a-z]+"}[5m])) / on (job) group_left ()'
        ' (b_total > 0) unless c offset 5m or vector(0.5) and absent(up{job="x"}) > bool 1'
        '  # a comment with words\n + d{x=~"#"}'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "up", "d"}
    assert metric_names("slo:sli_error:ratio_rate5m / on (slo) group_left slo:x") == {
        "slo:sli_error:ratio_rate5m",
        "slo:x",
    }


def golden_families() -> dict[str, tuple[str, str]]:
    """Sample name -> (family, type) for every sample of the exporter's golden expositions."""
    samples: dict[str, tuple[str, str]] = {}
    types: dict[str, str] = {}
    paths = sorted(GOLDEN_DIR.glob("metrics-*.prom"))
    assert paths, "tests/golden/metrics-*.prom are missing (exporter core)"
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("# TYPE "):
                _, _, family, kind = line.split(" ", 3)
                types[family] = kind
            elif line and not line.startswith("#"):
                name = re.split(r"[{\s]", line, maxsplit=1)[0]
                samples[name] = (sample_family(name, types), "")
    return {name: (family, types[family]) for name, (family, _) in samples.items()}


def sample_family(name: str, types: dict[str, str]) -> str:
    """The metric family of a sample name: histograms add _bucket/_sum/_count to theirs."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created", "_info"):
        base = name.removesuffix(suffix)
        if base != name and base in types:
            return base
    raise AssertionError(f"golden sample {name} has no # TYPE line")


def test_every_metric_in_rules_is_one_the_exporter_emits() -> None:
    exported = golden_families()
    recorded = {rule["record"] for rule in all_rules() if "record" in rule}
    missing: dict[str, set[str]] = {}
    for rule in all_rules():
        for name in metric_names(rule["expr"]):
            # `up` and `ALERTS` are Prometheus's own series (scrape health, alert states).
            if name not in exported.keys() | recorded | {"up", "ALERTS"}:
                missing.setdefault(name, set()).add(rule.get("alert") or rule["record"])
    assert not missing, f"rules read series the exporter does not emit: {missing}"


def test_rate_and_increase_read_only_counters() -> None:
    """rate()/increase() of a gauge is a silent bug: check each argument's TYPE in the golden."""
    exported = golden_families()
    for rule in all_rules():
        for name in re.findall(r"\b(?:rate|increase)\(\s*([a-zA-Z_:][\w:]*)", rule["expr"]):
            family, kind = exported[name]
            counter_like = kind == "counter" or (
                kind == "histogram"
                and name != family
                and name.endswith(("_bucket", "_sum", "_count"))
            )
            assert counter_like, f"{rule.get('alert') or rule['record']}: rate of {name} ({kind})"


def test_the_latency_sli_selects_the_60_second_bucket_as_the_exporter_prints_it() -> None:
    golden = (GOLDEN_DIR / "metrics-ok.prom").read_text(encoding="utf-8")
    assert re.search(r'^ollama_probe_duration_seconds_bucket\{le="60\.0",', golden, re.M)
    latency = [
        r for r in all_rules() if r.get("labels", {}).get("slo") == "latency" and "record" in r
    ]
    assert latency
    for rule in latency:
        if "ollama_probe_duration_seconds_bucket" in rule["expr"]:
            assert 'ollama_probe_duration_seconds_bucket{le="60.0"}' in rule["expr"]


def test_the_sloth_style_slo_records_exist_for_both_slos() -> None:
    records: dict[str, set[str]] = {}
    for rule in all_rules():
        if "record" in rule:
            records.setdefault(rule["record"], set()).add(rule.get("labels", {}).get("slo", ""))
    for name in SLO_RECORDS:
        assert name in records, name
    for name in (n for n in SLO_RECORDS if n.startswith("slo:sli_error:")):
        assert records[name] == {"availability", "latency"}, name
    assert records["slo:objective:ratio"] == {"availability", "latency"}


def golden_label_names() -> dict[str, set[frozenset[str]]]:
    """Sample name -> the label-name sets it has in the golden expositions."""
    shapes: dict[str, set[frozenset[str]]] = {}
    for path in sorted(GOLDEN_DIR.glob("metrics-*.prom")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                name, _, rest = line.partition("{")
                labels = frozenset(re.findall(r'(\w+)="', rest.rpartition("}")[0]))
                shapes.setdefault(name.split()[0], set()).add(labels)
    return shapes


def test_rule_test_inputs_have_the_golden_exposition_shapes() -> None:
    """promtool inputs are the exporter's series as scraped: its labels plus job and instance."""
    shapes = golden_label_names()
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for series in test["input_series"]:
                name, _, rest = series["series"].partition("{")
                if name in PROMETHEUS_OWN_SERIES:
                    continue
                labels = set(re.findall(r'(\w+)="', rest))
                assert {"job", "instance"} <= labels, f"{path.name}: {series['series']}"
                assert frozenset(labels - {"job", "instance"}) in shapes[name], (
                    f"{path.name}: {series['series']} has not the labels of {name} in "
                    f"tests/golden: {sorted(map(sorted, shapes[name]))}"
                )


# --- the alert contract -----------------------------------------------------------------------


def test_every_contract_alert_exists_with_its_severities() -> None:
    severities: dict[str, set[str]] = {}
    for rule in alert_rules():
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert severities == ALERTS


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the headings of docs/runbooks.md."""
    anchors = set()
    for line in RUNBOOKS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_every_alert_has_summary_description_and_runbook_link() -> None:
    anchors = runbook_anchors()
    for rule in alert_rules():
        name, annotations = rule["alert"], rule.get("annotations", {})
        assert annotations.get("summary"), name
        description = annotations.get("description", "")
        # The measured value, and who: every grouping label that identifies a series.
        assert "$value" in description, f"{name}: description lacks the measured value"
        for label in ALERT_LABELS[name] - {"slo", "uuid"}:
            assert f"$labels.{label}" in description, f"{name}: description lacks {label}"
        anchor = name.lower()
        # A literal link from the one constant, to the alert's own section.
        assert annotations.get("runbook_url") == f"{RUNBOOK_BASE_URL}#{anchor}", name
        assert anchor in anchors, f"docs/runbooks.md has no section for {name}"


def test_the_rule_files_runbook_links_are_current() -> None:
    assert stale_files() == [], "run `python -m prometheus.runbook_links`"
    assert RUNBOOK_BASE_URL.startswith("https://") and RUNBOOK_BASE_URL.endswith("runbooks.md")


def test_no_alert_depends_on_an_external_label() -> None:
    """An external label becomes a label of every alert: changing it re-pages everything that
    fires, and a Prometheus without it renders broken links."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert "external_labels" not in config["global"]
    for path in rule_files():
        assert "$externalLabels" not in path.read_text(encoding="utf-8"), path.name


def test_the_links_are_rewritten_from_the_constant_and_can_be_rebased() -> None:
    text = (RULES_DIR / "alerts.yml").read_text(encoding="utf-8")
    moved = rewrite(text, "https://git.example.org/ops/runbooks.md")
    rules = [r for g in yaml.safe_load(moved)["groups"] for r in g["rules"] if "alert" in r]
    for rule in rules:
        wanted = f"https://git.example.org/ops/runbooks.md#{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"] == wanted
    # Everything but the links is kept as written, comments included.
    assert moved.replace("https://git.example.org/ops/runbooks.md", RUNBOOK_BASE_URL) == text
    assert missing_links(text) == []
    assert missing_links("groups: [{name: g, rules: [{alert: A, expr: up}]}]") == ["A"]


def test_the_shipped_prometheus_config_matches_the_compose_stack() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == EXPORTER_JOB]
    assert job["static_configs"] == [{"targets": ["exporter:10434"]}]
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    targets = [
        t
        for m in config["alerting"]["alertmanagers"]
        for s in m["static_configs"]
        for t in s["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    # OllamaExporterDown selects the job by this name.
    assert any(f'up{{job="{EXPORTER_JOB}"}}' in r["expr"] for r in alert_rules())


def exp_alert_labels() -> Iterator[tuple[str, dict[str, str]]]:
    """(alertname, expected labels) of every firing expectation in the promtool tests."""
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    yield case["alertname"], {k: str(v) for k, v in alert["exp_labels"].items()}


def test_promtool_tests_fire_every_alert_and_severity_with_its_labels() -> None:
    """Each alert fires in a unit test, with the labels grouping and inhibition rely on."""
    fired: dict[str, set[str]] = {}
    for name, labels in exp_alert_labels():
        fired.setdefault(name, set()).add(labels["severity"])
        assert "job" in labels, f"{name}: no job label (OllamaExporterDown inhibition)"
        if name in NO_INSTANCE:
            assert "instance" not in labels, f"{name}: an instance label"
        elif not (name == "OllamaExporterDown" and "instance" not in labels):
            assert "instance" in labels, f"{name}: no instance label"
        missing = ALERT_LABELS[name] - labels.keys()
        assert not missing, f"{name} fires without {missing}"
    assert fired == ALERTS


# --- Alertmanager routing and inhibition (static; the e2e tests run them) ---------------------


def alertmanager_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    return config


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=OllamaDown"], "page"),
        (["severity=ticket", "alertname=GPUUtilizationKPIBreached"], "ticket"),
        (["alertname=SomethingElse"], "ticket"),
    ],
)
def test_routes_send_each_severity_to_its_receiver(labels: list[str], receiver: str) -> None:
    result = run(
        [
            amtool(),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            f"--verify.receivers={receiver}",
            *labels,
        ]
    )
    assert_ok(result)


def test_grouping_is_by_alertname_target_and_model() -> None:
    assert alertmanager_config()["route"]["group_by"] == ["alertname", "target", "model"]


def inhibit_rule(source_alert: str, **source: str) -> dict[str, Any]:
    rules = [
        rule
        for rule in alertmanager_config()["inhibit_rules"]
        if f'alertname="{source_alert}"' in rule["source_matchers"]
        and all(f"{k}{v}" in rule["source_matchers"] for k, v in source.items())
    ]
    assert len(rules) == 1, (source_alert, source)
    return rules[0]


def target_regex(rule: dict[str, Any]) -> re.Pattern[str]:
    (matcher,) = rule["target_matchers"]
    match = re.fullmatch(r'alertname(=~|!=)"(.*)"', matcher)
    assert match, matcher
    pattern = match.group(2)
    # Alertmanager anchors regex matchers; != is the complement of one name.
    if match.group(1) == "!=":
        return re.compile(f"(?!{re.escape(pattern)}$).*")
    return re.compile(pattern)


def test_ollama_down_mutes_its_targets_model_and_slo_alerts_only() -> None:
    rule = inhibit_rule("OllamaDown")
    assert rule["equal"] == ["target"]
    muted = {name for name in ALERTS if target_regex(rule).fullmatch(name)}
    assert muted == {name for name, labels in ALERT_LABELS.items() if "target" in labels} - {
        "OllamaDown"
    }


def test_exporter_down_mutes_what_that_exporter_produces() -> None:
    per_instance = inhibit_rule("OllamaExporterDown", instance='=~".+"')
    assert per_instance["equal"] == ["job", "instance"]
    whole_job = inhibit_rule("OllamaExporterDown", instance='=""')
    assert whole_job["equal"] == ["job"]
    for rule in (per_instance, whole_job):
        muted = {name for name in ALERTS if target_regex(rule).fullmatch(name)}
        assert muted == set(ALERTS) - {"OllamaExporterDown"}


# --- the harness's derivations ----------------------------------------------------------------


def test_time_scale_rewrites_windows_offsets_and_durations_only() -> None:
    scale = TimeScale(factor=1 / 60, min_range=4)
    assert scale.promql('rate(x{a=~"[5m]"}[5m]) offset 1h') == 'rate(x{a=~"[5m]"}[5s]) offset 60s'
    assert scale.promql("max_over_time(x[1h:1m])") == "max_over_time(x[60s:1s])"
    assert scale.promql("rate(x[1m])") == "rate(x[4s])"  # min_range keeps a few scrapes
    assert scale.promql("x > 60 and y >= 3") == "x > 60 and y >= 3"
    document = {
        "groups": [
            {"name": "g", "interval": "5m", "rules": [{"alert": "A", "expr": "x", "for": "90s"}]}
        ]
    }
    scaled = scale.rule_groups(document)
    assert scaled["groups"][0]["interval"] == "5s"
    assert scaled["groups"][0]["rules"][0]["for"] == "1500ms"
    assert document["groups"][0]["interval"] == "5m"  # the input is untouched


def test_derived_configs_keep_what_matters(tmp_path: Path) -> None:
    shipped = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    derived = derive_prometheus_config(
        exporters=["127.0.0.1:1"], alertmanager="127.0.0.1:2", rule_files=[tmp_path / "r.yml"]
    )
    assert derived["global"].get("external_labels") == shipped["global"].get("external_labels")
    assert [j["job_name"] for j in derived["scrape_configs"]] == [EXPORTER_JOB]
    manager = derive_alertmanager_config(webhook_url="http://127.0.0.1:3")
    shipped_manager = alertmanager_config()
    assert manager["inhibit_rules"] == shipped_manager["inhibit_rules"]
    assert manager["route"]["group_by"] == shipped_manager["route"]["group_by"]
    for receiver in manager["receivers"]:
        assert receiver["webhook_configs"] == [
            {"url": f"http://127.0.0.1:3/{receiver['name']}", "send_resolved": True}
        ]


# --- the docs' examples -----------------------------------------------------------------------

ALERTING_DOC = REPO_ROOT / "docs" / "alerting.md"
PROMETHEUS_OWN_SERIES = {"up", "ALERTS", "scrape_duration_seconds"}


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def runbook_queries() -> list[str]:
    """Each query of the runbooks' promql blocks (continuation lines start with a blank)."""
    queries: list[str] = []
    for block in code_blocks(RUNBOOKS, "promql"):
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and queries:
                queries[-1] += "\n" + line
            elif line.strip():
                queries.append(line)
    return queries


def test_runbook_queries_parse_and_read_existing_series(tmp_path: Path) -> None:
    queries = runbook_queries()
    assert len(queries) >= 20
    # promtool has no offline query parser; a rule file of the queries gets one.
    rules = [{"record": f"runbook:query{i}", "expr": q} for i, q in enumerate(queries)]
    path = write_yaml(tmp_path / "runbook-queries.yml", {"groups": [{"name": "q", "rules": rules}]})
    assert_ok(run([promtool(), "check", "rules", "--lint=none", str(path)]))
    known = golden_families().keys() | {r["record"] for r in all_rules() if "record" in r}
    unknown = {n for q in queries for n in metric_names(q)} - known - PROMETHEUS_OWN_SERIES
    assert not unknown, f"docs/runbooks.md queries series nobody emits: {unknown}"


def test_the_documented_receivers_are_valid_for_alertmanager(tmp_path: Path) -> None:
    """The Slack/PagerDuty/e-mail example of docs/alerting.md, in the shipped config."""
    (example,) = [
        yaml.safe_load(block)
        for block in code_blocks(ALERTING_DOC, "yaml")
        if "receivers:" in block
    ]
    config = alertmanager_config()
    config.setdefault("global", {}).update(example["global"])
    assert {r["name"] for r in example["receivers"]} == {r["name"] for r in config["receivers"]}
    config["receivers"] = example["receivers"]
    assert_ok(run([amtool(), "check-config", str(write_yaml(tmp_path / "am.yml", config))]))
