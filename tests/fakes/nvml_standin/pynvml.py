"""A stand-in for the ``pynvml`` module (package nvidia-ml-py), for machines without a GPU.

Put this folder first on ``sys.path``/``PYTHONPATH`` and ``import pynvml`` gets this module. It
implements only the subset of the API that ``exporter.gpu.NvmlReader`` calls, with the real
module's names, constants, argument order and exception classes.

State comes from, in order:

* ``configure(...)`` called in-process (tests);
* the ``NVML_STANDIN_CONFIG`` environment variable (JSON, read at import and by ``reset()``),
  for subprocesses such as end-to-end tests, for example::

      {"driver_version": "550.00", "init_error": null, "lost": [1],
       "field_errors": {"0": {"nvmlDeviceGetPowerUsage": "NotSupported"}},
       "devices": [{"uuid": "GPU-a", "memory_used": 1024, "utilization": [10, 90],
                    "processes": [{"pid": "self", "used_memory": 512, "name": "ollama"}]}]}

* otherwise two deterministic fake GPUs (see ``default_devices()``).

Utilisation readings step through each device's ``utilization`` list, one step per
``nvmlDeviceGetUtilizationRates`` call, so per-probe means are not trivially constant.

The energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules) starts at a device's
``energy_mj`` and grows after every read by the next of its ``energy_increments_mj`` (cycled),
so the difference of two consecutive reads is exactly one increment. ``energy_mj: null`` makes
the device one without the counter (NVMLError_NotSupported, as GPUs before Volta).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

GIB = 1024**3

NVML_SUCCESS = 0
NVML_TEMPERATURE_GPU = 0
NVML_VALUE_NOT_AVAILABLE = -1
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Base of all NVML errors; ``value`` is the NVML return code, as in the real module."""

    def __init__(self, value: int = NVML_ERROR_UNKNOWN) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"{type(self).__name__} (NVML code {self.value})"


def _error_class(suffix: str, code: int) -> type[NVMLError]:
    def init(self: NVMLError, *_args: object) -> None:
        NVMLError.__init__(self, code)

    return type(f"NVMLError_{suffix}", (NVMLError,), {"__init__": init})


