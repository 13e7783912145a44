"""Issue 27: openai targets in a real exporter process, beside an ollama target.

One `python -m exporter` probes the same model through an Ollama double (native API) and an
OpenAI double (`protocol: openai`, a bearer token from the environment, llama.cpp timings), plus
an openai target whose models each carry one fault. /metrics shows both targets' probe series,
the series an openai target cannot have are absent, the status page lists both, and the fault
table holds for openai targets. `probe --output json` reports an openai target too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.probing.probe import Reason
from tests.exporter_process import REPO, ExporterProcess, Samples, exporter_env, series_of, value
from tests.fakes.ollama_double import ModelScript, OllamaDouble
from tests.fakes.openai_double import Fault, OpenAIDouble, OpenAIModelScript, split_pieces
from tests.test_hardening_support import failures, job, successes

MODEL = "gemma3:12b"
ANSWER = "Avocado is rich in potassium and fibre."
TOKEN = "sk-test-0123456789abcdef"
TIMEOUT_S = 1.5
REASONS = tuple(r.value for r in Reason)
FAULT_MODELS = {
    "hang": Fault.HANG_BEFORE_HEADERS,
    "drop": Fault.DROP_MID_STREAM,
    "nodone": Fault.NO_DONE,
    "errevent": Fault.ERROR_EVENT,
    "garbage": Fault.GARBAGE_EVENT,
    "huge": Fault.HUGE_RESPONSE,
    "missing": Fault.NOT_FOUND,
    "crash": Fault.STATUS_500,
    "busy": Fault.STATUS_503,
}


@dataclass
class Rig:
    exporter: ExporterProcess
    ollama: OllamaDouble
    openai: OpenAIDouble
    faults: OpenAIDouble


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("openai")
    # Tokens spaced out, so the stream spans several reads and a client-side rate exists.
    ollama = OllamaDouble([ModelScript(MODEL, answer=ANSWER, resident=True, token_interval=0.01)])
    openai = OpenAIDouble(
        [OpenAIModelScript(MODEL, answer=ANSWER, first_token_delay=0.05, token_interval=0.01)],
        timings=True,
        api_key=TOKEN,
    )
    faults = OpenAIDouble(
        [OpenAIModelScript(name, fault=fault) for name, fault in FAULT_MODELS.items()],
        huge_bytes=2 * 1024 * 1024,
    )
    exporter: ExporterProcess | None = None
    try:
        for double in (ollama, openai, faults):
            double.start()
        config = tmp / "config.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                targets:
                  - {{name: native, url: "{ollama.url}"}}
                  - {{name: vllm, url: "{openai.url}", protocol: openai, discover: true,
                      headers: {{Authorization: "Bearer ${{OPENAI_TEST_KEY}}"}}}}
                  - {{name: faults, url: "{faults.url}", protocol: openai, discover: true}}
                prompts:
                  - {{id: liveness, text: "Why avocados?", interval: 3s,
                      options: {{temperature: 0, num_predict: 64, top_k: 20}},
                      checks: {{contains_any: [potassium]}}}}
                probe: {{timeout: {TIMEOUT_S}s, health_interval: 500ms, inventory_interval: 60s,
                         concurrency_per_target: 4, max_duty_cycle: 1, keep_alive: 10m,
                         max_response_bytes: 1048576}}
                gpu: {{enabled: false}}
                """
            ),
            encoding="utf-8",
        )
        exporter = ExporterProcess(config, env=exporter_env(OPENAI_TEST_KEY=TOKEN))
        yield Rig(exporter, ollama, openai, faults)
    finally:
        if exporter is not None:
            exporter.close()
        for double in (ollama, openai, faults):
            double.stop()


def both_probed(samples: Samples) -> bool:
    return all(successes(samples, **job(t, MODEL)) for t in ("native", "vllm"))


def test_one_model_through_both_protocols(rig: Rig) -> None:
    samples = rig.exporter.samples_when(both_probed, 20, "a good probe through both targets")
    pieces = len(split_pieces(ANSWER))
    for target in ("native", "vllm"):
        labels = job(target, MODEL)
        assert value(samples, "ollama_probe_success", **labels) == 1
        assert value(samples, "ollama_probe_check_passed", **labels, check="contains_any") == 1
        assert value(samples, "ollama_probe_response_tokens", **labels) == pieces
        assert value(samples, "ollama_probe_prompt_tokens", **labels) is not None
        rate = value(samples, "ollama_probe_stream_tokens_per_second", **labels)
        assert rate is not None and rate > 0
        assert value(samples, "ollama_up", target=target) == 1
    # The openai target: llama.cpp's timings are its server-side figures; the figures its
    # protocol does not have are absent, not zero.
    vllm = job("vllm", MODEL)
    assert value(samples, "ollama_probe_prompt_eval_duration_seconds", **vllm) is not None
    assert value(samples, "ollama_probe_eval_duration_seconds", **vllm) is not None
    assert value(samples, "ollama_probe_tokens_per_second", **vllm) is not None
    for absent in (
        "ollama_probe_load_duration_seconds",
        "ollama_probe_server_total_duration_seconds",
        "ollama_probe_cold_start",
    ):
        assert value(samples, absent, **vllm) is None, absent
    assert value(samples, "ollama_probe_cold_start", **job("native", MODEL)) is not None
    for family, present in [
        ("ollama_model_loaded", {"native"}),
        ("ollama_model_vram_bytes", {"native"}),
        ("ollama_model_changes_total", {"native"}),
        ("ollama_build_info", {"native"}),
        ("ollama_model_info", {"native", "vllm", "faults"}),
    ]:
        assert {s["target"] for s in series_of(samples, family)} == present, family


