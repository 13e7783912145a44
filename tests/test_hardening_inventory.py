"""Issue 7: a hostile inventory (100 000 models, names built to break text formats).

The real exporter against the double listing 100 000 models probes max_models of them and
counts the rest; model names with quotes, backslashes, newlines, braces and `<script>` come
back exactly from the exposition (promtool-clean), escaped on the status page and unable to
forge log lines. Two component tests pin what the listing costs and what a reload keeps.
"""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path

import httpx
import pytest

from exporter.backends.ollama import OLLAMA
from exporter.config import load_config
from exporter.gpu import DisabledGpuReader
from exporter.probing.probe import ProbeRequest, Reason, run_probe
from exporter.probing.targets import Target
from exporter.service import Service
from tests.exporter_process import (
    ExporterProcess,
    parse_samples,
    promtool_check,
    series_of,
    value,
    wait_until,
)
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble

MANY = 100_000


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_target_listing_100000_models_is_capped_at_max_models(tmp_path: Path) -> None:
    models = [ModelScript(f"m{i:06d}:1b") for i in range(MANY)]
    with OllamaDouble(models) as double:
        config = write(
            tmp_path / "many.yaml",
            f"""\
            targets: [{{name: big, url: "{double.url}"}}]
            prompts: [{{id: liveness, text: "Why avocados?", interval: 60s}}]
            probe: {{timeout: 20s, concurrency_per_target: 4, health_interval: 1s}}
            gpu: {{enabled: false}}
            """,
        )
        with ExporterProcess(config) as exporter:
            # Cheap text checks while waiting: the double shares this process's GIL.
            dropped = f'ollama_exporter_models_dropped{{target="big"}} {MANY - 200}.0\n'
            first_ok = re.compile(r'ollama_probe_success\{[^}]*model="m000000:1b"[^}]*\} 1\.0')
            text = exporter.text_when(
                lambda t: dropped in t and first_ok.search(t),
                60,
                f"models_dropped {MANY - 200} and a good probe of the first model",
            )
            samples = parse_samples(text)
            listed = sorted(s["model"] for s in series_of(samples, "ollama_model_info"))
            assert listed == [f"m{i:06d}:1b" for i in range(200)]
            jobs = {s["model"] for s in series_of(samples, "ollama_probes_total")}
            assert jobs == set(listed)
            assert exporter.get("/-/healthy").status_code == 200
            assert len(exporter.scrape()) < 4_000_000  # bounded by max_models, not the listing
            assert "target big lists 100000 models, probing the first 200 (max_models)" in (
                exporter.stderr
            )
            assert "Traceback" not in exporter.stderr
        # Only the capped models were ever asked to generate.
        asked = {r.body["model"] for r in double.requests("/api/chat") if r.body}
        assert asked <= set(listed)


class ListingWithoutCapabilities:
    """A 100 000-model /api/tags without `capabilities` (as older Ollama versions answer), and an
    /api/show that stops the test once far more models were shown than max_models needs."""

    def __init__(self, count: int, budget: int) -> None:
        entry = '{"name":"m%06d:1b","model":"m%06d:1b","details":{"family":"llama"}}'
        self.body = ('{"models":[' + ",".join(entry % (i, i) for i in range(count)) + "]}").encode()
        self.budget = budget
        self.shown = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tags":
            return httpx.Response(200, content=self.body)
        if request.url.path == "/api/show":
            self.shown += 1
            if self.shown > self.budget:
                raise OverBudget(f"{self.shown} /api/show calls for a cap of 200 models")
            return httpx.Response(200, json={"capabilities": ["completion"]})
        return httpx.Response(404)


class OverBudget(Exception):
    pass


def test_max_models_also_bounds_the_show_calls_of_a_listing_without_capabilities(
    tmp_path: Path,
) -> None:
    """max_models must bound the work of a listing, not only the jobs: without capabilities in
    /api/tags each candidate needs /api/show, and only the first 200 probe-able ones matter."""
    handler = ListingWithoutCapabilities(MANY, budget=1_000)
    config = load_config(
        write(
            tmp_path / "c.yaml",
            """\
            targets: [{name: big, url: "http://ollama.test:11434"}]
            prompts: [{id: liveness, text: hi}]
            """,
        )
    )
    client = httpx.Client(transport=httpx.MockTransport(handler))
    target = Target(config.targets[0], client, client)
    try:
        assert target.refresh_inventory(config, 5.0)
    except OverBudget as exc:
        pytest.fail(f"the inventory did not stop at max_models: {exc}")
    inventory = target.inventory
    assert inventory is not None and len(inventory.models) == 200
    assert handler.shown <= 1_000