NVMLError_Uninitialized = _error_class("Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_NotSupported = _error_class("NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _error_class("NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_DriverNotLoaded = _error_class("DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class("FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GPUIsLost = _error_class("GPUIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _error_class("Unknown", NVML_ERROR_UNKNOWN)

ErrorSpec = str | type[NVMLError]


@dataclass
class StandinProcess:
    """One process on a fake GPU; ``name=None`` makes the name lookup fail (process exited)."""

    pid: int
    used_memory: int | None
    name: str | None = "standin-process"
    graphics: bool = False


@dataclass
class StandinDevice:
    """One fake GPU. Percent lists are stepped through, one step per utilisation read."""

    uuid: str
    name: str = "Standin GPU"
    memory_total: int = 24 * GIB
    memory_used: int = 0
    utilization: Sequence[int] = (0,)
    memory_utilization: Sequence[int] = (0,)
    temperature: int = 40
    power_mw: int = 100_000
    processes: Sequence[StandinProcess] = ()
    energy_mj: int | None = 1_000_000  # None: no energy counter (NotSupported)
    energy_increments_mj: Sequence[int] = (0,)
    reads: int = field(default=0, repr=False)
    energy_reads: int = field(default=0, repr=False)


@dataclass
class _Config:
    devices: list[StandinDevice]
    driver_version: str = "550.00.standin"
    init_error: ErrorSpec | None = None
    field_errors: dict[int, dict[str, ErrorSpec]] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)
    bytes_strings: bool = False  # old nvidia-ml-py versions returned bytes, not str


@dataclass
class _Runtime:
    refcount: int = 0
    calls: dict[str, int] = field(default_factory=dict)


_lock = threading.RLock()
_config = _Config(devices=[])
_runtime = _Runtime()


def _own_process_name() -> str:
    try:
        with open(f"/proc/{os.getpid()}/comm", encoding="utf-8") as comm:
            return comm.read().strip()
    except OSError:
        return os.path.basename(sys.executable) or "python"


def default_devices() -> list[StandinDevice]:
    """Two fake 24 GiB GPUs; GPU 0 runs this process, and both have changing utilisation."""
    me = StandinProcess(pid=os.getpid(), used_memory=512 * 1024**2, name=_own_process_name())
    return [
        StandinDevice(
            uuid="GPU-00000000-0000-0000-0000-000000000000",
            memory_used=6 * GIB,
            utilization=(20, 60, 100, 60),
            memory_utilization=(10, 30, 50, 30),
            temperature=55,
            power_mw=150_000,
            processes=(me,),
            energy_mj=5_000_000,
            energy_increments_mj=(2_500,),
        ),
        StandinDevice(
            uuid="GPU-00000000-0000-0000-0000-000000000001",
            memory_used=1 * GIB,
            utilization=(0, 10),
            memory_utilization=(0, 4),
            temperature=38,
            power_mw=60_000,
            energy_mj=3_000_000,
            energy_increments_mj=(1_250,),
        ),
    ]


def _device_from_mapping(raw: Mapping[str, Any]) -> StandinDevice:
    values = dict(raw)
    procs = []
    for proc in values.pop("processes", ()):
        proc = dict(proc)
        if proc.get("pid") == "self":  # lets a JSON config name the process that reads it
            proc["pid"] = os.getpid()
        procs.append(StandinProcess(**proc))
    return StandinDevice(**values, processes=tuple(procs))


def configure(
    devices: Iterable[StandinDevice | Mapping[str, Any]] | None = None,
    *,
    driver_version: str = "550.00.standin",
    init_error: ErrorSpec | None = None,
    field_errors: Mapping[int | str, Mapping[str, ErrorSpec]] | None = None,
    lost: Iterable[int] = (),
    bytes_strings: bool = False,
) -> None:
    """Replace the fake hardware; keeps init state and call counts (see ``reset``).

    ``field_errors`` maps a device index to {nvml function name: error}, the error given as a
    class or its suffix ("NotSupported"). ``lost`` devices raise NVMLError_GPUIsLost on every
    query but still hand out a handle, as a GPU that fell off the bus does.
    """
    global _config
    with _lock:
        _config = _Config(
            devices=[
                d if isinstance(d, StandinDevice) else _device_from_mapping(d)
                for d in (default_devices() if devices is None else devices)
            ],
            driver_version=driver_version,
            init_error=init_error,
            field_errors={int(k): dict(v) for k, v in (field_errors or {}).items()},
            lost=set(lost),
            bytes_strings=bytes_strings,
        )


def reset() -> None:
    """Back to the import-time state: env config or default GPUs, uninitialised, no calls."""
    global _runtime
    with _lock:
        _runtime = _Runtime()
        raw = os.environ.get("NVML_STANDIN_CONFIG")
        if raw:
            configure(**json.loads(raw))
        else:
            configure()


def call_count(function_name: str) -> int:
    """How often an API function was called since the last ``reset()``."""
    with _lock:
        return _runtime.calls.get(function_name, 0)


def is_initialised() -> bool:
    with _lock:
        return _runtime.refcount > 0


def _error(spec: ErrorSpec) -> NVMLError:
    cls = spec if isinstance(spec, type) else globals()[f"NVMLError_{spec}"]
    return cls()


def _enter(function_name: str, index: int | None = None, *, needs_init: bool = True) -> None:
    """Count the call and raise whatever the configuration says this call should raise."""
    _runtime.calls[function_name] = _runtime.calls.get(function_name, 0) + 1
    if needs_init and _runtime.refcount == 0:
        raise NVMLError_Uninitialized()
    if index is None:
        return
    spec = _config.field_errors.get(index, {}).get(function_name)
    if spec is not None:
        raise _error(spec)
    if index in _config.lost and function_name != "nvmlDeviceGetHandleByIndex":
        raise NVMLError_GPUIsLost()


def _text(value: str) -> str | bytes:
    return value.encode() if _config.bytes_strings else value


@dataclass(frozen=True)
class _Handle:
    index: int


def _device(handle: _Handle) -> StandinDevice:
    return _config.devices[handle.index]


def nvmlInit() -> None:
    with _lock:
        _enter("nvmlInit", needs_init=False)
        if _config.init_error is not None:
            raise _error(_config.init_error)
        _runtime.refcount += 1


def nvmlShutdown() -> None:
    with _lock:
        _enter("nvmlShutdown")
        _runtime.refcount -= 1


def nvmlSystemGetDriverVersion() -> str | bytes:
    with _lock:
        _enter("nvmlSystemGetDriverVersion")
        return _text(_config.driver_version)


def nvmlDeviceGetCount() -> int:
    with _lock:
        _enter("nvmlDeviceGetCount")
        return len(_config.devices)


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    with _lock:
        _enter("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(_config.devices):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return _Handle(index)


def nvmlDeviceGetUUID(handle: _Handle) -> str | bytes:
    with _lock:
        _enter("nvmlDeviceGetUUID", handle.index)
        return _text(_device(handle).uuid)


def nvmlDeviceGetName(handle: _Handle) -> str | bytes:
    with _lock:
        _enter("nvmlDeviceGetName", handle.index)
        return _text(_device(handle).name)


def nvmlDeviceGetMemoryInfo(handle: _Handle, version: int | None = None) -> SimpleNamespace:
    with _lock:
        _enter("nvmlDeviceGetMemoryInfo", handle.index)
        dev = _device(handle)
        free = dev.memory_total - dev.memory_used
        return SimpleNamespace(total=dev.memory_total, used=dev.memory_used, free=free)


def nvmlDeviceGetUtilizationRates(handle: _Handle) -> SimpleNamespace:
    with _lock:
        _enter("nvmlDeviceGetUtilizationRates", handle.index)
        dev = _device(handle)
        step, dev.reads = dev.reads, dev.reads + 1
        gpu = dev.utilization[step % len(dev.utilization)]
        memory = dev.memory_utilization[step % len(dev.memory_utilization)]
        return SimpleNamespace(gpu=gpu, memory=memory)


def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
    with _lock:
        _enter("nvmlDeviceGetTemperature", handle.index)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_NotSupported()
        return _device(handle).temperature


def nvmlDeviceGetPowerUsage(handle: _Handle) -> int:
    with _lock:
        _enter("nvmlDeviceGetPowerUsage", handle.index)
        return _device(handle).power_mw


def nvmlDeviceGetTotalEnergyConsumption(handle: _Handle) -> int:
    with _lock:
        _enter("nvmlDeviceGetTotalEnergyConsumption", handle.index)
        dev = _device(handle)
        if dev.energy_mj is None:
            raise NVMLError_NotSupported()
        value = dev.energy_mj
        increments = dev.energy_increments_mj
        dev.energy_mj += increments[dev.energy_reads % len(increments)]
        dev.energy_reads += 1
        return value


def _running(handle: _Handle, function_name: str, graphics: bool) -> list[SimpleNamespace]:
    with _lock:
        _enter(function_name, handle.index)
        return [
            SimpleNamespace(
                pid=p.pid, usedGpuMemory=p.used_memory, gpuInstanceId=0, computeInstanceId=0
            )
            for p in _device(handle).processes
            if p.graphics == graphics
        ]


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[SimpleNamespace]:
    return _running(handle, "nvmlDeviceGetComputeRunningProcesses", graphics=False)


def nvmlDeviceGetGraphicsRunningProcesses(handle: _Handle) -> list[SimpleNamespace]:
    return _running(handle, "nvmlDeviceGetGraphicsRunningProcesses", graphics=True)


def nvmlSystemGetProcessName(pid: int) -> str | bytes:
    with _lock:
        _enter("nvmlSystemGetProcessName")
        for dev in _config.devices:
            for proc in dev.processes:
                if proc.pid == pid and proc.name is not None:
                    return _text(proc.name)
        raise NVMLError_NotFound()


reset()
