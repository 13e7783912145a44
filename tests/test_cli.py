"""The command line as users run it: `python -m exporter` in a subprocess, against the double.

Covers --config.check, --version, the `probe` command (table and JSON), and the serving
exporter end to end: every contract metric family with values that match what the Ollama
double did, `promtool check metrics` on the live text, shutdown on SIGTERM/SIGINT while a probe
hangs, and reloads by SIGHUP and POST /-/reload (vanished series go, counters keep counting,
a bad file keeps the old configuration). Every wait is an event or a poll with a deadline.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.cli import main
from tests.exporter_process import (
    REPO,
    ExporterProcess,
    Samples,
    exporter_env,
    parse_samples,
    promtool_check,
    value,
    wait_until,
)
from tests.exporter_process import series_of as series
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble, split_pieces

CONFIG_DIR = Path(__file__).parent / "testdata" / "config"
ANSWER = "Avocado is rich in potassium and fibre, and it keeps you full."


# --- helpers ----------------------------------------------------------------------------------


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        env=env if env is not None else exporter_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(path: Path, url: str, prompts: str, probe: str, **extra: str) -> Path:
    text = f"targets: [{{name: local, url: '{url}'}}]\nprompts:\n{prompts}\nprobe: {probe}\n"
    text += "".join(f"{key}: {val}\n" for key, val in extra.items())
    path.write_text(text, encoding="utf-8")
    return path


def chat_records(double: OllamaDouble, model: str) -> list[Any]:
    return [r for r in double.requests("/api/chat") if r.body and r.body.get("model") == model]


# --- --config.check and --version -------------------------------------------------------------


def test_config_check_accepts_the_valid_file() -> None:
    result = run_cli(
        "--config.check",
        f"--config.file={CONFIG_DIR / 'valid.yaml'}",
        env=exporter_env(PROBE_TEST_TOKEN="t"),
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"configuration OK: {CONFIG_DIR / 'valid.yaml'}\n"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("invalid-unknown-key.yaml", "prompts[0]: unknown key 'temprature'"),
        ("invalid-timeout-interval.yaml", "prompts[0].interval: probe.timeout (120s)"),
        ("invalid-not-yaml.yaml", "not valid YAML"),
    ],
)
def test_config_check_rejects_a_bad_file_with_status_2(name: str, field: str) -> None:
    path = CONFIG_DIR / name
    result = run_cli("--config.check", "--config.file", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{path}: {field}" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_may_come_from_the_environment() -> None:
    bad = CONFIG_DIR / "invalid-duty-cycle.yaml"
    result = run_cli("--config.check", env=exporter_env(OLLAMA_PROBE_EXPORTER_CONFIG=str(bad)))
    assert result.returncode == 2
    assert f"{bad}: probe.max_duty_cycle" in result.stderr


def test_config_check_without_a_file_uses_the_defaults() -> None:
    result = run_cli("--config.check")
    assert (result.returncode, result.stdout) == (0, "configuration OK: built-in defaults\n")


def test_a_malformed_ollama_host_is_a_config_error_not_a_traceback() -> None:
    result = run_cli("--config.check", env=exporter_env(OLLAMA_HOST="gpu-box:port"))
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert "OLLAMA_HOST" in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"ollama-probe-exporter {__version__}\n")


@pytest.mark.parametrize(
    "args",
    [("--log.level=loud",), ("--no-such-flag",), ("probe", "--output=xml")],
    ids=["bad-level", "unknown-flag", "bad-output"],
)
def test_bad_flags_exit_2(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's own exit, in-process: no exporter starts before the flags are parsed.
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err


# --- `probe`: one round, the report's table -------------------------------------------------------


def three_models() -> list[ModelScript]:
    """Three models with clearly different speeds; only beta is resident at first."""
    common: dict[str, Any] = {"answer": ANSWER, "token_interval": 0.005}
    return [
        ModelScript(
            "alpha:1b",
            family="llama",
            parameter_size="1.2B",
            quantization_level="Q8_0",
            first_token_delay=0.30,
            load_delay=0.05,
            size=2_000_000_000,
            size_vram=1_500_000_000,
            **common,
        ),
        ModelScript(
            "beta:2b",
            family="gemma3",
            parameter_size="2.6B",
            quantization_level="Q4_K_M",
            first_token_delay=0.12,
            resident=True,
            size=3_000_000_000,
            size_vram=2_500_000_000,
            **common,
        ),
        ModelScript(
            "gamma:3b",
            family="qwen3",
            parameter_size="3.1B",
            quantization_level="Q4_0",
            first_token_delay=0.02,
            size=4_000_000_000,
            size_vram=3_500_000_000,
            **common,
        ),
    ]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(three_models()) as running:
        yield running


def probe_config(tmp_path: Path, url: str, checks: str = "{contains_any: [potassium]}") -> Path:
    return write_config(
        tmp_path / "probe.yaml",
        url,
        f"  - {{id: liveness, text: 'Why avocados?', checks: {checks}}}",
        "{timeout: 10s}",
        gpu="{enabled: false}",
    )


def probe_json(result: subprocess.CompletedProcess[str]) -> tuple[list[Any], dict[str, Any]]:
    """The `probe --output json` document: its targets, and its results keyed by model."""
    document = json.loads(result.stdout)
    assert sorted(document) == ["results", "targets"], document
    return document["targets"], {row["model"]: row for row in document["results"]}


def test_probe_json_reports_every_model_and_exits_0(tmp_path: Path, double: OllamaDouble) -> None:
    result = run_cli(
        "probe", f"--config.file={probe_config(tmp_path, double.url)}", "--output=json"
    )
    assert result.returncode == 0, result.stderr
    targets, rows = probe_json(result)
    assert targets == [{"name": "local", "up": True, "error": None}]
    assert sorted(rows) == ["alpha:1b", "beta:2b", "gamma:3b"]
    words = len(ANSWER.split())
    scripts = {s.name: s for s in three_models()}
    for model, row in rows.items():
        assert (row["target"], row["prompt"], row["result"]) == ("local", "liveness", "ok")
        assert (row["chars"], row["words"]) == (len(ANSWER), words)
        assert row["tokens"] == len(split_pieces(ANSWER))
        load = scripts[model].load_delay
        assert load <= row["load_s"] < load + 0.25, row
        assert row["checks"] == {"contains_any": True}
        (record,) = chat_records(double, model)
        assert record.last_byte_at is not None and record.first_token_at is not None
        assert row["duration_s"] == pytest.approx(record.last_byte_at - record.received_at, abs=0.1)
        assert row["ttft_s"] == pytest.approx(record.first_token_at - record.received_at, abs=0.1)
    assert [rows[m]["cold_start"] for m in ("alpha:1b", "beta:2b", "gamma:3b")] == [
        True,
        False,
        True,
    ]
    assert [rows[m]["vram_bytes"] for m in ("alpha:1b", "beta:2b", "gamma:3b")] == [
        None,
        2_500_000_000,
        None,
    ]
    fastest = min(row["duration_s"] for row in rows.values())
    for row in rows.values():
        assert row["relative_speed"] == pytest.approx(fastest / row["duration_s"])
    assert rows["gamma:3b"]["relative_speed"] == 1.0
    assert rows["alpha:1b"]["relative_speed"] < rows["beta:2b"]["relative_speed"] < 1.0


def test_probe_relative_speed_compares_models_of_one_target(tmp_path: Path) -> None:
    # A slow box and a fast box: each box's fastest model is its own 100 %.
    slow_box = [
        ModelScript("slow:1b", answer=ANSWER, first_token_delay=0.15),
        ModelScript("slower:1b", answer=ANSWER, first_token_delay=0.40),
    ]
    with (
        OllamaDouble(slow_box) as slow,
        OllamaDouble([ModelScript("fast:1b", answer=ANSWER)]) as fast,
    ):
        config = tmp_path / "two.yaml"
        config.write_text(
            f"targets: [{{name: slow, url: '{slow.url}'}}, {{name: fast, url: '{fast.url}'}}]\n"
            "prompts: [{id: liveness, text: 'Why avocados?'}]\n"
            "gpu: {enabled: false}\n",
            encoding="utf-8",
        )
        result = run_cli("probe", f"--config.file={config}", "--output=json")
    assert result.returncode == 0, result.stderr
    _, rows = probe_json(result)
    for target in ("slow", "fast"):
        mine = [row for row in rows.values() if row["target"] == target]
        fastest = min(row["duration_s"] for row in mine)
        for row in mine:
            assert row["relative_speed"] == pytest.approx(fastest / row["duration_s"])
    assert rows["slow:1b"]["relative_speed"] == rows["fast:1b"]["relative_speed"] == 1.0
    assert rows["slower:1b"]["relative_speed"] < 1.0


TABLE_COLUMNS = [
    "target",
    "model",
    "prompt",
    "result",
    "duration",
    "TTFT",
    "load",
    "tokens",
    "tok/s",
    "chars",
    "words",
    "VRAM",
    "energy",
    "J/token",
    "cold",
    "checks",
    "relative speed",
]


def table_rows(text: str) -> list[dict[str, str]]:
    """Cut a left-aligned table into cells at the header's column starts.

    The table ends at the first empty line; what follows (down targets) is not a row.
    """
    header, *lines = text.rstrip("\n").split("\n\n", 1)[0].splitlines()
    starts = [header.index(name) for name in TABLE_COLUMNS]
    assert starts == sorted(starts), header
    assert re.split(r"\s{2,}", header) == TABLE_COLUMNS
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {name: line[a:b].strip() for name, (a, b) in zip(TABLE_COLUMNS, bounds, strict=True)}
        for line in lines
    ]


def test_probe_table_has_the_report_columns(tmp_path: Path, double: OllamaDouble) -> None:
    result = run_cli("probe", f"--config.file={probe_config(tmp_path, double.url)}")
    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in table_rows(result.stdout)}
    assert sorted(rows) == ["alpha:1b", "beta:2b", "gamma:3b"]
    for row in rows.values():
        assert (row["target"], row["prompt"], row["result"]) == ("local", "liveness", "ok")
        assert re.fullmatch(r"\d+\.\d\ds", row["duration"]), row
        assert re.fullmatch(r"\d+\.\d\ds", row["TTFT"]), row
        assert re.fullmatch(r"\d+\.\d\ds", row["load"]), row
        assert row["tokens"] == str(len(split_pieces(ANSWER)))
        assert re.fullmatch(r"\d+\.\d", row["tok/s"]), row
        assert (row["chars"], row["words"]) == (str(len(ANSWER)), str(len(ANSWER.split())))
        assert row["checks"] == "contains_any:ok"
    # alpha is the one model with a load delay.
    assert float(rows["alpha:1b"]["load"][:-1]) >= 0.05
    # Only beta was resident before its probe: it has a VRAM figure and no cold start.
    assert [rows[m]["VRAM"] for m in sorted(rows)] == ["", f"{2_500_000_000 / 2**20:.0f} MiB", ""]
    assert [rows[m]["cold"] for m in sorted(rows)] == ["yes", "no", "yes"]
    speeds = [rows[m]["relative speed"] for m in sorted(rows)]
    assert all(re.fullmatch(r"\d+%", speed) for speed in speeds), speeds
    alpha, beta, gamma = (int(speed[:-1]) for speed in speeds)
    assert alpha < beta < gamma == 100
    assert result.stdout.rstrip("\n").count("\n") == 3  # a header and three rows, nothing else


def test_probe_table_escapes_control_characters_in_names(tmp_path: Path) -> None:
    hostile = ["two\nFORGED row:1b", "tab\there:1b", "bell\x07:1b"]
    with OllamaDouble([ModelScript(name, answer=ANSWER) for name in hostile]) as double:
        result = run_cli("probe", f"--config.file={probe_config(tmp_path, double.url)}")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert sorted(row["model"] for row in rows) == [
        "bell\\x07:1b",
        "tab\\there:1b",
        "two\\nFORGED row:1b",
    ]
    assert all(row["result"] == "ok" and row["prompt"] == "liveness" for row in rows)
    assert result.stdout.rstrip("\n").count("\n") == len(hostile)
    assert "\t" not in result.stdout and "\x07" not in result.stdout


def test_probe_exits_1_when_a_model_fails(tmp_path: Path, double: OllamaDouble) -> None:
    double.set_fault("beta:2b", Fault.ERROR_LINE)
    reason = "stream_error"
    result = run_cli(
        "probe", f"--config.file={probe_config(tmp_path, double.url)}", "--output=json"
    )
    assert result.returncode == 1
    _, rows = probe_json(result)
    assert [rows[m]["result"] for m in sorted(rows)] == ["ok", reason, "ok"]
    assert rows["beta:2b"]["relative_speed"] is None
    assert (
        f"probe failed: target=local model=beta:2b prompt=liveness reason={reason}" in result.stderr
    )


def test_probe_exits_1_when_a_check_fails(tmp_path: Path, double: OllamaDouble) -> None:
    config = probe_config(tmp_path, double.url, checks="{contains_any: [durian], min_words: 3}")
    result = run_cli("probe", f"--config.file={config}")
    assert result.returncode == 1
    rows = table_rows(result.stdout)
    assert len(rows) == 3
    for row in rows:
        assert row["result"] == "ok"
        assert row["checks"] == "min_words:ok contains_any:FAIL"


def listing_error(stderr: str) -> str:
    """The reason the exporter's own log gave for the failed listing."""
    found = re.search(r"target local: model listing failed: (.+)", stderr)
    assert found, stderr
    return found.group(1)


