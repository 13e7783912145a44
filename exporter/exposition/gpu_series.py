"""Prometheus collector for the ``nvml_*`` series, read from a GpuReader at every scrape.

NVML reads take milliseconds, so unlike the Ollama probes they are done synchronously when
Prometheus scrapes; fresh metric families each time mean a GPU that disappears simply stops
being exposed, with no stale series to purge. Example exposition (abridged)::

    nvml_up 1.0
    nvml_gpu_info{driver_version="550.54.15",gpu="0",name="NVIDIA H100",uuid="GPU-8f…"} 1.0
    nvml_gpu_memory_used_bytes{gpu="0",uuid="GPU-8f…"} 6.442450944e+09
    nvml_gpu_process_memory_used_bytes{gpu="0",pid="4242",process="ollama",uuid="GPU-8f…"} 5.3e+09

When NVML is unavailable the only series is ``nvml_up 0``. With GPU reading switched off
(``gpu.enabled: false``) there is no ``nvml_*`` series at all, as a disabled collector of the
node or blackbox exporters exposes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.gpu import GpuDevice, GpuReader

_DEVICE_LABELS = ("gpu", "uuid")

_UP_HELP = (
    "1 if NVML (the NVIDIA Management Library) could be initialised and read at this scrape, "
    "else 0; while 0 no other nvml_* series are exposed."
)
_INFO_HELP = (
    "GPU identity as labels, always 1: gpu is the NVML device index, uuid the stable GPU UUID, "
    "name the product name, driver_version the NVIDIA driver version."
)
_PROCESS_HELP = (
    "Device memory in bytes used by each process that has a compute or graphics context on "
    "this GPU at scrape time; process is the name NVML reports (else the kernel's comm, else "
    "empty). A process on several GPUs has one series per GPU."
)

# (name, HELP, reading) for the per-GPU gauges; a None reading leaves that GPU out.
_DEVICE_GAUGES: Sequence[tuple[str, str, Callable[[GpuDevice], float | None]]] = (
    (
        "nvml_gpu_memory_used_bytes",
        "Device (framebuffer) memory in use on the GPU, in bytes, per NVML at scrape time.",
        lambda d: d.memory_used_bytes,
    ),
    (
        "nvml_gpu_memory_total_bytes",
        "Total device (framebuffer) memory of the GPU, in bytes, per NVML.",
        lambda d: d.memory_total_bytes,
    ),
    (
        "nvml_gpu_utilization_ratio",
        "Fraction of time (0-1) one or more kernels were executing on the GPU over NVML's last "
        "sample period (between 1/6 s and 1 s depending on the product).",
        lambda d: d.utilization_ratio,
    ),
    (
        "nvml_gpu_memory_utilization_ratio",
        "Fraction of time (0-1) the memory controller was busy (device memory being read or "
        "written) over NVML's last sample period; this is not memory used/total, see "
        "nvml_gpu_memory_used_bytes and nvml_gpu_memory_total_bytes for that.",
        lambda d: d.memory_utilization_ratio,
    ),
    (
        "nvml_gpu_temperature_celsius",
        "GPU core temperature in degrees Celsius, per NVML at scrape time.",
        lambda d: d.temperature_celsius,
    ),
    (
        "nvml_gpu_power_watts",
        "Power drawn by the GPU board (GPU and its memory), in watts, per NVML at scrape time "
        "(NVML reports milliwatts).",
        lambda d: d.power_watts,
    ),
)


class GpuCollector(Collector):
    """Yields the nvml_* gauges from a fresh ``reader.read()`` on every scrape."""

    def __init__(self, reader: GpuReader) -> None:
        self._reader = reader

    def describe(self) -> list[Metric]:
        """Describe nothing, so that registering the collector does not read the GPUs."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Read the GPUs once and yield every nvml_* family that has at least one sample."""
        snapshot = self._reader.read()
        if not snapshot.enabled:
            return
        yield GaugeMetricFamily("nvml_up", _UP_HELP, value=1.0 if snapshot.up else 0.0)
        if not snapshot.up:
            return
        families = [_info_family(snapshot.devices)]
        families += [_gauge_family(*spec, snapshot.devices) for spec in _DEVICE_GAUGES]
        families.append(_process_family(snapshot.devices))
        # An empty family would still print HELP/TYPE lines; leave those out with their samples.
        yield from (family for family in families if family.samples)


def _device_labels(device: GpuDevice) -> list[str]:
    return [str(device.index), device.uuid]


def _info_family(devices: Iterable[GpuDevice]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "nvml_gpu_info", _INFO_HELP, labels=[*_DEVICE_LABELS, "name", "driver_version"]
    )
    for device in devices:
        family.add_metric([*_device_labels(device), device.name, device.driver_version], 1.0)
    return family


def _gauge_family(
    name: str,
    documentation: str,
    reading: Callable[[GpuDevice], float | None],
    devices: Iterable[GpuDevice],
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=_DEVICE_LABELS)
    for device in devices:
        value = reading(device)
        if value is not None:
            family.add_metric(_device_labels(device), float(value))
    return family


def _process_family(devices: Iterable[GpuDevice]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "nvml_gpu_process_memory_used_bytes",
        _PROCESS_HELP,
        labels=[*_DEVICE_LABELS, "pid", "process"],
    )
    for device in devices:
        for process in device.processes:
            if process.used_memory_bytes is not None:
                labels = [*_device_labels(device), str(process.pid), process.name]
                family.add_metric(labels, float(process.used_memory_bytes))
    return family
