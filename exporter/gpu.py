"""GPU state from NVML, as frozen snapshots, plus a sampler that watches the GPUs during a probe.

``NvmlReader`` owns the NVML session (init, shutdown, retry) and turns every failure into a
value: NVML missing means ``GpuSnapshot(up=False)``; an unreadable or lost GPU is left out of
``devices``; a field the GPU does not support is ``None``. ``read()`` never raises, so neither
the scrape path nor a probe can be broken by the GPU side.

This module knows nothing of Prometheus, Ollama or HTTP.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# NVML return code for a GPU that fell off the bus; the same in every nvidia-ml-py version.
_NVML_ERROR_GPU_IS_LOST = 15
# Older bindings hand back this sentinel instead of None when a process's memory is unknown.
_NOT_AVAILABLE_ULONGLONG = 2**64 - 1


@dataclass(frozen=True)
class GpuProcess:
    """A process with a context on a GPU; ``name`` is "" when it could not be found out."""

    pid: int
    name: str
    used_memory_bytes: int | None


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as read at one instant; ``None`` marks a reading the GPU could not give."""

    index: int
    uuid: str
    name: str
    driver_version: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    utilization_ratio: float | None
    # Fraction of time the memory controller was busy, NOT memory used / total.
    memory_utilization_ratio: float | None
    temperature_celsius: float | None
    power_watts: float | None
    processes: tuple[GpuProcess, ...]


@dataclass(frozen=True)
class GpuSnapshot:
    """All GPUs at one instant; ``up`` is False when NVML itself is unavailable.

    ``enabled`` is False only when GPU reading is switched off (``gpu.enabled: false``): then
    there is nothing to report at all, not even that NVML is down.
    """

    up: bool
    devices: tuple[GpuDevice, ...]
    enabled: bool = True


_DOWN = GpuSnapshot(up=False, devices=())
_DISABLED = GpuSnapshot(up=False, devices=(), enabled=False)


@dataclass(frozen=True)
class GpuEnergy:
    """One GPU's total energy counter (NVML: millijoules since the driver loaded)."""

    index: int
    uuid: str
    millijoules: int


class GpuReader(Protocol):
    """Anything that can report GPU state; implementations must not raise from ``read``."""

    def read(self) -> GpuSnapshot: ...

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        """The energy counter of every GPU that has one; () when none has (never raises)."""
        ...

    def close(self) -> None: ...


class DisabledGpuReader:
    """The reader used when GPU collection is switched off: NVML is never touched."""

    def read(self) -> GpuSnapshot:
        """Report GPU reading as switched off."""
        return _DISABLED

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        """No GPU is read, so no energy either."""
        return ()

    def close(self) -> None:
        """Nothing to release."""