# --- names built to break text formats --------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
HOSTILE = {
    "quote": 'say"hi":1b',
    "backslash": "back\\slash\\n:1b",
    "newline": "two\nFORGED exporter line:1b",
    "script": f"{SCRIPT}:latest",
    "braces": 'a,b="c"}{d:1b',
    "unicode": "zażółć\u2028gęślą:1b",
}


def test_hostile_model_names_survive_exposition_status_page_and_logs(tmp_path: Path) -> None:
    scripts = [
        ModelScript(HOSTILE["quote"], family='fam"ily\\'),
        ModelScript(HOSTILE["backslash"], quantization_level="Q\n4"),
        ModelScript(HOSTILE["newline"], fault=Fault.STATUS_503),
        ModelScript(HOSTILE["script"], fault=Fault.NOT_FOUND, parameter_size=SCRIPT),
        ModelScript(HOSTILE["braces"]),
        ModelScript(HOSTILE["unicode"], fault=Fault.STATUS_500),
    ]
    with OllamaDouble(scripts) as double:
        config = write(
            tmp_path / "hostile.yaml",
            f"""\
            targets: [{{name: evil, url: "{double.url}"}}]
            prompts: [{{id: liveness, text: "Why avocados?", interval: 60s}}]
            probe: {{timeout: 5s, concurrency_per_target: 3}}
            gpu: {{enabled: false}}
            """,
        )
        with ExporterProcess(config) as exporter:
            wait_until(lambda: exporter.get("/-/ready").status_code == 200, 20, "/-/ready")
            text = exporter.scrape()
            page = exporter.get("/").text
            stderr = exporter.stderr

    promtool_check(text)
    # Every name comes back exactly as the target listed it, in every per-model family.
    samples = parse_samples(text)
    for family in ("ollama_probes_total", "ollama_model_info", "ollama_probe_success"):
        assert {s["model"] for s in series_of(samples, family)} == set(HOSTILE.values()), family
    info = {s["model"]: s for s in series_of(samples, "ollama_model_info")}
    assert info[HOSTILE["quote"]]["family"] == 'fam"ily\\'
    assert info[HOSTILE["backslash"]]["quantization_level"] == "Q\n4"
    assert info[HOSTILE["script"]]["parameter_size"] == SCRIPT
    reasons = {
        s["model"]: s["reason"]
        for s in series_of(samples, "ollama_probe_failures_total")
        if value(samples, "ollama_probe_failures_total", **s) == 1
    }
    assert reasons == {
        HOSTILE["newline"]: "http_status",
        HOSTILE["script"]: "model_not_found",
        HOSTILE["unicode"]: "http_status",
    }
    # The text format stays line-based: no raw newline inside a sample line.
    for line in text.rstrip("\n").split("\n"):
        assert line.startswith("#") or re.fullmatch(r"[a-zA-Z_:][\w:]*(\{.*\})? \S+", line), line

    # Status page: the names and the target's error text (which echoes the name) are escaped.
    assert "<script>" not in page and SCRIPT not in page
    assert html.escape(HOSTILE["script"]) in page
    assert html.escape(f"model '{HOSTILE['script']}' not found") in page
    assert html.escape(HOSTILE["quote"]) in page

    # Logs: a name from the target cannot start a log line of its own.
    assert "Traceback" not in stderr
    forged = [line for line in stderr.splitlines() if line.startswith("FORGED")]
    assert forged == [], f"a model name forged log lines: {forged}"


def test_models_dropped_is_kept_across_a_reload_while_the_listing_fails(tmp_path: Path) -> None:
    """The kept inventory still drops models after a reload; the gauge must keep saying so."""
    with OllamaDouble([ModelScript(f"m{i}:1b") for i in range(8)]) as double:
        path = write(
            tmp_path / "capped.yaml",
            f"""\
            targets: [{{name: capped, url: "{double.url}", max_models: 3}}]
            prompts: [{{id: liveness, text: hi, interval: 60s}}]
            probe: {{timeout: 5s, health_interval: 300ms, inventory_interval: 60s}}
            gpu: {{enabled: false}}
            """,
        )
        service = Service(load_config(path), path, DisabledGpuReader())
        exposition = service.exposition
        service.start()
        try:

            def dropped() -> float | None:
                samples = parse_samples(exposition.render().decode())
                return value(samples, "ollama_exporter_models_dropped", target="capped")

            wait_until(lambda: dropped() == 5, 10, "models_dropped 5")
            double.fail_endpoint("/api/tags", 500)
            listings = len(double.requests("/api/tags"))
            # A reload selects again from the last good listing, at once, without listing.
            assert service.reload().ok
            assert service._targets["capped"].inventory.dropped == 5  # type: ignore[union-attr]
            assert dropped() == 5
            assert len(double.requests("/api/tags")) == listings
        finally:
            service.stop()


