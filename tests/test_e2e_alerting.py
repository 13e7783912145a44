"""End to end: exporter -> Prometheus (shipped rules, scaled) -> Alertmanager -> webhook.

Everything runs on 127.0.0.1 on free ports: two Ollama test doubles (targets `a` and `b`), the
exporter probing them every 2 s, Debian's Prometheus and Alertmanager started by the harness in
tests/e2e/stack.py with configs derived from the shipped files, and a webhook receiver in this
process. Rule windows and `for:` durations run 60 times faster than in production (an hour is a
minute); thresholds and minimum event counts are as shipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from prometheus.runbook_links import RUNBOOK_BASE_URL
from tests.e2e.stack import (
    ALERTMANAGER_CONFIG,
    EXPORTER_JOB,
    AlertingStack,
    Alertmanager,
    Exporter,
    ReceivedAlert,
    TimeScale,
    WebhookSink,
    alerting_stack,
    derive_alertmanager_config,
    read_yaml,
    start_alertmanager,
    start_exporter,
    wait_for,
)
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble

pytestmark = pytest.mark.e2e

SCALE = TimeScale(factor=1 / 60, min_range=4.0)
M1, M2 = "m1:latest", "m2:latest"
# Generous deadlines: each phase needs about 20 s (a 15 s window at 1/60 scale, plus for:).
PHASE_TIMEOUT = 60.0


@dataclass
class Stack:
    a: OllamaDouble
    b: OllamaDouble
    exporter: Exporter
    alerting: AlertingStack

    def diagnostics(self) -> str:
        return "\n".join(
            [self.exporter.process.log_tail(20), self.alerting.logs()]
            + [f"webhook: {alert!r}" for alert in self.alerting.sink.alerts()]
        )


def on_gpu(name: str) -> ModelScript:
    """A model script whose resident model is wholly in VRAM (size_vram = size)."""
    script = ModelScript(name=name)
    script.size_vram = script.size
    return script


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Wholly in VRAM once loaded (the double's default keeps 94 % there): a partial offload
    # would open OllamaModelPartiallyOffloaded tickets, which this test is not about.
    a = OllamaDouble([on_gpu(M1), on_gpu(M2)])
    b = OllamaDouble([on_gpu(M1)])
    with a, b, ExitStack() as processes:
        exporter = start_exporter(
            tmp_path,
            {
                "targets": [
                    {"name": "a", "url": a.url, "gpu": False},
                    {"name": "b", "url": b.url, "gpu": False},
                ],
                "models": [],
                "prompts": [
                    {"id": "liveness", "text": "Hi?", "api": "chat", "options": {"num_predict": 8}}
                ],
                "probe": {
                    "interval": "2s",
                    "timeout": "1s",
                    "health_interval": "1s",
                    "inventory_interval": "2s",
                    # Never stretch the 2 s interval, even on a loaded CI machine: the scaled
                    # windows count on about 30 probes a minute.
                    "max_duty_cycle": 1.0,
                },
                "gpu": {"enabled": False},
            },
            processes,
        )
        alerting = processes.enter_context(
            alerting_stack(tmp_path, exporters=[exporter.address], scale=SCALE)
        )
        yield Stack(a, b, exporter, alerting)


def firing_in_prometheus(stack: Stack, alertname: str, **labels: str) -> list[dict[str, Any]]:
    selector = ",".join(
        [f'alertname="{alertname}"', 'alertstate="firing"']
        + [f'{k}="{v}"' for k, v in labels.items()]
    )
    return stack.alerting.prometheus.query(f"ALERTS{{{selector}}}")


def test_failing_model_fires_ollama_down_inhibits_and_all_resolve(stack: Stack) -> None:
    prometheus, alertmanager = stack.alerting.prometheus, stack.alerting.alertmanager
    sink = stack.alerting.sink
    base_url = RUNBOOK_BASE_URL

    # Warm-up: scraped, both targets up, every (scaled) rule evaluated without error.
    wait_for(
        lambda: (
            len(prometheus.query(f'up{{job="{EXPORTER_JOB}"}} == 1'))
            and len(prometheus.query("ollama_up == 1")) == 2
        ),
        timeout=PHASE_TIMEOUT,
        what="Prometheus to scrape the exporter and see both targets up",
        details=stack.diagnostics,
    )
    # Prometheus scrapes first ~5 s after it starts (target updates are throttled), so the
    # scaled OllamaExporterDown (absent(up) for 3 s) may fire and resolve at start-up: let it
    # resolve before anything is asserted, since it mutes the whole job while it fires.
    wait_for(
        lambda: not firing_in_prometheus(stack, "OllamaExporterDown"),
        timeout=PHASE_TIMEOUT,
        what="OllamaExporterDown to resolve after the first scrapes",
    )
    problems = wait_for(
        lambda: (lambda p: None if p is None else [p])(prometheus.rule_problems()),
        timeout=PHASE_TIMEOUT,
        what="every rule to be evaluated once",
    )[0]
    assert problems == [], problems

    # 1. A failing model: m2 on a answers 500, and so does m1 on b.
    stack.a.set_fault(M2, Fault.STATUS_500)
    stack.b.set_fault(M1, Fault.STATUS_500)
    failing = sink.wait_for_alert(
        status="firing",
        timeout=PHASE_TIMEOUT,
        alertname="OllamaProbeFailing",
        target="a",
        model=M2,
    )
    assert failing.receiver == "page"
    assert failing.labels["severity"] == "page"
    assert failing.labels["job"] == EXPORTER_JOB
    assert failing.labels["instance"] == stack.exporter.address
    assert M2 in failing.annotations["summary"]
    assert "target a" in failing.annotations["description"]
    assert failing.annotations["runbook_url"] == f"{base_url}#ollamaprobefailing"
    sink.wait_for_alert(
        status="firing", timeout=PHASE_TIMEOUT, alertname="OllamaProbeFailing", target="b"
    )
    assert not [
        alert
        for alert in sink.alerts()
        if alert.matches(target="a", model=M1) and alert.status == "firing"
    ], "the healthy model on target a alerted"

    # The scaled 1d latency window must hold at least 34 probes of m1 on a (the ticket pair's
    # minimum) for m1 to have an alert for OllamaDown to mute.
    wait_for(
        lambda: prometheus.query(f'sum(ollama_probes_total{{target="a",model="{M1}"}}) >= 40'),
        timeout=2 * PHASE_TIMEOUT,
        what="40 probes of m1 on a",
    )

    # 2. Ollama a goes down: OllamaDown pages, a's model and SLO alerts are inhibited, b's not.
    stack.a.stop()
    down_at = time.monotonic()
    down = sink.wait_for_alert(
        status="firing", timeout=PHASE_TIMEOUT, since=down_at, alertname="OllamaDown", target="a"
    )
    assert down.receiver == "page"
    assert down.annotations["runbook_url"] == f"{base_url}#ollamadown"

    def model_alerts_of_a_suppressed() -> list[dict[str, Any]] | None:
        # Every probe of m1 on a fails now. Its page alerts stay quiet in Prometheus while
        # OllamaDown fires; its latency ticket (scaled 1d/2h pair) fires and must be muted.
        alerts = alertmanager.alerts(target="a", model=M1)
        states = [(a["status"]["state"], a["status"]["inhibitedBy"]) for a in alerts]
        if alerts and all(state == "suppressed" and by for state, by in states):
            return alerts
        return None

    muted = wait_for(
        model_alerts_of_a_suppressed,
        timeout=PHASE_TIMEOUT,
        what="the alerts of m1 on a, all inhibited by OllamaDown",
        details=stack.diagnostics,
    )
    assert ("OllamaLatencyBudgetBurn", "ticket") in {
        (alert["labels"]["alertname"], alert["labels"]["severity"]) for alert in muted
    }
    # Inhibition is by target: b's alerts stay active and keep being notified.
    b_alerts = alertmanager.alerts(alertname="OllamaProbeFailing", target="b")
    assert b_alerts and all(a["status"]["state"] == "active" for a in b_alerts), b_alerts
    # Nothing about m1 on a (healthy before the outage) reached the receiver during it.
    assert not [alert for alert in sink.alerts() if alert.matches(target="a", model=M1)]

    # 3. Recovery: a is back and no fault is left; the alerts resolve.
    stack.a.set_fault(M2, Fault.NONE)
    stack.b.set_fault(M1, Fault.NONE)
    stack.a.start()
    recovered_at = time.monotonic()
    for labels in (
        {"alertname": "OllamaDown", "target": "a"},
        {"alertname": "OllamaProbeFailing", "target": "b", "model": M1},
    ):
        sink.wait_for_alert(status="resolved", timeout=PHASE_TIMEOUT, since=recovered_at, **labels)
    wait_for(
        lambda: (
            not firing_in_prometheus(stack, "OllamaProbeFailing")
            and not firing_in_prometheus(stack, "OllamaDown")
        ),
        timeout=PHASE_TIMEOUT,
        what="OllamaDown and OllamaProbeFailing to stop firing in Prometheus",
    )
    # m1 on a never paged: its page alerts stayed quiet during the outage and after it. (Its
    # latency ticket may now be notified: the outage did spend budget.)
    assert not [a for a in sink.alerts() if a.matches(target="a", model=M1, severity="page")]

    # 4. Quiet afterwards: for 60 more probes of target a (an hour at this scale, past every
    # page's hold and short window), nothing pages again.
    resolved_at = time.monotonic()
    probes_of_a = 'sum(ollama_probes_total{target="a"})'
    start = number(prometheus.query(probes_of_a))
    wait_for(
        lambda: number(prometheus.query(probes_of_a)) >= start + 60,
        timeout=3 * PHASE_TIMEOUT,
        what="60 more probes of target a",
    )
    late = [a for a in pages(sink) if a.received_at >= resolved_at]
    assert late == [], "paged again after recovery"
    # One page per fault, over the whole run: the outage paged once, and each model failing
    # every probe paged as OllamaProbeFailing alone, never also on its latency budget.
    assert len([a for a in pages(sink) if a.matches(alertname="OllamaDown", target="a")]) == 1
    for target, model in (("a", M2), ("b", M1)):
        paged = [
            a.labels["alertname"] for a in pages(sink) if a.matches(target=target, model=model)
        ]
        assert paged == ["OllamaProbeFailing"], (target, model, paged)


def number(vector: list[dict[str, Any]]) -> float:
    """The value of a one-sample instant vector (0 when it is empty)."""
    return float(vector[0]["value"][1]) if vector else 0.0


def pages(sink: WebhookSink) -> list[ReceivedAlert]:
    """Every firing alert notified to the page receiver so far."""
    return [a for a in sink.alerts() if a.status == "firing" and a.receiver == "page"]


# --- Alertmanager alone: routing and inhibition of the shipped config, alerts posted by hand ---


@pytest.fixture
def alertmanager_only(tmp_path: Path) -> Iterator[tuple[Alertmanager, WebhookSink]]:
    with WebhookSink() as sink, ExitStack() as processes:
        config = derive_alertmanager_config(webhook_url=sink.url)
        yield start_alertmanager(tmp_path, config, processes), sink


def alert(name: str, severity: str, source: dict[str, str], **labels: str) -> dict[str, str]:
    return {"alertname": name, "severity": severity, **source, **labels}


def post_alerts(alertmanager: Alertmanager, *alerts: dict[str, str]) -> None:
    body = [{"labels": labels, "annotations": {"summary": "test"}} for labels in alerts]
    httpx.post(f"{alertmanager.url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def state_of(alertmanager: Alertmanager, **labels: str) -> str | None:
    found = alertmanager.alerts(**labels)
    return found[0]["status"]["state"] if len(found) == 1 else None


def test_shipped_inhibition_rules_on_a_real_alertmanager(
    alertmanager_only: tuple[Alertmanager, WebhookSink],
) -> None:
    """The inhibition matrix, label by label, without Prometheus: seconds, not minutes."""
    alertmanager, sink = alertmanager_only
    assert read_yaml(ALERTMANAGER_CONFIG)["inhibit_rules"]  # what is tested is what ships
    job = {"job": EXPORTER_JOB}
    exporter_1 = {**job, "instance": "exporter-1:10434"}
    exporter_2 = {**job, "instance": "exporter-2:10434"}
    post_alerts(
        alertmanager,
        alert("OllamaDown", "page", exporter_1, target="a"),
        # Muted: a model alert and an SLO alert of target a.
        alert("OllamaProbeFailing", "page", exporter_1, target="a", model="m1"),
        alert("OllamaAvailabilityBudgetBurn", "page", exporter_1, target="a", slo="availability"),
        # Not muted: another target, and a GPU alert (no target label) of the same exporter.
        alert("OllamaProbeFailing", "page", exporter_1, target="b", model="m1"),
        alert("GPUMemoryNearlyFull", "ticket", exporter_1, gpu="0", uuid="GPU-1"),
        # Exporter 2 is down: its own alerts are muted, exporter 1's are not.
        alert("OllamaExporterDown", "page", exporter_2),
        alert("OllamaProbesStale", "ticket", exporter_2, target="c", model="m1", prompt="x"),
    )

    expected = {
        ("OllamaDown", "a"): "active",
        ("OllamaProbeFailing", "a"): "suppressed",
        ("OllamaAvailabilityBudgetBurn", "a"): "suppressed",
        ("OllamaProbeFailing", "b"): "active",
        ("GPUMemoryNearlyFull", None): "active",
        ("OllamaExporterDown", None): "active",
        ("OllamaProbesStale", "c"): "suppressed",
    }

    def states() -> dict[tuple[str, str | None], str | None]:
        found: dict[tuple[str, str | None], str | None] = {}
        for (name, target), _ in expected.items():
            labels = {"alertname": name, **({"target": target} if target else {})}
            found[(name, target)] = state_of(alertmanager, **labels)
        return found

    # Inhibition is computed when Alertmanager processes the alerts: poll until it settles.
    wait_for(
        lambda: states() == expected,
        timeout=30,
        what="inhibition states",
        details=lambda: repr(states()),
    )

    # Only active alerts are notified; pages and tickets reach their own receivers.
    sink.wait_for_alert(status="firing", timeout=30, alertname="OllamaProbeFailing", target="b")
    gpu = sink.wait_for_alert(status="firing", timeout=30, alertname="GPUMemoryNearlyFull")
    assert gpu.receiver == "ticket"
    notified = {(a.labels["alertname"], a.labels.get("target")) for a in sink.alerts()}
    assert not notified & {k for k, v in expected.items() if v == "suppressed"}

    # With exporter 2's down alert gone for the whole job (absent(up): no instance label),
    # every alert of the job is muted, exporter 1's included.
    post_alerts(alertmanager, alert("OllamaExporterDown", "page", job))
    wait_for(
        lambda: state_of(alertmanager, alertname="OllamaProbeFailing", target="b") == "suppressed",
        timeout=30,
        what="the job-wide OllamaExporterDown to mute exporter 1's alerts",
    )