def test_the_requests_each_target_got(rig: Rig) -> None:
    rig.exporter.samples_when(both_probed, 20, "a good probe through both targets")
    [native, *_] = rig.ollama.requests("/api/chat")
    [vllm, *_] = rig.openai.requests("/v1/chat/completions")
    assert native.body is not None and vllm.body is not None
    assert native.body["keep_alive"] == "10m" and native.body["options"]["top_k"] == 20
    assert vllm.headers["authorization"] == f"Bearer {TOKEN}"
    sent = {k: v for k, v in vllm.body.items() if k not in ("messages",)}
    assert sent == {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": 64,
    }
    # The openai double's only health and listing endpoint.
    assert {r.path for r in rig.openai.requests()} <= {"/v1/models", "/v1/chat/completions"}


def test_warnings_name_the_openai_targets_once_and_the_token_never_shows(rig: Rig) -> None:
    rig.exporter.samples_when(both_probed, 20, "a good probe through both targets")
    stderr = rig.exporter.stderr
    residency = [line for line in stderr.splitlines() if "probe.keep_alive" in line]
    assert len(residency) == 1 and "(vllm, faults)" in residency[0], residency
    options = [line for line in stderr.splitlines() if "prompt liveness sets top_k" in line]
    assert len(options) == 1 and "(vllm, faults)" in options[0], options
    assert TOKEN not in stderr
    assert TOKEN not in rig.exporter.get("/").text


def test_the_status_page_lists_both_targets(rig: Rig) -> None:
    rig.exporter.samples_when(both_probed, 20, "a good probe through both targets")
    page = rig.exporter.get("/").text
    for target in ("native", "vllm"):
        row = re.search(rf"<td>{target}</td><td>{re.escape(MODEL)}</td><td>liveness</td>.*?</tr>",
                        page)  # fmt: skip
        assert row is not None, page
        assert "ok" in row.group(0)


@dataclass(frozen=True)
class Row:
    fault: str
    model: str
    reason: str


# The shape of test_hardening_faults.FAULT_TABLE, for an openai target.
FAULT_TABLE = [
    Row("headers never arriving", "hang", "timeout"),
    Row("a stream cut mid-way", "drop", "incomplete"),
    Row("EOF without data: [DONE]", "nodone", "incomplete"),
    Row("an error event after 200", "errevent", "stream_error"),
    Row("a non-JSON data: event", "garbage", "invalid_response"),
    Row("a reply larger than max_response_bytes", "huge", "invalid_response"),
    Row("404 model_not_found", "missing", "model_not_found"),
    Row("500", "crash", "http_status"),
    Row("503 overloaded", "busy", "http_status"),
]


@pytest.mark.parametrize("row", FAULT_TABLE, ids=[r.fault for r in FAULT_TABLE])
def test_fault_ends_in_its_reason_and_the_exporter_keeps_serving(rig: Rig, row: Row) -> None:
    labels = job("faults", row.model)
    samples = rig.exporter.samples_when(
        lambda s: failures(s, row.reason, **labels),
        15,
        f"ollama_probe_failures_total{{reason={row.reason!r}}} of {labels}",
    )
    others = {r: failures(samples, r, **labels) for r in REASONS if r != row.reason}
    assert others == dict.fromkeys(others, 0.0), f"{row.fault} also counted as {others}"
    assert value(samples, "ollama_probe_success", **labels) == 0
    if row.reason == "timeout":
        duration = value(samples, "ollama_probe_last_duration_seconds", **labels)
        assert duration is not None and TIMEOUT_S <= duration < TIMEOUT_S + 1.0
    assert rig.exporter.get("/-/healthy").status_code == 200
    line = f"target=faults model={row.model} prompt=liveness reason={row.reason} "
    assert line in rig.exporter.stderr


def test_probe_command_reports_an_openai_target_as_json(tmp_path: Path) -> None:
    script = OpenAIModelScript(MODEL, answer=ANSWER, first_token_delay=0.05, prompt_tokens=9)
    with OpenAIDouble([script]) as double:
        config = tmp_path / "probe.yaml"
        config.write_text(
            f"targets: [{{name: vllm, url: '{double.url}', protocol: openai}}]\n"
            f"models: ['{MODEL}']\n"
            "prompts: [{id: liveness, text: 'Why avocados?'}]\n"
            "probe: {timeout: 10s}\ngpu: {enabled: false}\n",
            encoding="utf-8",
        )
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "probe", f"--config.file={config}", "--output=json"],
            cwd=REPO,
            env=exporter_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        [record] = double.requests("/v1/chat/completions")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["targets"] == [{"name": "vllm", "up": True, "error": None}]
    [row] = document["results"]
    assert (row["target"], row["model"], row["result"]) == ("vllm", MODEL, "ok")
    assert row["tokens"] == len(split_pieces(ANSWER))
    assert (row["load_s"], row["cold_start"], row["vram_bytes"]) == (None, None, None)
    assert record.first_token_at is not None and record.last_byte_at is not None
    assert row["ttft_s"] == pytest.approx(record.first_token_at - record.received_at, abs=0.1)
    assert row["duration_s"] == pytest.approx(record.last_byte_at - record.received_at, abs=0.1)


@pytest.mark.parametrize("check", [True, False], ids=["config.check", "start"])
def test_an_openai_target_without_models_or_discover_exits_2(tmp_path: Path, check: bool) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "targets: [{name: vllm, url: 'http://127.0.0.1:9/v1', protocol: openai}]\n",
        encoding="utf-8",
    )
    args = [sys.executable, "-m", "exporter", f"--config.file={config}"]
    args += ["--config.check"] if check else ["--web.listen-address=127.0.0.1:0"]
    result = subprocess.run(
        args, cwd=REPO, env=exporter_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "targets[0].discover: target 'vllm' (openai) has nothing to probe" in result.stderr
