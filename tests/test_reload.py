"""Reloads through the real process: a reload changes exactly what changed.

Every job a reload ends loses its series and its status-page row by the time the reload has
answered; a setting the running process cannot change is named, not passed off as applied.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.exporter_process import ExporterProcess, Samples, series_of, value, wait_until
from tests.fakes.ollama_double import ModelScript, OllamaDouble

MODELS = ("alpha:1b", "beta:1b", "gamma:1b")
PROBE = "{timeout: 5s, health_interval: 300ms, inventory_interval: 60s}"
RELOADED = "ollama_exporter_config_last_reload_success_timestamp_seconds"


def write(path: Path, url: str, extra: str = "", target: str = "") -> Path:
    text = f"""\
        targets: [{{name: local, url: "{url}"{target}}}]
        prompts: [{{id: liveness, text: hi, interval: 60s}}]
        probe: {PROBE}
        gpu: {{enabled: false}}
        {extra}
        """
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def models_with(samples: Samples, name: str) -> set[str]:
    return {labels["model"] for labels in series_of(samples, name)}


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    # Resident at start, as in the report of the leftover series.
    with OllamaDouble([ModelScript(m, resident=True) for m in MODELS]) as running:
        yield running


@pytest.mark.parametrize(
    ("extra", "target", "kept"),
    [
        ('exclude_models: ["beta*"]', "", {"alpha:1b", "gamma:1b"}),
        ("", ", max_models: 1", {"alpha:1b"}),
    ],
    ids=["exclude_models added", "max_models lowered"],
)
def test_a_reload_that_deselects_models_removes_their_series_and_rows_at_once(
    tmp_path: Path, double: OllamaDouble, extra: str, target: str, kept: set[str]
) -> None:
    config = write(tmp_path / "exporter.yaml", double.url)
    with ExporterProcess(config) as exporter:
        exporter.wait_ready()
        before = exporter.samples()
        assert models_with(before, "ollama_probe_interval_seconds") == set(MODELS)
        write(config, double.url, extra, target)
        response = exporter.post("/-/reload")
        assert (response.status_code, response.text) == (200, "Configuration reloaded\n")
        # No wait: the reload answered after it had removed the ended jobs.
        after = exporter.samples()
        for name in ("ollama_probe_interval_seconds", "ollama_probes_total"):
            assert models_with(after, name) == kept, name
        page = exporter.get("/").text
        assert [m for m in MODELS if m in page and m not in kept] == []
        # The kept jobs keep their counts: nothing was reset or re-probed.
        for model in kept:
            labels = {"target": "local", "model": model, "prompt": "liveness"}
            assert value(after, "ollama_probes_total", **labels) == value(
                before, "ollama_probes_total", **labels
            )


def test_a_listen_address_change_is_named_as_needing_a_restart(
    tmp_path: Path, double: OllamaDouble
) -> None:
    config = write(tmp_path / "exporter.yaml", double.url)
    with ExporterProcess(config) as exporter:
        exporter.wait_ready()
        write(config, double.url, "web: {listen_address: ':19999'}")
        response = exporter.post("/-/reload")
        assert response.status_code == 200
        assert "warning: web.listen_address changed" in response.text
        assert "only at a restart" in response.text
        line = "WARNING exporter.service: reload: web.listen_address changed"
        wait_until(lambda: line in exporter.stderr, 10, "the reload's WARNING in the log")
        assert exporter.get("/-/healthy").status_code == 200  # still where it started


def test_the_last_successful_load_is_timestamped_and_a_failed_one_keeps_it(
    tmp_path: Path, double: OllamaDouble
) -> None:
    config = write(tmp_path / "exporter.yaml", double.url)
    started = time.time()
    with ExporterProcess(config) as exporter:
        at_start = value(exporter.samples(), RELOADED)
        assert at_start is not None and at_start >= started - 1
        config.write_text("probe: {interval: soon}\n", encoding="utf-8")
        assert exporter.post("/-/reload").status_code == 500
        failed = exporter.samples()
        assert value(failed, "ollama_exporter_config_last_reload_successful") == 0
        assert value(failed, RELOADED) == at_start
        write(config, double.url)
        reloaded = time.time()
        assert exporter.post("/-/reload").status_code == 200
        ok = exporter.samples()
        assert value(ok, "ollama_exporter_config_last_reload_successful") == 1
        reading = value(ok, RELOADED)
        assert reading is not None and reading >= reloaded - 1 and reading > at_start
