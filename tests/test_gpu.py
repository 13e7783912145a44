"""Tests for the NVML reader, the per-probe GPU sampler and the nvml_* collector.

Most tests drive ``NvmlReader`` against the stand-in ``pynvml`` in tests/fakes/nvml_standin,
loaded under its own module name so that the real ``pynvml`` stays importable for the one
``gpu``-marked test. Sampler tests use a scripted reader and wait on read counts, never sleeps.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.exposition.gpu_series import GpuCollector
from exporter.gpu import (
    DisabledGpuReader,
    GpuDevice,
    GpuEnergy,
    GpuProcess,
    GpuReader,
    GpuSnapshot,
    NvmlReader,
    ProbeGpuSampler,
    ProbeGpuUsage,
)
from tests.fakes.gpu import FixedGpuReader

REPO = Path(__file__).resolve().parent.parent
STANDIN_DIR = REPO / "tests" / "fakes" / "nvml_standin"
UUID0 = "GPU-00000000-0000-0000-0000-000000000000"
UUID1 = "GPU-00000000-0000-0000-0000-000000000001"
GIB = 1024**3


def _load_standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvml_standin_pynvml", STANDIN_DIR / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


_STANDIN = _load_standin()


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The stand-in, freshly reset to its two default GPUs."""
    monkeypatch.delenv("NVML_STANDIN_CONFIG", raising=False)
    _STANDIN.reset()
    yield _STANDIN
    _STANDIN.reset()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _scrape(reader: GpuReader) -> tuple[CollectorRegistry, str]:
    registry = CollectorRegistry()
    registry.register(GpuCollector(reader))
    return registry, generate_latest(registry).decode()


# --- NvmlReader -------------------------------------------------------------------------------


def test_reads_two_healthy_gpus(nvml: ModuleType) -> None:
    reader = NvmlReader(nvml)

    snapshot = reader.read()

    assert snapshot.up
    assert [d.index for d in snapshot.devices] == [0, 1]
    gpu0, gpu1 = snapshot.devices
    assert (gpu0.uuid, gpu0.name, gpu0.driver_version) == (UUID0, "Standin GPU", "550.00.standin")
    assert (gpu0.memory_used_bytes, gpu0.memory_total_bytes) == (6 * GIB, 24 * GIB)
    assert (gpu0.utilization_ratio, gpu0.memory_utilization_ratio) == (0.2, 0.1)
    assert (gpu0.temperature_celsius, gpu0.power_watts) == (55.0, 150.0)  # 150000 mW
    assert [p.pid for p in gpu0.processes] == [os.getpid()]
    assert gpu0.processes[0].used_memory_bytes == 512 * 1024**2
    assert gpu0.processes[0].name
    assert gpu1.uuid == UUID1 and gpu1.processes == ()
    assert reader.read().devices[0].utilization_ratio == 0.6  # the stand-in steps each read


def test_decodes_bytes_from_old_bindings(nvml: ModuleType) -> None:
    nvml.configure(bytes_strings=True)

    gpu0 = NvmlReader(nvml).read().devices[0]

    assert (gpu0.uuid, gpu0.name, gpu0.driver_version) == (UUID0, "Standin GPU", "550.00.standin")
    assert isinstance(gpu0.processes[0].name, str) and gpu0.processes[0].name


