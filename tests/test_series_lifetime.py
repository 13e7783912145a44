"""A job's series exist exactly while the job does, by construction.

The exposition renders the probe series from the ResultStore's open jobs, so whatever ends a job
(a reload excluding its model or lowering max_models, a listing without the model) ends its
series in the same step, and a result that arrives afterwards, as from a probe that was in flight
when its job ended, is refused by the store and cannot bring them back. In-process, on a Service
against the Ollama double; tests/test_reload.py checks the same through the real process.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.config import load_config
from exporter.gpu import DisabledGpuReader
from exporter.probing.jobs import JobKey, ProbeResult
from exporter.probing.pacing import Run
from exporter.probing.probe import ProbeOutcome, Reason
from exporter.service import Service
from tests.exporter_process import parse_samples, value, wait_until
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble

MODELS = ("alpha:1b", "beta:1b", "gamma:1b")
LAG_COUNT = "ollama_exporter_probe_schedule_lag_seconds_count"


def write(path: Path, url: str, extra: str = "", target: str = "", listings: str = "60s") -> Path:
    text = f"""\
        targets: [{{name: local, url: "{url}"{target}}}]
        prompts: [{{id: liveness, text: hi, interval: 60s}}]
        probe: {{timeout: 5s, health_interval: 300ms, inventory_interval: {listings},
                 concurrency_per_target: 3, max_duty_cycle: 1}}
        gpu: {{enabled: false}}
        {extra}
        """
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def started() -> Iterator[Callable[[Path], Service]]:
    services: list[Service] = []

    def start(path: Path) -> Service:
        service = Service(load_config(path), path, DisabledGpuReader())
        services.append(service)
        service.start()
        return service

    yield start
    for service in services:
        service.stop()


def job_models(service: Service) -> set[str]:
    """The models that have any probe series (job series carry a `prompt` label)."""
    samples = parse_samples(service.exposition.render().decode())
    return {dict(labels)["model"] for _, labels in samples if "prompt" in dict(labels)}


def late(model: str) -> ProbeResult:
    """A result of the model's job, as from a probe that was still in flight."""
    outcome = ProbeOutcome(Reason.TIMEOUT, "timed out", 5.0)
    return ProbeResult(JobKey("local", model, "liveness"), outcome, 1.79e9, 60.0)


def assert_gone_for_good(service: Service, kept: set[str]) -> None:
    assert job_models(service) == kept
    for model in set(MODELS) - kept:
        assert service.store.record(late(model)) is False
    assert job_models(service) == kept


@pytest.mark.parametrize(
    ("extra", "target", "kept"),
    [
        ('exclude_models: ["beta*"]', "", {"alpha:1b", "gamma:1b"}),
        ("", ", max_models: 1", {"alpha:1b"}),
    ],
    ids=["reload excludes a model", "reload lowers max_models"],
)
def test_a_reload_that_ends_jobs_ends_their_series_for_good(
    tmp_path: Path, started: Callable[[Path], Service], extra: str, target: str, kept: set[str]
) -> None:
    with OllamaDouble([ModelScript(m, resident=True) for m in MODELS]) as double:
        path = write(tmp_path / "exporter.yaml", double.url)
        service = started(path)
        wait_until(service.ready, 20, "every job's first run")
        assert job_models(service) == set(MODELS)
        write(path, double.url, extra, target)
        assert service.reload().ok
        assert_gone_for_good(service, kept)


def test_a_listing_without_a_model_ends_its_series_for_good(
    tmp_path: Path, started: Callable[[Path], Service]
) -> None:
    with OllamaDouble([ModelScript(m, resident=True) for m in MODELS]) as double:
        service = started(write(tmp_path / "exporter.yaml", double.url, listings="300ms"))
        wait_until(service.ready, 20, "every job's first run")
        assert job_models(service) == set(MODELS)
        double.set_models([ModelScript(m, resident=True) for m in MODELS if m != "beta:1b"])
        wait_until(lambda: "beta:1b" not in job_models(service), 10, "a listing without beta")
        assert_gone_for_good(service, {"alpha:1b", "gamma:1b"})


def test_a_probe_in_flight_when_its_job_ends_does_not_bring_its_series_back(
    tmp_path: Path, started: Callable[[Path], Service]
) -> None:
    scripts = [ModelScript("alpha:1b", resident=True)]
    scripts.append(ModelScript("beta:1b", resident=True, fault=Fault.HANG_BEFORE_HEADERS))
    with OllamaDouble(scripts) as double:
        path = write(tmp_path / "exporter.yaml", double.url)
        service = started(path)

        def lag_count() -> float:
            text = service.exposition.render().decode()
            return value(parse_samples(text), LAG_COUNT, target="local") or 0.0

        # alpha's probe has ended and beta's hangs, its job and series still there.
        wait_until(lambda: lag_count() == 1, 10, "alpha's probe to end")
        wait_until(
            lambda: any(r.body and r.body.get("model") == "beta:1b" for r in double.requests()),
            10,
            "beta's probe to be in flight",
        )
        assert job_models(service) == {"alpha:1b", "beta:1b"}
        write(path, double.url, 'exclude_models: ["beta*"]')
        assert service.reload().ok
        assert job_models(service) == {"alpha:1b"}
        double.release()  # beta's probe fails now, after its job ended
        # The run pushes its schedule lag right after it tried to record its result.
        wait_until(lambda: lag_count() == 2, 10, "beta's probe to end")
        assert job_models(service) == {"alpha:1b"}
        assert service.store.get(JobKey("local", "beta:1b", "liveness")) is None


def test_a_target_a_reload_removes_takes_all_its_series_with_it(
    tmp_path: Path, started: Callable[[Path], Service]
) -> None:
    with (
        OllamaDouble([ModelScript("alpha:1b", resident=True)]) as one,
        OllamaDouble([ModelScript("beta:1b", resident=True)]) as two,
    ):
        path = tmp_path / "exporter.yaml"
        second = f', {{name: other, url: "{two.url}"}}]'
        write(path, one.url)
        path.write_text(path.read_text().replace("}]", "}" + second, 1), encoding="utf-8")
        service = started(path)
        wait_until(service.ready, 20, "every job's first run")

        def targets() -> set[str]:
            samples = parse_samples(service.exposition.render().decode())
            return {dict(labels)["target"] for _, labels in samples if "target" in dict(labels)}

        assert targets() == {"local", "other"}
        write(path, one.url)
        assert service.reload().ok
        assert targets() == {"local"}
        # A run of the removed target that ended late: its pacing counts nowhere.
        outcome = ProbeOutcome(None, "ok", 0.5)
        late = ProbeResult(JobKey("other", "beta:1b", "liveness"), outcome, 0.0, 60.0, None)
        service.pacing.began("other", Run(0.0, 0.0, 0.0, 0.01), None)
        service.pacing.ended("other:beta:1b:liveness", "other", 60.0, late)
        assert targets() == {"local"}
