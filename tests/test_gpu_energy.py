"""Energy per answer: NVML's total energy counter read at a probe's start and end.

The stand-in NVML (tests/fakes/nvml_standin) grows each device's counter by a configured
increment per read, so the energy of one probe is exactly one increment per device, and the
series must carry exactly that. A device without the counter (NotSupported), or a binding
without the function, gives no series at all: nothing is estimated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from exporter.gpu import GpuEnergy, NvmlReader, ProbeGpuSampler
from tests.exporter_process import exporter_env
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble, split_pieces
from tests.test_cli import probe_json, run_cli, table_rows
from tests.test_gpu import _STANDIN, UUID0, UUID1
from tests.test_runner import ANSWER, WARM, Rig

GPU_TARGET = {"gpu": True}


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The stand-in with its two default GPUs: +2500 mJ and +1250 mJ per read."""
    monkeypatch.delenv("NVML_STANDIN_CONFIG", raising=False)
    _STANDIN.reset()
    yield _STANDIN
    _STANDIN.reset()


def devices(*increments: int | None) -> list[dict[str, Any]]:
    """One stand-in GPU per increment; None is a GPU without an energy counter."""
    return [
        {
            "uuid": f"GPU-{i}",
            "energy_mj": None if step is None else 7_000_000,
            "energy_increments_mj": [step or 0],
        }
        for i, step in enumerate(increments)
    ]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble([ModelScript(WARM, answer=ANSWER, resident=True)]) as d:
        yield d


def energy_rig(double: OllamaDouble, clients: Any, nvml: ModuleType) -> Rig:
    """A Rig whose job is opened as the scheduler opens it (energy counter if supported)."""
    rig = Rig(double, clients, gpu=NvmlReader(nvml), target=GPU_TARGET)
    spec = rig.spec(WARM)
    rig.store.open(spec.key, spec.prompt.checks.names(), energy=rig.runner.measures_energy(spec))
    return rig


# --- the reader and the sampler -----------------------------------------------------------


def test_reader_reads_each_counter(nvml: ModuleType) -> None:
    reader = NvmlReader(nvml)
    assert reader.read_energy() == (
        GpuEnergy(0, UUID0, 5_000_000),
        GpuEnergy(1, UUID1, 3_000_000),
    )
    assert reader.read_energy() == (
        GpuEnergy(0, UUID0, 5_002_500),
        GpuEnergy(1, UUID1, 3_001_250),
    )


def test_reader_leaves_out_a_gpu_without_the_counter(nvml: ModuleType) -> None:
    nvml.configure(devices(None, 400))
    assert NvmlReader(nvml).read_energy() == (GpuEnergy(1, "GPU-1", 7_000_000),)


def test_reader_without_the_function_reads_no_energy(nvml: ModuleType) -> None:
    old_binding = SimpleNamespace(
        **{k: v for k, v in vars(nvml).items() if k != "nvmlDeviceGetTotalEnergyConsumption"}
    )
    reader = NvmlReader(old_binding)  # type: ignore[arg-type]
    assert reader.read().up  # everything else still works
    assert reader.read_energy() == ()


def test_reader_when_nvml_is_down_reads_no_energy(nvml: ModuleType) -> None:
    nvml.configure(init_error="DriverNotLoaded")
    assert NvmlReader(nvml).read_energy() == ()


def test_sampler_measures_exactly_between_entry_and_exit(nvml: ModuleType) -> None:
    with ProbeGpuSampler(NvmlReader(nvml), interval=0.001) as sampler:
        pass
    assert [(u.uuid, u.energy_joules) for u in sampler.usage()] == [(UUID0, 2.5), (UUID1, 1.25)]


def test_sampler_gives_no_energy_for_a_gpu_without_the_counter(nvml: ModuleType) -> None:
    nvml.configure(devices(None, 400))
    with ProbeGpuSampler(NvmlReader(nvml), interval=3600) as sampler:
        pass
    assert [(u.uuid, u.energy_joules) for u in sampler.usage()] == [
        ("GPU-0", None),
        ("GPU-1", 0.4),
    ]


def test_sampler_gives_no_energy_when_the_counter_went_back(nvml: ModuleType) -> None:
    nvml.configure(devices(-5))  # a driver reload resets the counter
    with ProbeGpuSampler(NvmlReader(nvml), interval=3600) as sampler:
        pass
    assert [u.energy_joules for u in sampler.usage()] == [None]


# --- the series ---------------------------------------------------------------------------


def test_energy_series_carry_the_counters_difference(
    double: OllamaDouble, clients: Any, nvml: ModuleType
) -> None:
    rig = energy_rig(double, clients, nvml)
    assert rig.job("ollama_probe_gpu_energy_joules_total") == 0  # created with the job
    assert rig.metric("ollama_probe_last_gpu_energy_joules") is None  # no probe yet

    assert rig.probe(WARM).outcome.success
    assert rig.job("ollama_probe_gpu_energy_joules_total") == 3.75  # 2.5 J + 1.25 J
    assert rig.job("ollama_probe_last_gpu_energy_joules", gpu="0", uuid=UUID0) == 2.5
    assert rig.job("ollama_probe_last_gpu_energy_joules", gpu="1", uuid=UUID1) == 1.25

    assert rig.probe(WARM).outcome.success
    assert rig.job("ollama_probe_gpu_energy_joules_total") == 7.5
    assert rig.job("ollama_probe_last_gpu_energy_joules", gpu="0", uuid=UUID0) == 2.5