@pytest.mark.parametrize("output", ["table", "json"])
def test_probe_says_why_a_target_is_down_and_exits_1(
    tmp_path: Path, double: OllamaDouble, output: str
) -> None:
    with OllamaDouble([]) as gone:
        url = gone.url
    config = tmp_path / "two.yaml"
    config.write_text(
        f"targets: [{{name: local, url: '{url}'}}, {{name: up, url: '{double.url}'}}]\n"
        "prompts: [{id: liveness, text: 'Why avocados?'}]\n"
        "gpu: {enabled: false}\n",
        encoding="utf-8",
    )
    result = run_cli("probe", f"--config.file={config}", f"--output={output}")
    assert result.returncode == 1
    reason = listing_error(result.stderr)
    if output == "json":
        targets, rows = probe_json(result)
        assert targets == [
            {"name": "local", "up": False, "error": reason},
            {"name": "up", "up": True, "error": None},
        ]
        assert sorted(rows) == ["alpha:1b", "beta:2b", "gamma:3b"]
        return
    assert [row["target"] for row in table_rows(result.stdout)] == ["up"] * 3
    assert result.stdout.splitlines()[-2:] == ["", f"target local: down ({reason})"]


@pytest.mark.parametrize(
    ("enabled", "target_gpu", "standin", "expected"),
    [
        # A local target under `auto` on a machine without NVML: normal, so not a warning.
        ("auto", "auto", {"init_error": "LibraryNotFound"}, []),
        # Asked for with `true`, NVML's absence is worth the warning.
        ("true", "auto", {"init_error": "LibraryNotFound"}, ["NVML unavailable"]),
        # No target owns this machine's GPU: NVML is never touched, not even at debug level.
        ("auto", "false", {}, []),
    ],
    ids=["auto-no-nvml", "true-no-nvml", "no-gpu-target"],
)
def test_probe_touches_nvml_only_for_a_gpu_target(
    tmp_path: Path,
    double: OllamaDouble,
    enabled: str,
    target_gpu: str,
    standin: dict[str, Any],
    expected: list[str],
) -> None:
    config = tmp_path / "gpu.yaml"
    config.write_text(
        f"targets: [{{name: local, url: '{double.url}', gpu: {target_gpu}}}]\n"
        "prompts: [{id: liveness, text: 'Why avocados?'}]\n"
        f"gpu: {{enabled: {enabled}}}\n",
        encoding="utf-8",
    )
    env = exporter_env(gpu_standin=True, NVML_STANDIN_CONFIG=json.dumps(standin))
    result = run_cli("probe", f"--config.file={config}", "--log.level=debug", env=env)
    assert result.returncode == 0, result.stderr
    nvml_lines = [line for line in result.stderr.splitlines() if "NVML" in line]
    warned = [line for line in nvml_lines if " WARNING " in line]
    assert [w for w in expected if any(w in line for line in warned)] == expected
    assert len(warned) == len(expected), nvml_lines
    if target_gpu == "false":
        assert nvml_lines == []


