"""/-/ready: every target's first listing attempt ended (either way), and every job known then
ended its first run (success, failure or skip). An unreachable target must not hold it at 503,
and the 503 body says what start-up still waits for."""

from __future__ import annotations

import textwrap
from pathlib import Path

from exporter.probing.jobs import JobKey
from exporter.probing.readiness import StartupReadiness
from tests.exporter_process import ExporterProcess, series_of, wait_until
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.test_hardening_support import closed_port


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_an_unreachable_target_ends_its_first_listing_and_its_configured_models_get_jobs(
    tmp_path: Path,
) -> None:
    with OllamaDouble([ModelScript("m:1b", fault=Fault.HANG_BEFORE_HEADERS)]) as double:
        config = write(
            tmp_path / "exporter.yaml",
            f"""\
            targets:
              - {{name: good, url: "{double.url}"}}
              - {{name: down, url: "http://127.0.0.1:{closed_port()}"}}
            models: ["m:1b"]
            prompts: [{{id: liveness, text: hi, interval: 60s}}]
            probe: {{timeout: 2s, health_interval: 300ms}}
            gpu: {{enabled: false}}
            """,
        )
        with ExporterProcess(config) as exporter:
            # The hanging probe holds start-up; the body names the job it waits for.
            hung = "the first probe of 1 job(s): good/m:1b/liveness"
            waiting = wait_until(
                lambda: (
                    (r := exporter.get("/-/ready")).text == f"Not ready: waiting for {hung}\n" and r
                ),
                10,
                "/-/ready waiting for the hanging probe alone",
            )
            assert waiting.status_code == 503
            exporter.wait_ready()
            samples = exporter.samples()
            jobs = series_of(samples, "ollama_probes_total")
            assert {"target": "down", "model": "m:1b", "prompt": "liveness"} in jobs
            failures = [
                labels
                for labels in series_of(samples, "ollama_probe_failures_total")
                if labels["target"] == "down" and labels["reason"] == "connect"
            ]
            assert failures and all(
                samples[("ollama_probe_failures_total", frozenset(f.items()))] == 1
                for f in failures
            )
            page = exporter.get("/").text
            assert "down" in page and "connect" in page


def test_a_zero_config_exporter_whose_ollama_is_down_becomes_ready(tmp_path: Path) -> None:
    """Discovery on a server that never answers: no job, so ready once the listing failed."""
    config = write(
        tmp_path / "exporter.yaml",
        f"""\
        targets: [{{name: local, url: "http://127.0.0.1:{closed_port()}"}}]
        probe: {{health_interval: 300ms}}
        gpu: {{enabled: false}}
        """,
    )
    with ExporterProcess(config) as exporter:
        exporter.wait_ready()
        assert series_of(exporter.samples(), "ollama_probes_total") == []


# --- the bookkeeping itself ------------------------------------------------------------------


def key(model: str) -> JobKey:
    return JobKey("t", model, "p")


def test_readiness_waits_for_listings_then_the_jobs_known_then_and_latches() -> None:
    ready = StartupReadiness()
    assert ready.waiting_for() == "the scheduler to start"
    ready.target_added("t")
    ready.target_added("u")
    ready.started()
    assert ready.waiting_for() == "the first model listing of target(s) t, u"
    ready.listing_ended("t", {"j1": key("a"), "j2": key("b")})
    ready.listing_ended("u", {})
    assert ready.waiting_for() == "the first probe of 2 job(s): t/a/p, t/b/p"
    ready.job_ran("j1")
    ready.job_removed("j2")  # a job that ended before its first run is not waited for
    assert ready.ready and ready.waiting_for() is None
    ready.target_added("v")  # a reload adds a target: ready stays
    ready.listing_ended("v", {"j3": key("c")})
    assert ready.ready


def test_a_removed_target_is_not_waited_for() -> None:
    ready = StartupReadiness()
    ready.target_added("t")
    ready.target_added("gone")
    ready.started()
    ready.listing_ended("t", {})
    assert not ready.ready
    ready.target_removed("gone")
    assert ready.ready