def test_failed_probe_adds_no_energy(double: OllamaDouble, clients: Any, nvml: ModuleType) -> None:
    rig = energy_rig(double, clients, nvml)
    rig.probe(WARM)
    nvml.configure(devices(9_000, 9_000))  # what a failed probe burns must not show
    double.set_fault(WARM, Fault.STATUS_500)
    assert not rig.probe(WARM).outcome.success
    assert rig.job("ollama_probe_gpu_energy_joules_total") == 3.75
    assert rig.job("ollama_probe_last_gpu_energy_joules", gpu="0", uuid=UUID0) == 2.5


def test_no_energy_series_without_a_counter(
    double: OllamaDouble, clients: Any, nvml: ModuleType
) -> None:
    nvml.configure(devices(None, None))
    rig = energy_rig(double, clients, nvml)
    result = rig.probe(WARM)
    assert result.outcome.success
    assert [u.energy_joules for u in result.gpu] == [None, None]
    assert rig.job("ollama_probe_gpu_utilization_ratio", gpu="0") is not None
    assert rig.metric("ollama_probe_gpu_energy_joules_total") is None
    assert rig.metric("ollama_probe_last_gpu_energy_joules") is None


def test_only_the_gpus_with_a_counter_count(
    double: OllamaDouble, clients: Any, nvml: ModuleType
) -> None:
    nvml.configure(devices(None, 800))
    rig = energy_rig(double, clients, nvml)
    rig.probe(WARM)
    assert rig.job("ollama_probe_gpu_energy_joules_total") == 0.8
    assert rig.metric("ollama_probe_last_gpu_energy_joules", gpu="0") is None
    assert rig.job("ollama_probe_last_gpu_energy_joules", gpu="1", uuid="GPU-1") == 0.8


def test_no_energy_series_for_a_target_that_does_not_own_the_gpu(
    double: OllamaDouble, clients: Any, nvml: ModuleType
) -> None:
    rig = Rig(double, clients, gpu=NvmlReader(nvml), target={"gpu": False})
    spec = rig.spec(WARM)
    assert rig.runner.measures_energy(spec) is False
    rig.probe(WARM)
    assert rig.metric("ollama_probe_gpu_energy_joules_total") is None
    assert nvml.call_count("nvmlDeviceGetTotalEnergyConsumption") == 0


# --- the `probe` command ------------------------------------------------------------------


def energy_probe(tmp_path: Path, double: OllamaDouble, output: str, standin: Any) -> Any:
    config = tmp_path / "gpu.yaml"
    config.write_text(
        f"targets: [{{name: local, url: '{double.url}', gpu: true}}]\n"
        "prompts: [{id: liveness, text: 'Why avocados?'}]\n"
        "gpu: {enabled: true}\n",
        encoding="utf-8",
    )
    env = exporter_env(gpu_standin=True, NVML_STANDIN_CONFIG=json.dumps(standin))
    return run_cli("probe", f"--config.file={config}", f"--output={output}", env=env)


def test_probe_json_shows_joules_per_answer_and_per_token(
    tmp_path: Path, double: OllamaDouble
) -> None:
    result = energy_probe(tmp_path, double, "json", {"devices": devices(2_000, 1_000)})
    assert result.returncode == 0, result.stderr
    _, rows = probe_json(result)
    tokens = len(split_pieces(ANSWER))
    assert rows[WARM]["tokens"] == tokens
    assert rows[WARM]["energy_j"] == 3.0
    assert rows[WARM]["energy_j_per_token"] == pytest.approx(3.0 / tokens)


def test_probe_table_shows_joules_and_nothing_without_a_counter(
    tmp_path: Path, double: OllamaDouble
) -> None:
    result = energy_probe(tmp_path, double, "table", {"devices": devices(2_000, 1_000)})
    assert result.returncode == 0, result.stderr
    [row] = table_rows(result.stdout)
    tokens = len(split_pieces(ANSWER))
    assert (row["energy"], row["J/token"]) == ("3.0 J", f"{3.0 / tokens:.3f}")

    result = energy_probe(tmp_path, double, "json", {"devices": devices(None)})
    _, rows = probe_json(result)
    assert (rows[WARM]["energy_j"], rows[WARM]["energy_j_per_token"]) == (None, None)


def test_default_standin_gpus_both_have_counters() -> None:
    """The e2e stacks run on the stand-in's defaults: both GPUs measure energy there."""
    assert [d.energy_increments_mj for d in _STANDIN.default_devices()] == [(2_500,), (1_250,)]