# --- the serving exporter, end to end ---------------------------------------------------------

# name -> type, as text_string_to_metric_families names them (counters without _total).
CONTRACT_FAMILIES = {
    "ollama_up": "gauge",
    "ollama_build_info": "gauge",
    "ollama_health_checks": "counter",
    "ollama_health_check_failures": "counter",
    "ollama_model_info": "gauge",
    "ollama_model_loaded": "gauge",
    "ollama_model_vram_bytes": "gauge",
    "ollama_model_memory_bytes": "gauge",
    "ollama_probes": "counter",
    "ollama_probe_failures": "counter",
    "ollama_probe_skips": "counter",
    "ollama_probe_generated_tokens": "counter",
    "ollama_probe_eval_seconds": "counter",
    "ollama_probe_cold_starts": "counter",
    "ollama_probe_check_failures": "counter",
    "ollama_probe_duration_seconds": "histogram",
    "ollama_probe_time_to_first_token_seconds": "histogram",
    "ollama_probe_success": "gauge",
    "ollama_probe_consecutive_failures": "gauge",
    "ollama_probe_last_duration_seconds": "gauge",
    "ollama_probe_last_time_to_first_token_seconds": "gauge",
    "ollama_probe_server_total_duration_seconds": "gauge",
    "ollama_probe_load_duration_seconds": "gauge",
    "ollama_probe_prompt_eval_duration_seconds": "gauge",
    "ollama_probe_eval_duration_seconds": "gauge",
    "ollama_probe_response_characters": "gauge",
    "ollama_probe_response_words": "gauge",
    "ollama_probe_response_tokens": "gauge",
    "ollama_probe_prompt_tokens": "gauge",
    "ollama_probe_tokens_per_second": "gauge",
    "ollama_probe_cold_start": "gauge",
    "ollama_probe_interval_seconds": "gauge",
    "ollama_probe_last_run_timestamp_seconds": "gauge",
    "ollama_probe_last_success_timestamp_seconds": "gauge",
    "ollama_probe_check_passed": "gauge",
    "ollama_probe_gpu_utilization_ratio": "gauge",
    "ollama_probe_gpu_memory_peak_bytes": "gauge",
    "ollama_exporter_build_info": "gauge",
    "ollama_exporter_config_last_reload_successful": "gauge",
    "ollama_exporter_probe_busy_seconds": "counter",
    "ollama_exporter_probe_concurrency_slots": "gauge",
    "ollama_exporter_probe_interval_stretch_ratio": "gauge",
    "ollama_exporter_probe_schedule_lag_seconds": "histogram",
    "ollama_exporter_probe_queue_wait_seconds": "histogram",
    "nvml_up": "gauge",
    "nvml_gpu_info": "gauge",
    "nvml_gpu_memory_used_bytes": "gauge",
    "nvml_gpu_memory_total_bytes": "gauge",
    "nvml_gpu_utilization_ratio": "gauge",
    "nvml_gpu_memory_utilization_ratio": "gauge",
    "nvml_gpu_temperature_celsius": "gauge",
    "nvml_gpu_power_watts": "gauge",
    "nvml_gpu_process_memory_used_bytes": "gauge",
}
REASONS = (
    "timeout",
    "connect",
    "http_status",
    "model_not_found",
    "stream_error",
    "invalid_response",
    "incomplete",
)