def _text(value: object) -> str:
    """Return NVML text as str: nvidia-ml-py returned bytes before 11.515 and str since."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _known_bytes(value: int | None) -> int | None:
    return None if value is None or value >= _NOT_AVAILABLE_ULONGLONG else int(value)


def _max_known(a: int | None, b: int | None) -> int | None:
    known = [v for v in (a, b) if v is not None]
    return max(known) if known else None


def _is_gpu_lost(exc: BaseException) -> bool:
    return getattr(exc, "value", None) == _NVML_ERROR_GPU_IS_LOST


class NvmlReader:
    """Reads every GPU through NVML; thread-safe, and ``read()`` never raises.

    With ``nvml=None`` the ``pynvml`` module is imported on the first read, so merely building
    the reader costs nothing on a machine without NVIDIA drivers. When the import or
    ``nvmlInit`` fails, reads report ``up=False``; one warning is logged, and init is retried at
    most every ``retry_interval`` seconds. After ``close()`` the reader stays down.
    ``unavailable_level`` is the level of that warning when NVML cannot be initialised at all
    (a one-shot run under ``gpu.enabled: auto`` lowers it: no NVML there is a normal answer).
    """

    def __init__(
        self,
        nvml: ModuleType | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_interval: float = 60.0,
        proc_root: Path = Path("/proc"),
        unavailable_level: int = logging.WARNING,
    ) -> None:
        self._injected = nvml
        self._clock = clock
        self._retry_interval = retry_interval
        self._proc_root = proc_root
        self._unavailable_level = unavailable_level
        self._lock = threading.Lock()
        self._nvml: ModuleType | None = None  # set only while an nvmlInit is in force
        self._driver_version = ""
        self._next_attempt = -math.inf
        self._down_logged = False
        self._dropped_logged: set[int] = set()  # device indices whose drop was already logged
        self._closed = False

    def read(self) -> GpuSnapshot:
        """Take a snapshot of all GPUs."""
        with self._lock:
            if self._closed:
                return _DOWN
            nvml = self._nvml or self._try_init()
            if nvml is None:
                return _DOWN
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except Exception as exc:  # the driver went away under us: start over after a pause
                self._log_down("NVML stopped answering", exc)
                self._shutdown()
                self._next_attempt = self._clock() + self._retry_interval
                return _DOWN
            devices = (self._read_device(nvml, i) for i in range(count))
            return GpuSnapshot(up=True, devices=tuple(d for d in devices if d is not None))

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        """Every GPU's total energy counter, read apart from ``read()`` so that a probe reads
        it exactly at its start and end. A GPU (or a binding) without the counter is left out:
        its energy is unknown, and is never estimated from power samples."""
        with self._lock:
            if self._closed:
                return ()
            nvml = self._nvml or self._try_init()
            # nvidia-ml-py has had it since 2012; a stripped-down binding may lack it.
            total = getattr(nvml, "nvmlDeviceGetTotalEnergyConsumption", None)
            if nvml is None or total is None:
                return ()
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except Exception:  # read() notices and logs a driver that went away
                return ()
            readings = (self._energy(nvml, total, i) for i in range(count))
            return tuple(r for r in readings if r is not None)

    @staticmethod
    def _energy(nvml: Any, total: Callable[[object], int], index: int) -> GpuEnergy | None:
        try:  # NotSupported (GPUs before Volta), a lost GPU, anything: no reading for this GPU
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            return GpuEnergy(index, _text(nvml.nvmlDeviceGetUUID(handle)), int(total(handle)))
        except Exception:
            return None

    def close(self) -> None:
        """Shut NVML down if it was initialised; later reads report it as down."""
        with self._lock:
            self._closed = True
            self._shutdown()

    def _try_init(self) -> ModuleType | None:
        now = self._clock()
        if now < self._next_attempt:
            return None
        self._next_attempt = now + self._retry_interval
        try:
            nvml = self._injected or importlib.import_module("pynvml")
            nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError, OSError: all mean "no GPU data"
            self._log_down("NVML unavailable, GPU metrics off", exc, self._unavailable_level)
            return None
        self._nvml = nvml
        try:  # read once: the driver cannot change without NVML being initialised again
            self._driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:  # only a label value; the GPUs are still worth reading
            self._driver_version = ""
        self._down_logged = False
        log.info("NVML initialised, driver version %s", self._driver_version or "unknown")
        return nvml

    def _log_down(self, what: str, exc: BaseException, first: int = logging.WARNING) -> None:
        # One warning per outage: a host without GPUs would otherwise log every minute forever.
        level = logging.DEBUG if self._down_logged else first
        log.log(level, "%s (retry every %.0f s): %s", what, self._retry_interval, exc)
        self._down_logged = True

    def _shutdown(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except Exception as exc:  # nothing left to release if the library is already gone
            log.debug("nvmlShutdown failed: %s", exc)

    @staticmethod
    def _optional(nvml: Any, fn: Callable[..., T], *args: object) -> T | None:
        """Call one NVML getter; an NVML error means "no value" unless the whole GPU is lost."""
        try:
            return fn(*args)
        except nvml.NVMLError as exc:
            if _is_gpu_lost(exc):
                raise
            return None

    def _read_device(self, nvml: Any, index: int) -> GpuDevice | None:
        try:
            device = self._device(nvml, index)
        except Exception as exc:  # lost GPU, or no handle/uuid/name: drop this GPU alone
            if index not in self._dropped_logged:
                log.warning("GPU %d left out of GPU metrics: %s", index, exc)
                self._dropped_logged.add(index)
            return None
        self._dropped_logged.discard(index)  # log again should it fail again later
        return device

    def _device(self, nvml: Any, index: int) -> GpuDevice:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = self._optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        rates = self._optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        temp = self._optional(
            nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
        )
        milliwatts = self._optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        return GpuDevice(
            index=index,
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            name=_text(nvml.nvmlDeviceGetName(handle)),
            driver_version=self._driver_version,
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_total_bytes=None if memory is None else int(memory.total),
            utilization_ratio=None if rates is None else rates.gpu / 100,
            memory_utilization_ratio=None if rates is None else rates.memory / 100,
            temperature_celsius=None if temp is None else float(temp),
            power_watts=None if milliwatts is None else milliwatts / 1000,
            processes=self._processes(nvml, handle),
        )

    def _processes(self, nvml: Any, handle: object) -> tuple[GpuProcess, ...]:
        memory_by_pid: dict[int, int | None] = {}
        for list_fn in (
            nvml.nvmlDeviceGetComputeRunningProcesses,
            nvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            for info in self._optional(nvml, list_fn, handle) or ():
                # usedGpuMemory is per process, not per context: a process holding both a
                # compute and a graphics context would be counted twice if summed, so take max.
                used = _known_bytes(info.usedGpuMemory)
                memory_by_pid[info.pid] = _max_known(memory_by_pid.get(info.pid), used)
        return tuple(
            GpuProcess(pid=int(pid), name=self._process_name(nvml, pid), used_memory_bytes=used)
            for pid, used in sorted(memory_by_pid.items())
        )

    def _process_name(self, nvml: Any, pid: int) -> str:
        """Name per NVML, else the kernel's ``comm``, else "" (never drop the process).

        The row is kept with an empty name rather than dropped: the lookup also fails for live
        processes in another PID namespace (an exporter in a container), and dropping those
        would hide real GPU memory users. A process that really exited is gone by next scrape.
        """
        try:
            name = _text(nvml.nvmlSystemGetProcessName(pid))
        except (nvml.NVMLError, UnicodeError):  # old bindings decode non-UTF-8 paths strictly
            name = ""
        if name:
            return name
        try:
            return (self._proc_root / str(pid) / "comm").read_text(errors="replace").strip()
        except OSError:
            return ""


@dataclass(frozen=True)
class ProbeGpuUsage:
    """What one GPU did while a probe ran, over all samples in which it was seen."""

    index: int
    uuid: str
    mean_utilization_ratio: float | None
    peak_memory_used_bytes: int | None
    # The GPU's energy counter at the probe's end minus at its start: the whole device's
    # energy, whoever else used it meanwhile. None when the GPU has no counter.
    energy_joules: float | None = None


class _Accumulator:
    def __init__(self, index: int) -> None:
        self.index = index
        self.utilization_sum = 0.0
        self.utilization_samples = 0
        self.peak_memory: int | None = None

    def add(self, device: GpuDevice) -> None:
        self.index = device.index
        if device.utilization_ratio is not None:
            self.utilization_sum += device.utilization_ratio
            self.utilization_samples += 1
        self.peak_memory = _max_known(self.peak_memory, device.memory_used_bytes)

    def usage(self, uuid: str, energy_joules: float | None) -> ProbeGpuUsage:
        n = self.utilization_samples
        mean = self.utilization_sum / n if n else None
        return ProbeGpuUsage(self.index, uuid, mean, self.peak_memory, energy_joules)


class ProbeGpuSampler:
    """Samples a reader in a background thread while one probe runs.

    Use as a context manager around the probe: a sample is taken on entry, every ``interval``
    seconds in between and once more on exit, so even a probe shorter than ``interval`` gets two.
    Running sums are kept instead of snapshots, so memory use does not grow with probe length.
    The energy counters are read twice, first thing on entry and last thing on exit.
    """

    def __init__(self, reader: GpuReader, interval: float = 0.5) -> None:
        self._reader = reader
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._by_uuid: dict[str, _Accumulator] = {}
        self._energy_start: dict[str, GpuEnergy] = {}
        self._energy_end: dict[str, GpuEnergy] = {}

    def __enter__(self) -> ProbeGpuSampler:
        self._energy_start = self._read_energy()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="probe-gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._energy_end = self._read_energy()

    def usage(self) -> tuple[ProbeGpuUsage, ...]:
        """Per GPU, ordered by index: mean utilisation and peak memory used over the samples,
        and the energy used between entry and exit."""
        with self._lock:
            accumulators = dict(self._by_uuid)
        for uuid, end in self._energy_end.items():
            if uuid in self._energy_start:
                accumulators.setdefault(uuid, _Accumulator(end.index))
        usages = [acc.usage(uuid, self._energy_joules(uuid)) for uuid, acc in accumulators.items()]
        return tuple(sorted(usages, key=lambda u: (u.index, u.uuid)))

    def _energy_joules(self, uuid: str) -> float | None:
        start, end = self._energy_start.get(uuid), self._energy_end.get(uuid)
        # A counter that went backwards was reset (the driver reloaded): the energy is unknown.
        if start is None or end is None or end.millijoules < start.millijoules:
            return None
        return (end.millijoules - start.millijoules) / 1000

    def _read_energy(self) -> dict[str, GpuEnergy]:
        try:
            readings = self._reader.read_energy()
        except Exception:  # a reader breaking its no-raise promise must not kill the probe
            log.exception("GPU energy reading failed")
            return {}
        return {reading.uuid: reading for reading in readings}

    def _run(self) -> None:
        # Event.wait rather than sleep, so __exit__ wakes the thread at once.
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        try:
            snapshot = self._reader.read()
        except Exception:  # a reader breaking its no-raise promise must not kill the probe
            log.exception("GPU sample failed")
            return
        if not snapshot.up:
            return
        with self._lock:
            for device in snapshot.devices:
                self._by_uuid.setdefault(device.uuid, _Accumulator(device.index)).add(device)
