"""Issue 7: every Ollama fault ends in its reason while the real exporter keeps serving.

One `python -m exporter` subprocess probes four kinds of target at once: a double whose models
each carry one fault, a double that is stopped after its first good probe (refused), a double
behind TLS proxies (CA file, skip-verify, a self-signed certificate, and a certificate rotated
to an expired one mid-run), and targets that are down from the start. The fault table is one
parametrised test per row against that one process. A second exporter lives through an Ollama
restart: stopped between and during probes, back with an empty listing, then whole again.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from exporter.backends.ollama import OLLAMA
from exporter.config import TargetConfig
from exporter.probing.probe import ProbeRequest, Reason, run_probe
from exporter.probing.targets import http_clients
from tests.exporter_process import (
    ExporterProcess,
    Samples,
    parse_samples,
    promtool_check,
    series_of,
    value,
    wait_until,
)
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.test_hardening_support import (
    Pki,
    TlsProxy,
    assert_monotonic,
    closed_port,
    cumulative,
    failures,
    job,
    make_pki,
    probes_done,
    self_signed_context,
    successes,
)

REASONS = tuple(r.value for r in Reason)
TIMEOUT_S = 1.5
FAULT_MODELS = {
    "hang:1b": Fault.HANG_BEFORE_HEADERS,
    "trickle:1b": Fault.TRICKLE,
    "drop:1b": Fault.DROP_MID_STREAM,
    "nodone:1b": Fault.NO_DONE,
    "errline:1b": Fault.ERROR_LINE,
    "garbage:1b": Fault.GARBAGE_LINE,
    "huge:1b": Fault.HUGE_RESPONSE,
    "missing:1b": Fault.NOT_FOUND,
    "crash:1b": Fault.STATUS_500,
    "proxy404:1b": Fault.OTHER_404,
    "healthy:1b": Fault.NONE,
}


def fault_scripts() -> list[ModelScript]:
    return [ModelScript(name, fault=fault) for name, fault in FAULT_MODELS.items()]


@dataclass
class FaultRig:
    exporter: ExporterProcess
    faults: OllamaDouble
    gone: OllamaDouble
    pki: Pki
    urls: dict[str, str]  # target name -> URL


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultRig]:
    tmp = tmp_path_factory.mktemp("faults")
    pki = make_pki(tmp / "pki")
    faults = OllamaDouble(fault_scripts(), trickle_interval=0.2)
    gone = OllamaDouble([ModelScript("ok:1b")])
    behind_tls = OllamaDouble([ModelScript("ok:1b")])
    proxies: list[TlsProxy] = []
    exporter: ExporterProcess | None = None
    try:
        for double in (faults, gone, behind_tls):
            double.start()
        trusted = TlsProxy(behind_tls.port, pki.server_context())
        self_signed = TlsProxy(behind_tls.port, self_signed_context(trustme.CA()))
        rotating = TlsProxy(behind_tls.port, pki.server_context())
        proxies = [trusted, self_signed, rotating]
        urls = {
            "nxdomain": "http://no-such-host.invalid:11434",
            "refused_at_start": f"http://127.0.0.1:{closed_port()}",
            "tls_untrusted": f"https://127.0.0.1:{self_signed.port}",
        }
        config = tmp / "config.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                targets:
                  - {{name: faults, url: "{faults.url}"}}
                  - {{name: gone, url: "{gone.url}"}}
                  - {{name: tls_ca, url: "https://127.0.0.1:{trusted.port}",
                      tls_ca_file: "{pki.ca_file}"}}
                  - {{name: tls_skip, url: "https://127.0.0.1:{self_signed.port}",
                      tls_insecure_skip_verify: true}}
                  - {{name: tls_untrusted, url: "{urls["tls_untrusted"]}"}}
                  - {{name: tls_rotated, url: "https://127.0.0.1:{rotating.port}",
                      tls_ca_file: "{pki.ca_file}"}}
                  - {{name: nxdomain, url: "{urls["nxdomain"]}"}}
                  - {{name: refused_at_start, url: "{urls["refused_at_start"]}"}}
                prompts:
                  - {{id: liveness, text: "Why avocados?", interval: 3s}}
                probe: {{timeout: {TIMEOUT_S}s, health_interval: 500ms, inventory_interval: 60s,
                         concurrency_per_target: 4, max_duty_cycle: 1}}
                gpu: {{enabled: false}}
                """
            ),
            encoding="utf-8",
        )
        exporter = ExporterProcess(config)
        # The dynamic faults: each happens after its job's first good probe.
        wait_until(
            lambda: successes(exporter.samples(), **job("gone", "ok:1b")),
            20,
            "a first good probe of the target that will go away",
        )
        gone.stop()
        wait_until(
            lambda: successes(exporter.samples(), **job("tls_rotated", "ok:1b")),
            10,
            "a first good probe over TLS before the certificate rotation",
        )
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        expired = pki.ca.issue_cert(
            "127.0.0.1", "localhost", not_before=past - dt.timedelta(days=30), not_after=past
        )
        rotating.context = pki.server_context(expired)
        yield FaultRig(exporter, faults, gone, pki, urls)
    finally:
        if exporter is not None:
            exporter.close()
        for proxy in proxies:
            proxy.stop()
        for double in (faults, gone, behind_tls):
            double.stop()