def test_end_to_end_metrics_match_what_the_double_did(tmp_path: Path, double: OllamaDouble) -> None:
    config = write_config(
        tmp_path / "serve.yaml",
        double.url,
        "  - {id: liveness, text: 'Why avocados?',"
        " checks: {contains_any: [potassium], regex: '^durian'}}",
        "{interval: 60s, timeout: 10s, health_interval: 300ms, inventory_interval: 60s,"
        " max_duty_cycle: 1}",
    )
    started = time.time()
    with ExporterProcess(config, env=exporter_env(gpu_standin=True)) as exporter:
        exporter.wait_ready()

        def all_resident() -> Samples | None:
            samples = exporter.samples()
            vram = series(samples, "ollama_model_vram_bytes")
            return samples if len(vram) == 3 else None

        samples = wait_until(all_resident, 10, "/api/ps to list the three probed models")
        text = exporter.scrape()
        samples = parse_samples(text)
        families = {f.name: f.type for f in text_string_to_metric_families(text)}
        pid = exporter.proc.pid
    finished = time.time()

    promtool_check(text)
    missing = {n: t for n, t in CONTRACT_FAMILIES.items() if families.get(n) != t}
    assert missing == {}, f"absent or of the wrong type: {missing}"
    assert any(name.startswith("process_") for name in families)
    assert not [name for (name, _) in samples if name.endswith("_created")]

    scripts = {s.name: s for s in three_models()}
    tokens = len(split_pieces(ANSWER))
    for model, script in scripts.items():
        job = {"target": "local", "model": model, "prompt": "liveness"}
        (record,) = chat_records(double, model)
        wall = record.last_byte_at - record.received_at
        ttft = record.first_token_at - record.received_at

        assert value(samples, "ollama_probes_total", **job) == 1
        assert value(samples, "ollama_probe_success", **job) == 1
        assert value(samples, "ollama_probe_consecutive_failures", **job) == 0
        duration = value(samples, "ollama_probe_last_duration_seconds", **job)
        assert duration == pytest.approx(wall, abs=0.1)
        assert value(samples, "ollama_probe_duration_seconds_count", **job) == 1
        assert value(samples, "ollama_probe_duration_seconds_sum", **job) == duration
        assert value(samples, "ollama_probe_duration_seconds_bucket", **job, le="60.0") == 1
        assert value(samples, "ollama_probe_last_time_to_first_token_seconds", **job) == (
            pytest.approx(ttft, abs=0.1)
        )
        assert value(samples, "ollama_probe_time_to_first_token_seconds_count", **job) == 1
        assert value(samples, "ollama_probe_time_to_first_token_seconds_bucket", **job, le="60.0")

        for reason in REASONS:
            assert value(samples, "ollama_probe_failures_total", **job, reason=reason) == 0
        for reason in ("not_loaded", "residency_unknown", "overrun"):
            assert value(samples, "ollama_probe_skips_total", **job, reason=reason) == 0

        cold = 0 if script.resident else 1
        assert value(samples, "ollama_probe_cold_start", **job) == cold
        assert value(samples, "ollama_probe_cold_starts_total", **job) == cold
        # Ollama's own figures, as the double measured its sleeps (never shorter than asked).
        load = value(samples, "ollama_probe_load_duration_seconds", **job)
        assert load is not None and script.load_delay <= load < script.load_delay + 0.25
        server_total = value(samples, "ollama_probe_server_total_duration_seconds", **job)
        assert server_total is not None and server_total <= duration
        prompt_eval = value(samples, "ollama_probe_prompt_eval_duration_seconds", **job)
        assert prompt_eval is not None
        assert script.first_token_delay <= prompt_eval < script.first_token_delay + 0.25
        eval_s = value(samples, "ollama_probe_eval_duration_seconds", **job)
        assert eval_s is not None and eval_s > 0
        assert value(samples, "ollama_probe_eval_seconds_total", **job) == eval_s
        assert value(samples, "ollama_probe_response_characters", **job) == len(ANSWER)
        assert value(samples, "ollama_probe_response_words", **job) == len(ANSWER.split())
        assert value(samples, "ollama_probe_response_tokens", **job) == tokens
        assert value(samples, "ollama_probe_generated_tokens_total", **job) == tokens
        assert value(samples, "ollama_probe_prompt_tokens", **job) == script.prompt_eval_count
        assert value(samples, "ollama_probe_tokens_per_second", **job) == pytest.approx(
            tokens / eval_s
        )
        assert value(samples, "ollama_probe_interval_seconds", **job) == 60
        last_run = value(samples, "ollama_probe_last_run_timestamp_seconds", **job)
        assert last_run is not None and started <= last_run <= finished
        assert value(samples, "ollama_probe_last_success_timestamp_seconds", **job) == last_run
        assert value(samples, "ollama_probe_check_passed", **job, check="contains_any") == 1
        assert value(samples, "ollama_probe_check_passed", **job, check="regex") == 0
        assert value(samples, "ollama_probe_check_failures_total", **job, check="regex") == 1
        assert value(samples, "ollama_probe_check_failures_total", **job, check="contains_any") == 0
        gpus = series(samples, "ollama_probe_gpu_memory_peak_bytes")
        assert sorted(g["gpu"] for g in gpus if g["model"] == model) == ["0", "1"]
        utilisation = [
            value(samples, "ollama_probe_gpu_utilization_ratio", **g)
            for g in series(samples, "ollama_probe_gpu_utilization_ratio")
            if g["model"] == model
        ]
        assert len(utilisation) == 2 and all(u is not None and 0 <= u <= 1 for u in utilisation)

        # Server state from /api/tags, /api/show and /api/ps.
        info = {
            "target": "local",
            "model": model,
            "family": script.family,
            "parameter_size": script.parameter_size,
            "quantization_level": script.quantization_level,
            "digest": script.digest[:12],  # docs/metrics.md: the digest's first 12 hex digits
        }
        assert value(samples, "ollama_model_info", **info) == 1
        assert value(samples, "ollama_model_loaded", target="local", model=model) == 1
        assert value(samples, "ollama_model_vram_bytes", target="local", model=model) == (
            script.size_vram
        )
        assert value(samples, "ollama_model_memory_bytes", target="local", model=model) == (
            script.size
        )

    assert value(samples, "ollama_up", target="local") == 1
    assert series(samples, "ollama_build_info") == [{"target": "local", "version": double.version}]
    checks = value(samples, "ollama_health_checks_total", target="local")
    assert checks is not None and 1 <= checks <= len(double.requests("/api/version"))
    assert value(samples, "ollama_health_check_failures_total", target="local") == 0
    assert series(samples, "ollama_exporter_build_info") == [{"version": __version__}]
    assert value(samples, "ollama_exporter_config_last_reload_successful") == 1
    # Busy seconds: every probe's measured duration (all succeeded here, once each).
    probed = sum(v for (n, _), v in samples.items() if n == "ollama_probe_duration_seconds_sum")
    busy = value(samples, "ollama_exporter_probe_busy_seconds_total", target="local")
    assert probed > 0 and busy == pytest.approx(probed)
    assert value(samples, "ollama_exporter_probe_concurrency_slots", target="local") == 1
    assert value(samples, "ollama_exporter_probe_interval_stretch_ratio", target="local") == 1
    lag = value(samples, "ollama_exporter_probe_schedule_lag_seconds_count", target="local")
    wait = value(samples, "ollama_exporter_probe_queue_wait_seconds_count", target="local")
    assert (lag, wait) == (3, 3)

    # NVML, from the stand-in: two GPUs, the exporter's own process on GPU 0.
    assert value(samples, "nvml_up") == 1
    uuids = {g["gpu"]: g["uuid"] for g in series(samples, "nvml_gpu_info")}
    assert sorted(uuids) == ["0", "1"]
    for gpu, uuid in uuids.items():
        used = value(samples, "nvml_gpu_memory_used_bytes", gpu=gpu, uuid=uuid)
        total = value(samples, "nvml_gpu_memory_total_bytes", gpu=gpu, uuid=uuid)
        assert used is not None and total is not None and 0 < used <= total
        ratio = value(samples, "nvml_gpu_utilization_ratio", gpu=gpu, uuid=uuid)
        assert ratio is not None and 0 <= ratio <= 1
    processes = series(samples, "nvml_gpu_process_memory_used_bytes")
    assert [(p["gpu"], p["pid"]) for p in processes] == [("0", str(pid))]
    per_probe = {g["uuid"] for g in series(samples, "ollama_probe_gpu_memory_peak_bytes")}
    assert per_probe == set(uuids.values())