def test_404_naming_a_model_with_a_newline_is_model_not_found() -> None:
    """The 'model ... not found' match must not stop at a newline inside the name."""
    name = HOSTILE["newline"]

    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": f"model '{name}' not found"})

    with httpx.Client(transport=httpx.MockTransport(not_found)) as client:
        outcome = run_probe(
            client, OLLAMA, ProbeRequest("http://t", "chat", name, "hi", 5.0, 1 << 20)
        )
    assert outcome.reason is Reason.MODEL_NOT_FOUND, outcome


# --- models leaving a listing, or deleted while configured -----------------------------------


def test_a_configured_model_deleted_from_ollama_is_probed_on_and_fails_model_not_found(
    tmp_path: Path,
) -> None:
    """A configured model is probed whatever the listing says: deleted, it must show up as
    model_not_found failures, not as silence."""
    with OllamaDouble([ModelScript("keep:1b"), ModelScript("deleted:1b")]) as double:
        config = write(
            tmp_path / "configured.yaml",
            f"""\
            targets: [{{name: local, url: "{double.url}"}}]
            models: ["keep:1b", "deleted:1b"]
            prompts: [{{id: liveness, text: hi, interval: 1s}}]
            probe: {{timeout: 900ms, health_interval: 300ms, inventory_interval: 300ms,
                     max_duty_cycle: 1}}
            gpu: {{enabled: false}}
            """,
        )
        deleted = {"target": "local", "model": "deleted:1b", "prompt": "liveness"}
        with ExporterProcess(config) as exporter:
            good = exporter.samples_when(
                lambda s: value(s, "ollama_probe_success", **deleted) == 1, 15, "a good probe"
            )
            cold = value(good, "ollama_probe_cold_starts_total", **deleted)
            double.set_models([ModelScript("keep:1b")])
            listings = len(double.requests("/api/tags"))
            exporter.samples_when(
                lambda s: value(
                    s, "ollama_probe_failures_total", reason="model_not_found", **deleted
                ),
                15,
                "a model_not_found failure of the deleted model",
            )
            # Listings after the deletion do not take the job away.
            double.wait_for_requests(listings + 2, "/api/tags", timeout=10)
            samples = exporter.samples()
            assert deleted in series_of(samples, "ollama_probes_total")
            assert value(samples, "ollama_probe_success", **deleted) == 0
            # A model that does not exist was not cold-loaded.
            assert value(samples, "ollama_probe_cold_starts_total", **deleted) == cold


def test_a_discovered_model_leaving_the_listing_loses_its_job_and_series_logged_once(
    tmp_path: Path,
) -> None:
    with OllamaDouble([ModelScript("stays:1b"), ModelScript("leaves:1b")]) as double:
        config = write(
            tmp_path / "discovered.yaml",
            f"""\
            targets: [{{name: local, url: "{double.url}"}}]
            prompts: [{{id: liveness, text: hi, interval: 60s}}]
            probe: {{timeout: 5s, health_interval: 300ms, inventory_interval: 300ms}}
            gpu: {{enabled: false}}
            """,
        )
        leaves = {"target": "local", "model": "leaves:1b", "prompt": "liveness"}
        with ExporterProcess(config) as exporter:
            exporter.samples_when(
                lambda s: value(s, "ollama_probe_success", **leaves) == 1, 15, "a good probe"
            )
            double.set_models([ModelScript("stays:1b"), ModelScript("arrives:1b")])
            exporter.samples_when(
                lambda s: leaves not in series_of(s, "ollama_probes_total"),
                15,
                "the job of the model that left to be gone",
            )
            left_line = "target local: model leaves:1b left the listing"
            arrived_line = "target local: model arrives:1b appeared in the listing"
            wait_until(
                lambda: left_line in exporter.stderr and arrived_line in exporter.stderr,
                10,
                "both log lines",
            )
            # Two more listings that see the same models must not log again.
            listings = len(double.requests("/api/tags"))
            double.wait_for_requests(listings + 2, "/api/tags", timeout=10)
            samples = exporter.samples()
            left = [
                (name, dict(labels))
                for name, labels in samples
                if dict(labels).get("model") == "leaves:1b"
            ]
            assert left == [], "every series of the model that left goes with its job"
            assert "leaves:1b" not in exporter.get("/").text
            stderr = exporter.stderr
        assert stderr.count(left_line) == 1, stderr
        assert stderr.count(arrived_line) == 1, stderr