@dataclass(frozen=True)
class Row:
    fault: str
    target: str
    model: str
    reason: str


# One row per reason label value, plus the rows whose mechanism only a whole process shows
# (the total deadline, the configured byte cap, a 404 that is not the model's). Variants of a
# line or a status with the same reason are the backend's table (test_backend_ollama.py).
FAULT_TABLE = [
    Row("refused connection (Ollama went away)", "gone", "ok:1b", "connect"),
    Row("TLS certificate rotated to an expired one", "tls_rotated", "ok:1b", "connect"),
    Row("headers never arriving", "faults", "hang:1b", "timeout"),
    Row("a stream trickling a byte every 0.2 s", "faults", "trickle:1b", "timeout"),
    Row("a stream cut mid-way", "faults", "drop:1b", "incomplete"),
    Row("EOF without done", "faults", "nodone:1b", "incomplete"),
    Row("an error line after 200", "faults", "errline:1b", "stream_error"),
    Row("a non-JSON line", "faults", "garbage:1b", "invalid_response"),
    Row("a reply larger than max_response_bytes", "faults", "huge:1b", "invalid_response"),
    Row("404 model not found", "faults", "missing:1b", "model_not_found"),
    Row("500", "faults", "crash:1b", "http_status"),
    Row("other 404", "faults", "proxy404:1b", "http_status"),
]


@pytest.mark.parametrize("row", FAULT_TABLE, ids=[r.fault for r in FAULT_TABLE])
def test_fault_ends_in_its_reason_and_the_exporter_keeps_serving(rig: FaultRig, row: Row) -> None:
    labels = job(row.target, row.model)
    samples = rig.exporter.samples_when(
        lambda s: failures(s, row.reason, **labels),
        15,
        f"ollama_probe_failures_total{{reason={row.reason!r}}} of {labels}",
    )
    others = {r: failures(samples, r, **labels) for r in REASONS if r != row.reason}
    assert others == dict.fromkeys(others, 0.0), f"{row.fault} also counted as {others}"
    assert value(samples, "ollama_probe_success", **labels) == 0
    if row.reason == "timeout":
        # A total deadline, not a per-read timeout: the trickle never lets a read time out.
        duration = value(samples, "ollama_probe_last_duration_seconds", **labels)
        assert duration is not None and TIMEOUT_S <= duration < TIMEOUT_S + 1.0
    # Still serving: every endpoint answers, and the fault is on the status page and in the log.
    assert rig.exporter.get("/-/healthy").status_code == 200
    page = rig.exporter.get("/").text
    cells = rf"<td>{row.target}</td><td>{row.model}</td><td>liveness</td>.*?</tr>"
    shown = re.search(cells, page)
    assert shown and f'<b class="reason">{row.reason}</b>' in shown.group(0), page
    line = f"target={row.target} model={row.model} prompt=liveness reason={row.reason} "
    assert line in rig.exporter.stderr


@pytest.mark.parametrize("target", ["tls_ca", "tls_skip"])
def test_tls_target_with_a_ca_file_or_skip_verify_is_probed(rig: FaultRig, target: str) -> None:
    labels = job(target, "ok:1b")
    samples = rig.exporter.samples_when(
        lambda s: successes(s, **labels),
        10,
        f"a good probe of {target}",
    )
    assert {r: failures(samples, r, **labels) for r in REASONS} == dict.fromkeys(REASONS, 0.0)
    assert value(samples, "ollama_up", target=target) == 1


@pytest.mark.parametrize(
    ("target", "cause"),
    [
        ("tls_untrusted", "CERTIFICATE_VERIFY_FAILED"),
        ("nxdomain", "ConnectError"),
        ("refused_at_start", "ConnectError"),
    ],
)
def test_target_unreachable_from_the_start_is_down_and_its_probes_fail_to_connect(
    rig: FaultRig, target: str, cause: str
) -> None:
    """No job exists before the first listing, so the exporter shows ollama_up 0; a probe over
    the target's own clients (its TLS settings included) ends in `connect`."""
    samples = rig.exporter.samples_when(
        lambda s: (value(s, "ollama_health_check_failures_total", target=target) or 0) >= 2,
        10,
        f"two failed health checks of {target}",
    )
    assert value(samples, "ollama_up", target=target) == 0
    assert [s for s in series_of(samples, "ollama_probes_total") if s["target"] == target] == []
    assert f"target {target}: health check failed" in rig.exporter.stderr
    assert cause in rig.exporter.stderr

    url = rig.urls[target]
    _, probes = http_clients(TargetConfig(name=target, url=url))
    with probes:
        outcome = run_probe(probes, OLLAMA, ProbeRequest(url, "chat", "ok:1b", "hi", 5.0, 1 << 20))
    assert outcome.reason is Reason.CONNECT, outcome.detail