def test_gpu_reading_disabled_serves_no_nvml_series(tmp_path: Path, double: OllamaDouble) -> None:
    # NVML would load (the stand-in is on the path): only the configuration switches it off.
    config = write_config(
        tmp_path / "serve.yaml",
        double.url,
        "  - {id: liveness, text: 'Why avocados?'}",
        "{interval: 60s, timeout: 10s}",
        gpu="{enabled: false}",
    )
    with ExporterProcess(config, env=exporter_env(gpu_standin=True)) as exporter:
        exporter.wait_ready()
        text = exporter.scrape()
    assert "ollama_probes_total{" in text
    assert [line for line in text.splitlines() if "nvml_" in line] == []
    assert [name for (name, _) in parse_samples(text) if "_gpu_" in name] == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_a_hanging_probe_within_2s(tmp_path: Path, signum: int) -> None:
    hang = ModelScript("stuck:1b", fault=Fault.HANG_BEFORE_HEADERS)
    with OllamaDouble([hang]) as double:
        config = write_config(
            tmp_path / "hang.yaml",
            double.url,
            "  - {id: liveness, text: hi}",
            "{interval: 10m, timeout: 5m, health_interval: 1m}",
        )
        with ExporterProcess(config) as exporter:
            assert exporter.url  # serving, so the signal handlers are in place
            double.wait_for_requests(1, "/api/chat", timeout=20)
            assert exporter.get("/-/ready").status_code == 503  # the probe is still hanging
            sent = time.monotonic()
            exporter.proc.send_signal(signum)
            status = exporter.proc.wait(timeout=10)
            elapsed = time.monotonic() - sent
            exporter._reader.join(timeout=5)
            assert f"received {signal.Signals(signum).name}, stopping" in exporter.stderr
    assert status == 0
    assert elapsed < 2.0