@pytest.mark.parametrize("error", ["LibraryNotFound", "DriverNotLoaded"])
def test_init_failure_is_down_with_one_warning(
    nvml: ModuleType, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    nvml.configure(init_error=error)
    clock = FakeClock()
    reader = NvmlReader(nvml, clock=clock)

    for _ in range(3):
        assert reader.read() == GpuSnapshot(up=False, devices=())
        clock.now += 61

    assert nvml.call_count("nvmlInit") == 3
    assert len(_warnings(caplog)) == 1
    assert "NVML unavailable" in _warnings(caplog)[0]


def test_unavailable_level_lowers_only_the_init_failure(
    nvml: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    nvml.configure(init_error="LibraryNotFound")
    clock = FakeClock()
    reader = NvmlReader(nvml, clock=clock, unavailable_level=logging.DEBUG)

    with caplog.at_level(logging.DEBUG, logger="exporter.gpu"):
        assert reader.read().up is False
        [record] = caplog.records
        assert (record.levelno, "NVML unavailable" in record.getMessage()) == (logging.DEBUG, True)
        # NVML that worked and then stopped answering is an outage, whatever the level above.
        nvml.configure()
        clock.now += 61
        assert reader.read().up is True
        nvml.nvmlShutdown()  # behind the reader's back: every call now fails
        assert reader.read().up is False
    assert any("stopped answering" in message for message in _warnings(caplog))


def test_missing_pynvml_module_is_down(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    reader = NvmlReader()

    assert reader.read() == GpuSnapshot(up=False, devices=())
    assert reader.read().up is False
    assert len(_warnings(caplog)) == 1
    reader.close()


def test_init_retried_only_after_retry_period_then_recovers(
    nvml: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.gpu")
    nvml.configure(init_error="DriverNotLoaded")
    clock = FakeClock()
    reader = NvmlReader(nvml, clock=clock)
    assert not reader.read().up

    nvml.configure()  # the driver is loaded now
    clock.now += 59.0
    assert not reader.read().up
    assert nvml.call_count("nvmlInit") == 1  # too early to try again

    clock.now += 1.0
    snapshot = reader.read()
    assert snapshot.up and len(snapshot.devices) == 2
    assert nvml.call_count("nvmlInit") == 2
    assert any("NVML initialised" in r.getMessage() for r in caplog.records)


def test_library_going_away_after_init_recovers_later(nvml: ModuleType) -> None:
    clock = FakeClock()
    reader = NvmlReader(nvml, clock=clock)
    assert reader.read().up
    nvml.nvmlShutdown()  # behind the reader's back: every call now fails as Uninitialized

    assert reader.read() == GpuSnapshot(up=False, devices=())
    clock.now += 60.0
    assert reader.read().up


def test_lost_gpu_is_dropped_alone_and_logged_once(
    nvml: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    reader = NvmlReader(nvml)
    assert len(reader.read().devices) == 2

    nvml.configure(lost={1})
    for _ in range(3):
        snapshot = reader.read()
        assert snapshot.up
        assert [d.uuid for d in snapshot.devices] == [UUID0]

    assert len(_warnings(caplog)) == 1
    assert "GPU 1" in _warnings(caplog)[0]


@pytest.mark.parametrize(
    "function", ["nvmlDeviceGetHandleByIndex", "nvmlDeviceGetUUID", "nvmlDeviceGetName"]
)
def test_gpu_without_identity_is_dropped_alone(nvml: ModuleType, function: str) -> None:
    nvml.configure(field_errors={0: {function: "Unknown"}})

    snapshot = NvmlReader(nvml).read()

    assert snapshot.up
    assert [d.uuid for d in snapshot.devices] == [UUID1]


NOT_SUPPORTED_CASES = [
    ("nvmlDeviceGetMemoryInfo", ["memory_used_bytes", "memory_total_bytes"]),
    ("nvmlDeviceGetUtilizationRates", ["utilization_ratio", "memory_utilization_ratio"]),
    ("nvmlDeviceGetTemperature", ["temperature_celsius"]),
    ("nvmlDeviceGetPowerUsage", ["power_watts"]),
]


@pytest.mark.parametrize(("function", "fields"), NOT_SUPPORTED_CASES)
def test_unsupported_reading_is_none_for_that_gpu_only(
    nvml: ModuleType, function: str, fields: Sequence[str]
) -> None:
    nvml.configure(field_errors={0: {function: "NotSupported"}})

    gpu0, gpu1 = NvmlReader(nvml).read().devices

    everything = {f.name for f in dataclasses.fields(GpuDevice)}
    assert {f for f in everything if getattr(gpu0, f) is None} == set(fields)
    assert all(getattr(gpu1, f) is not None for f in everything)


def test_unsupported_process_listing_gives_no_processes(nvml: ModuleType) -> None:
    nvml.configure(field_errors={0: {"nvmlDeviceGetComputeRunningProcesses": "NoPermission"}})

    gpu0 = NvmlReader(nvml).read().devices[0]

    assert gpu0.processes == () and gpu0.memory_used_bytes == 6 * GIB


def _one_gpu_with(processes: Sequence[object]) -> list[object]:
    return [_STANDIN.StandinDevice(uuid=UUID0, processes=tuple(processes))]


def test_vanished_process_keeps_its_row_with_empty_name(nvml: ModuleType, tmp_path: Path) -> None:
    gone = nvml.StandinProcess(pid=4_000_000, used_memory=1024, name=None)
    nvml.configure(devices=_one_gpu_with([gone]))

    gpu0 = NvmlReader(nvml, proc_root=tmp_path).read().devices[0]  # no /proc entry either

    assert gpu0.processes == (GpuProcess(pid=4_000_000, name="", used_memory_bytes=1024),)


def test_process_name_falls_back_to_proc_comm(nvml: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "comm").write_text("ollama_llama_se\n")
    hidden = nvml.StandinProcess(pid=77, used_memory=2048, name=None)
    nvml.configure(devices=_one_gpu_with([hidden]))

    gpu0 = NvmlReader(nvml, proc_root=tmp_path).read().devices[0]

    assert gpu0.processes == (GpuProcess(pid=77, name="ollama_llama_se", used_memory_bytes=2048),)


def test_compute_and_graphics_processes_merge_by_pid(nvml: ModuleType) -> None:
    nvml.configure(
        devices=_one_gpu_with(
            [
                nvml.StandinProcess(pid=10, used_memory=100, name="both"),
                nvml.StandinProcess(pid=10, used_memory=300, name="both", graphics=True),
                nvml.StandinProcess(pid=5, used_memory=None, name="wddm", graphics=True),
            ]
        )
    )

    gpu0 = NvmlReader(nvml).read().devices[0]

    assert gpu0.processes == (
        GpuProcess(pid=5, name="wddm", used_memory_bytes=None),
        GpuProcess(pid=10, name="both", used_memory_bytes=300),
    )


def test_close_shuts_nvml_down_and_later_reads_are_down(nvml: ModuleType) -> None:
    reader = NvmlReader(nvml)
    reader.close()
    assert nvml.call_count("nvmlShutdown") == 0  # never initialised: nothing to shut down

    reader = NvmlReader(nvml)
    assert reader.read().up
    reader.close()

    assert nvml.call_count("nvmlShutdown") == 1 and not nvml.is_initialised()
    assert reader.read() == GpuSnapshot(up=False, devices=())


def test_concurrent_reads_are_serialised(nvml: ModuleType) -> None:
    reader = NvmlReader(nvml)
    results: list[GpuSnapshot] = []
    threads = [threading.Thread(target=lambda: results.append(reader.read())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8 and all(len(s.devices) == 2 for s in results)
    assert nvml.call_count("nvmlInit") == 1


# --- the stand-in as e2e tests use it: imported as `pynvml` in a fresh process ----------------

_SUBPROCESS_CODE = """
import dataclasses, json, pynvml
from exporter.gpu import NvmlReader
reader = NvmlReader()
snapshots = [dataclasses.asdict(reader.read()) for _ in range(2)]
print(json.dumps({"module": pynvml.__file__, "snapshots": snapshots}))
"""


def _run_with_standin(config: Mapping[str, object] | None) -> Any:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STANDIN_DIR), str(REPO)])}
    env.pop("NVML_STANDIN_CONFIG", None)
    if config is not None:
        env["NVML_STANDIN_CONFIG"] = json.dumps(config)
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_CODE],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


# --- GpuCollector -----------------------------------------------------------------------------


def test_collector_exposes_every_series(nvml: ModuleType) -> None:
    registry, text = _scrape(FixedGpuReader(NvmlReader(nvml).read()))
    gpu0 = {"gpu": "0", "uuid": UUID0}

    def value(metric: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {**gpu0, **labels})

    assert registry.get_sample_value("nvml_up") == 1.0
    info = {"name": "Standin GPU", "driver_version": "550.00.standin"}
    assert value("nvml_gpu_info", **info) == 1.0
    assert value("nvml_gpu_memory_used_bytes") == 6 * GIB
    assert value("nvml_gpu_memory_total_bytes") == 24 * GIB
    assert value("nvml_gpu_utilization_ratio") == 0.2
    assert value("nvml_gpu_memory_utilization_ratio") == 0.1
    assert value("nvml_gpu_temperature_celsius") == 55.0
    assert value("nvml_gpu_power_watts") == 150.0
    assert registry.get_sample_value("nvml_gpu_power_watts", {"gpu": "1", "uuid": UUID1}) == 60.0
    assert "nvml_gpu_process_memory_used_bytes{" in text
    assert f'pid="{os.getpid()}"' in text
    assert "memory controller was busy" in text and "not memory used/total" in text


def test_collector_reads_afresh_at_every_scrape(nvml: ModuleType) -> None:
    registry, _ = _scrape(NvmlReader(nvml))
    labels = {"gpu": "0", "uuid": UUID0}

    readings = [registry.get_sample_value("nvml_gpu_utilization_ratio", labels) for _ in range(3)]

    assert readings == [0.6, 1.0, 0.6]  # the first scrape already happened in _scrape


@pytest.mark.parametrize(("function", "fields"), NOT_SUPPORTED_CASES)
def test_collector_omits_only_the_unsupported_series(
    nvml: ModuleType, function: str, fields: Sequence[str]
) -> None:
    nvml.configure(field_errors={0: {function: "NotSupported"}})
    registry, _ = _scrape(FixedGpuReader(NvmlReader(nvml).read()))
    by_field = {
        "memory_used_bytes": "nvml_gpu_memory_used_bytes",
        "memory_total_bytes": "nvml_gpu_memory_total_bytes",
        "utilization_ratio": "nvml_gpu_utilization_ratio",
        "memory_utilization_ratio": "nvml_gpu_memory_utilization_ratio",
        "temperature_celsius": "nvml_gpu_temperature_celsius",
        "power_watts": "nvml_gpu_power_watts",
    }

    for field, metric in by_field.items():
        gpu0 = registry.get_sample_value(metric, {"gpu": "0", "uuid": UUID0})
        gpu1 = registry.get_sample_value(metric, {"gpu": "1", "uuid": UUID1})
        assert (gpu0 is None) == (field in fields), metric
        assert gpu1 is not None, metric


def test_collector_skips_process_without_known_memory(nvml: ModuleType) -> None:
    nvml.configure(devices=_one_gpu_with([nvml.StandinProcess(pid=5, used_memory=None)]))

    _, text = _scrape(NvmlReader(nvml))

    assert "nvml_gpu_process_memory_used_bytes" not in text
    assert "nvml_gpu_memory_used_bytes{" in text


NVML_DOWN_EXPOSITION = (
    "# HELP nvml_up 1 if NVML (the NVIDIA Management Library) could be initialised and read at "
    "this scrape, else 0; while 0 no other nvml_* series are exposed.\n"
    "# TYPE nvml_up gauge\n"
    "nvml_up 0.0\n"
)


def test_collector_when_nvml_down_exposes_only_nvml_up_zero(nvml: ModuleType) -> None:
    nvml.configure(init_error="LibraryNotFound")

    assert _scrape(NvmlReader(nvml))[1] == NVML_DOWN_EXPOSITION


def test_collector_with_gpu_reading_disabled_exposes_nothing() -> None:
    # As a disabled collector of the node or blackbox exporters: no nvml_up 0 either.
    assert _scrape(DisabledGpuReader())[1] == ""


def test_registering_collector_does_not_read() -> None:
    reader = ScriptedReader([GpuSnapshot(up=False, devices=())])
    registry = CollectorRegistry()

    registry.register(GpuCollector(reader))

    assert reader.reads == 0
    assert GpuCollector(reader).describe() == []


# --- ProbeGpuSampler --------------------------------------------------------------------------


class ScriptedReader:
    """Returns the scripted snapshots in order, then ``tail`` forever; counts its reads."""

    def __init__(self, script: Sequence[GpuSnapshot], tail: GpuSnapshot | None = None) -> None:
        self._script = list(script)
        self._tail = tail if tail is not None else script[-1]
        self._changed = threading.Condition()
        self.reads = 0

    def read(self) -> GpuSnapshot:
        with self._changed:
            scripted = self.reads < len(self._script)
            snapshot = self._script[self.reads] if scripted else self._tail
            self.reads += 1
            self._changed.notify_all()
            return snapshot

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        return ()

    def close(self) -> None:
        pass

    def wait_for_reads(self, count: int, timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.reads >= count, timeout)


def _gpu(index: int, utilization: float | None, memory: int | None) -> GpuDevice:
    return GpuDevice(
        index=index,
        uuid=f"GPU-{index}",
        name="Fake",
        driver_version="1",
        memory_used_bytes=memory,
        memory_total_bytes=100,
        utilization_ratio=utilization,
        memory_utilization_ratio=None,
        temperature_celsius=None,
        power_watts=None,
        processes=(),
    )


def _snap(*devices: GpuDevice, up: bool = True) -> GpuSnapshot:
    return GpuSnapshot(up=up, devices=devices)


def test_sampler_samples_on_entry_and_exit() -> None:
    reader = ScriptedReader([_snap(_gpu(0, 0.2, 10), _gpu(1, 0.0, 7)), _snap(_gpu(0, 0.6, 5))])

    with ProbeGpuSampler(reader, interval=3600) as sampler:
        assert reader.reads == 1  # the first sample is taken before the probe starts

    assert reader.reads == 2
    assert sampler.usage() == (
        ProbeGpuUsage(index=0, uuid="GPU-0", mean_utilization_ratio=0.4, peak_memory_used_bytes=10),
        ProbeGpuUsage(index=1, uuid="GPU-1", mean_utilization_ratio=0.0, peak_memory_used_bytes=7),
    )


def test_sampler_keeps_sampling_in_background() -> None:
    # The tail equals the mean of the scripted part, so the result is exact whatever the
    # number of extra samples the thread manages to take before the sampler is stopped.
    script = [_snap(_gpu(0, 0.2, 10)), _snap(_gpu(0, 0.6, 90))]
    reader = ScriptedReader(script, tail=_snap(_gpu(0, 0.4, 50)))

    with ProbeGpuSampler(reader, interval=0.001) as sampler:
        assert reader.wait_for_reads(6), "background thread did not sample"

    (usage,) = sampler.usage()
    assert usage.mean_utilization_ratio == pytest.approx(0.4)
    assert usage.peak_memory_used_bytes == 90
    assert reader.reads >= 7  # six, plus the one on exit


def test_sampler_skips_down_snapshots_and_missing_readings() -> None:
    script = [
        _snap(_gpu(0, 0.5, None)),
        _snap(up=False),
        _snap(_gpu(0, None, 40), _gpu(1, None, None)),
    ]
    reader = ScriptedReader(script, tail=_snap(up=False))

    with ProbeGpuSampler(reader, interval=0.001) as sampler:
        assert reader.wait_for_reads(len(script)), "background thread did not sample"

    assert sampler.usage() == (
        ProbeGpuUsage(index=0, uuid="GPU-0", mean_utilization_ratio=0.5, peak_memory_used_bytes=40),
        ProbeGpuUsage(
            index=1, uuid="GPU-1", mean_utilization_ratio=None, peak_memory_used_bytes=None
        ),
    )


def test_sampler_with_nvml_down_reports_nothing() -> None:
    with ProbeGpuSampler(DisabledGpuReader(), interval=3600) as sampler:
        pass

    assert sampler.usage() == ()


class RaisingReader:
    def read(self) -> GpuSnapshot:
        raise RuntimeError("broken reader")

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        raise RuntimeError("broken reader")

    def close(self) -> None:
        pass


def test_sampler_survives_a_reader_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    with ProbeGpuSampler(RaisingReader(), interval=3600) as sampler:
        pass

    assert sampler.usage() == ()
    assert len(_warnings(caplog)) == 4  # two samples and two energy readings


# --- real NVML --------------------------------------------------------------------------------


@pytest.mark.gpu
def test_real_nvml_reports_sane_shapes() -> None:
    try:
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        pytest.skip("nvidia-ml-py is not installed")
    if hasattr(pynvml, "configure"):
        pytest.skip("the pynvml stand-in is on sys.path, not the real bindings")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA driver: {exc}")
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    if count == 0:
        pytest.skip("no NVIDIA GPU present")

    reader = NvmlReader()
    try:
        snapshot = reader.read()
    finally:
        reader.close()

    assert snapshot.up and len(snapshot.devices) == count
    for device in snapshot.devices:
        assert device.uuid and device.name and device.driver_version
        if device.memory_used_bytes is not None and device.memory_total_bytes is not None:
            assert 0 <= device.memory_used_bytes <= device.memory_total_bytes
        for ratio in (device.utilization_ratio, device.memory_utilization_ratio):
            assert ratio is None or 0.0 <= ratio <= 1.0