def test_after_every_fault_the_exposition_is_valid(rig: FaultRig) -> None:
    text = rig.exporter.scrape()
    promtool_check(text)
    samples = cumulative(text)
    for row in FAULT_TABLE:
        assert probes_done(samples, **job(row.target, row.model)) >= 1
    assert "Traceback" not in rig.exporter.stderr
    assert rig.exporter.proc.poll() is None


# --- Ollama restarting between and during probes ---------------------------------------------

STEADY = ModelScript("steady:1b")
SLOW = ModelScript("slow:1b", first_token_delay=0.1, token_interval=0.08)


def _in_flight(double: OllamaDouble, model: str, after: int) -> bool:
    records = [r for r in double.requests("/api/chat") if r.body and r.body.get("model") == model]
    return len(records) > after and records[-1].completed_at is None


def test_ollama_restart_between_and_during_probes_loses_no_series(tmp_path: Path) -> None:
    double = OllamaDouble([STEADY, SLOW])
    config = tmp_path / "restart.yaml"
    exporter: ExporterProcess | None = None
    try:
        double.start()
        config.write_text(
            textwrap.dedent(
                f"""\
                targets: [{{name: local, url: "{double.url}"}}]
                models: [steady:1b, slow:1b]
                prompts: [{{id: liveness, text: "Why avocados?", interval: 1500ms}}]
                probe: {{timeout: 1s, health_interval: 200ms, inventory_interval: 1s,
                         concurrency_per_target: 2, max_duty_cycle: 1}}
                gpu: {{enabled: false}}
                """
            ),
            encoding="utf-8",
        )
        exporter = running = ExporterProcess(config)
        steady, slow = job("local", "steady:1b"), job("local", "slow:1b")

        def scrape_when(condition: str, check: Callable[[Samples], object]) -> Samples:
            """The counters and histograms once `check` holds on the whole exposition."""

            def attempt() -> Samples | None:
                text = running.scrape()
                return cumulative(text) if check(parse_samples(text)) else None

            return wait_until(attempt, 15, condition)

        before = scrape_when(
            "good probes of both models",
            lambda s: (
                successes(s, **steady)
                and successes(s, **slow)
                and value(s, "ollama_up", target="local") == 1
            ),
        )
        full = parse_samples(exporter.scrape())

        # During a probe: the slow model's stream is on the wire when Ollama dies.
        chats = len(
            [r for r in double.requests("/api/chat") if r.body and r.body.get("model") == "slow:1b"]
        )
        wait_until(lambda: _in_flight(double, "slow:1b", chats), 10, "a slow probe in flight")
        double.stop()
        down = scrape_when(
            "incomplete and connect failures while Ollama is down",
            lambda s: (
                failures(s, "incomplete", **slow)
                and failures(s, "connect", **slow)
                and failures(s, "connect", **steady)
                and value(s, "ollama_up", target="local") == 0
            ),
        )
        assert_monotonic(before, down)

        # Back on the same port with an empty listing: the configured models stay probed.
        listings = len(double.requests("/api/tags"))
        double.set_models([])
        double.start()
        wait_until(
            lambda: len(double.requests("/api/tags")) > listings, 10, "a listing after restart"
        )
        empty = scrape_when(
            "model_not_found while the listing is empty",
            lambda s: (
                failures(s, "model_not_found", **steady)
                and failures(s, "model_not_found", **slow)
                and value(s, "ollama_up", target="local") == 1
            ),
        )
        assert_monotonic(down, empty)
        assert "empty model listing, keeping the last one" in exporter.stderr

        double.set_models([STEADY, SLOW])
        after = scrape_when(
            "good probes again",
            lambda s: (
                successes(s, **steady) > successes(empty, **steady)
                and successes(s, **slow) > successes(empty, **slow)
            ),
        )
        assert_monotonic(empty, after)
        assert_monotonic(before, after)
        # No series of a remaining job (gauges included) vanished over the whole restart.
        final = parse_samples(exporter.scrape())
        residency = {"ollama_model_vram_bytes", "ollama_model_memory_bytes"}
        lost = [
            k
            for k in full
            if k[0].startswith("ollama_") and k[0] not in residency and k not in final
        ]
        assert lost == []
        assert "Traceback" not in exporter.stderr
    finally:
        if exporter is not None:
            exporter.close()
        double.stop()