# --- reloads ----------------------------------------------------------------------------------

FAST_PROBE = "{interval: 1s, timeout: 900ms, health_interval: 1s, inventory_interval: 1m}"


def prompts_yaml(*ids: str) -> str:
    return "\n".join(f"  - {{id: {i}, text: '{i} me'}}" for i in ids)


def job_values(samples: Samples, prompt: str) -> tuple[float, float, float]:
    """The cumulative series of one job: probes, duration observations, generated tokens."""
    job = {"target": "local", "model": "solo:1b", "prompt": prompt}
    found = (
        value(samples, "ollama_probes_total", **job),
        value(samples, "ollama_probe_duration_seconds_count", **job),
        value(samples, "ollama_probe_generated_tokens_total", **job),
    )
    assert None not in found, f"series of prompt {prompt} missing"
    return found  # type: ignore[return-value]


def has_prompt(samples: Samples, prompt: str) -> bool:
    return any(dict(labels).get("prompt") == prompt for (_, labels) in samples)


@pytest.fixture
def solo() -> Iterator[OllamaDouble]:
    with OllamaDouble([ModelScript("solo:1b", answer=ANSWER)]) as running:
        yield running


def wait_for_probes(exporter: ExporterProcess, prompt: str, more_than: float) -> Samples:
    def counted() -> Samples | None:
        samples = exporter.samples()
        job = {"target": "local", "model": "solo:1b", "prompt": prompt}
        probes = value(samples, "ollama_probes_total", **job)
        return samples if probes is not None and probes > more_than else None

    return wait_until(counted, 10, f"more than {more_than} probes of {prompt}")


