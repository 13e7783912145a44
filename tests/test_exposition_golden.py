"""Golden /metrics text for an all-good and an all-failing exporter, compared byte for byte.

The state is built the way the exporter builds it (jobs opened and results recorded in the
ResultStore, a Target's health check, listing and /api/ps reading, the scheduler's pacing
pushes), with fixed values and a fake GPU reader, so the files document the exact exposition.
Regenerate with UPDATE_GOLDEN=1 and review the diff. Rules and dashboards tests read these files
as the list of real names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.backends import ListedModel, RunningModel
from exporter.config import ProbeConfig
from exporter.exposition.exporter_series import LoadState
from exporter.exposition.gpu_series import GpuCollector
from exporter.exposition.scrape import Exposition
from exporter.gpu import GpuDevice, GpuProcess, GpuSnapshot, ProbeGpuUsage
from exporter.probing.jobs import JobKey, ProbeResult
from exporter.probing.pacing import Pacing, Run
from exporter.probing.probe import BackendTimings, ProbeOutcome, Reason
from exporter.results import ResultStore
from tests.fakes.gpu import FixedGpuReader
from tests.fakes.static_target import StaticTarget

GOLDEN = Path(__file__).parent / "golden"
FINISHED_AT = 1_790_000_000.0
MODELS = ("gemma3:12b", "mistral:7b")
PROMPTS = {"liveness": (), "avocado_pl": ("min_words", "contains_any", "language")}
UUID = "GPU-11111111-2222-3333-4444-555555555555"


GOOD_GPU = GpuSnapshot(
    up=True,
    devices=(
        GpuDevice(
            index=0,
            uuid=UUID,
            name="NVIDIA GeForce RTX 3060",
            driver_version="550.54.14",
            memory_used_bytes=7_587_299_328,
            memory_total_bytes=12_884_901_888,
            utilization_ratio=0.42,
            memory_utilization_ratio=0.3,
            temperature_celsius=61.0,
            power_watts=118.5,
            processes=(GpuProcess(pid=4242, name="ollama", used_memory_bytes=7_340_032_000),),
        ),
    ),
)


def _listed(name: str) -> ListedModel:
    family = name.split(":")[0]
    digest = hashlib.sha256(name.encode()).hexdigest()
    return ListedModel(
        name, family, "12.2B", "Q4_K_M", remote=False, capabilities=("completion",), digest=digest
    )


class State:
    """One target, its jobs open, and the exposition reading them."""

    def __init__(
        self, gpu: GpuSnapshot, loads: LoadState | None = None, *, energy: bool = False
    ) -> None:
        self.store = ResultStore()
        self.local = StaticTarget("local")
        self.pacing = Pacing()
        self.pacing.add_target("local", ProbeConfig(max_duty_cycle=1.0))
        self.exposition = Exposition(
            self.store,
            lambda: [self.local.target],
            lambda: loads or LoadState(),
            self.pacing,
            live_collectors=[GpuCollector(FixedGpuReader(gpu))],
        )
        for model in MODELS:
            for prompt, checks in PROMPTS.items():
                self.store.open(JobKey("local", model, prompt), checks, energy=energy)

    def ran(self, result: ProbeResult) -> None:
        """The scheduler's accounting of one finished run: its busy time."""
        key = result.key
        self.pacing.ended(f"{key.model}/{key.prompt}", key.target, result.interval_s, result)


def _success(key: JobKey, seconds: float) -> ProbeResult:
    answer = "Awokado zawiera potas i błonnik, a także zdrowe tłuszcze. " * 8
    server = BackendTimings(
        total_s=seconds - 0.01,
        load_s=0.012,
        prompt_eval_s=0.2,
        eval_s=seconds - 0.5,
        prompt_tokens=31,
        eval_count=400,
        done_reason="stop",
    )
    checks = {"min_words": True, "contains_any": True, "language": True}
    return ProbeResult(
        key=key,
        outcome=ProbeOutcome(None, "ok", seconds, 0.35, answer, server),
        finished_at=FINISHED_AT,
        interval_s=1800.0 if key.prompt == "avocado_pl" else 300.0,
        cold_start=False,
        checks={k: v for k, v in checks.items() if k in PROMPTS[key.prompt]},
        gpu=(ProbeGpuUsage(0, UUID, 0.87, 7_600_000_000, 412.5),),
        vram_bytes=7_500_000_000,
    )


def good_state() -> Exposition:
    state = State(GOOD_GPU, energy=True)
    state.local.health("0.32.15")
    state.local.inventory([_listed(m) for m in MODELS])
    expires = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    state.local.residency([RunningModel("gemma3:12b", 8_000_000_000, 7_500_000_000, expires, 4096)])
    for i, model in enumerate(MODELS):
        for prompt in PROMPTS:
            result = _success(JobKey("local", model, prompt), 37.4 + 7.5 * i)
            state.store.record(result)
            state.ran(result)
    state.pacing.began("local", Run(planned=0.0, submitted=0.0, slot_free=0.0, started=0.004), None)
    return state.exposition


def failing_state() -> Exposition:
    # The last configuration load failed; none succeeded since the (unset) start-up time.
    state = State(GpuSnapshot(up=False, devices=()), LoadState(ok=False, succeeded_at=0.0))
    state.local.health(None)
    reasons = iter([Reason.CONNECT, Reason.TIMEOUT, Reason.MODEL_NOT_FOUND, Reason.INCOMPLETE])
    for model in MODELS:
        for prompt in PROMPTS:
            reason = next(reasons)
            outcome = ProbeOutcome(reason, "detail", 120.0 if reason is Reason.TIMEOUT else 0.002)
            result = ProbeResult(JobKey("local", model, prompt), outcome, FINISHED_AT, 300.0, None)
            state.store.record(result)
            state.ran(result)  # failed probes kept the target busy too, a timeout all its timeout
    return state.exposition


CASES = {"metrics-ok.prom": good_state, "metrics-all-failing.prom": failing_state}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exposition_matches_golden_file(name: str) -> None:
    text = CASES[name]().render().decode()
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_file_passes_promtool_lint(name: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: the README's test command installs Debian's prometheus"
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=(GOLDEN / name).read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_failing_state_keeps_answer_gauges_absent_and_success_zero() -> None:
    text = failing_state().render().decode()
    assert 'ollama_up{target="local"} 0.0' in text
    assert "nvml_up 0.0" in text and "nvml_gpu_info" not in text
    assert "ollama_probe_response_words{" not in text  # no successful answer yet
    assert 'ollama_probe_success{model="gemma3:12b",prompt="liveness",target="local"} 0.0' in text