@pytest.mark.parametrize("trigger", ["SIGHUP", "POST"])
def test_reload_drops_removed_series_and_keeps_counting(
    tmp_path: Path, solo: OllamaDouble, trigger: str
) -> None:
    config = write_config(
        tmp_path / "reload.yaml", solo.url, prompts_yaml("keep", "drop"), FAST_PROBE
    )
    with ExporterProcess(config) as exporter:
        exporter.wait_ready()
        before = job_values(wait_for_probes(exporter, "keep", 1), "keep")

        write_config(config, solo.url, prompts_yaml("keep"), FAST_PROBE)
        if trigger == "SIGHUP":
            exporter.proc.send_signal(signal.SIGHUP)
        else:
            response = exporter.post("/-/reload")
            assert (response.status_code, response.text) == (200, "Configuration reloaded\n")

        def dropped() -> Samples | None:
            samples = exporter.samples()
            return None if has_prompt(samples, "drop") else samples

        after = wait_until(dropped, 10, "the series of the removed prompt to vanish")
        assert value(after, "ollama_exporter_config_last_reload_successful") == 1
        seen = [before, job_values(after, "keep")]
        # Never reset, and still counting: poll until a probe after the reload lands.
        final = wait_for_probes(exporter, "keep", seen[-1][0])
        seen.append(job_values(final, "keep"))
        for earlier, later in itertools.pairwise(seen):
            assert all(b <= a for b, a in zip(earlier, later, strict=True)), seen
        assert seen[-1][0] > before[0]
        assert not has_prompt(final, "drop")
        assert "configuration reloaded" in exporter.stderr


def test_a_probe_in_flight_during_reload_does_not_bring_back_removed_series(
    tmp_path: Path,
) -> None:
    slow = ModelScript("solo:1b", answer=ANSWER, first_token_delay=0.8)
    probe = "{interval: 3s, timeout: 2s, health_interval: 1s, concurrency_per_target: 2}"
    with OllamaDouble([slow]) as double:
        config = write_config(tmp_path / "r.yaml", double.url, prompts_yaml("keep", "drop"), probe)
        with ExporterProcess(config) as exporter:

            def drop_in_flight() -> Any:
                for record in double.requests("/api/chat"):
                    if "drop me" in json.dumps(record.body) and record.completed_at is None:
                        return record
                return None

            record = wait_until(drop_in_flight, 10, "a probe of the prompt to remove")
            write_config(config, double.url, prompts_yaml("keep"), probe)
            assert exporter.post("/-/reload").status_code == 200
            assert not has_prompt(exporter.samples(), "drop")
            wait_until(lambda: record.completed_at, 5, "the in-flight probe to end")
            # Watch for a while after that probe ended: its result must not be published.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                samples = exporter.samples()
                resurrected = [
                    name for (name, labels) in samples if dict(labels).get("prompt") == "drop"
                ]
                assert resurrected == [], f"removed prompt's series came back: {resurrected}"
                threading.Event().wait(0.05)


def test_a_bad_file_keeps_the_old_config_and_reports_the_failure(
    tmp_path: Path, solo: OllamaDouble
) -> None:
    config = write_config(tmp_path / "reload.yaml", solo.url, prompts_yaml("keep"), FAST_PROBE)
    with ExporterProcess(config) as exporter:
        exporter.wait_ready()
        assert exporter.get("/-/reload").status_code == 405
        assert exporter.get("/-/reload").headers["Allow"] == "POST"

        config.write_text("probe: {interval: soon}\n", encoding="utf-8")
        response = exporter.post("/-/reload")
        assert response.status_code == 500
        assert f"{config}: probe.interval: 'soon' is not a duration" in response.text
        samples = exporter.samples()
        assert value(samples, "ollama_exporter_config_last_reload_successful") == 0
        # The old configuration keeps probing.
        probes = job_values(samples, "keep")[0]
        samples = wait_for_probes(exporter, "keep", probes)
        assert value(samples, "ollama_exporter_config_last_reload_successful") == 0

        # A good file again recovers the gauge.
        write_config(config, solo.url, prompts_yaml("keep"), FAST_PROBE)
        assert exporter.post("/-/reload").status_code == 200
        assert value(exporter.samples(), "ollama_exporter_config_last_reload_successful") == 1
        assert "Traceback" not in exporter.stderr
