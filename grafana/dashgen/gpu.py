"""Dashboard 3: the GPUs, the models resident on them, and what each model's probes used.

`nvml_*` series are read by the exporter from NVML on its own host at scrape time; they carry
no `target` label. `ollama_*` series are per target and filtered by `$target`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard as dashboard_models

from . import promql as q
from .layout import new_dashboard
from .panels import (
    BELOW_80_PERCENT,
    BELOW_95_PERCENT,
    Query,
    Size,
    info_table,
    stat_panel,
    timeseries_panel,
)
from .variables import target_variable

UID = "ollama-gpu"
GPU_LEGEND = "GPU {{gpu}}"
TOTAL_MEMORY = Query("sum(nvml_gpu_memory_total_bytes)", "device total (all GPUs)")


def _as_reference_line(panel: timeseries.Panel, ref_id: str) -> timeseries.Panel:
    """Draw query `ref_id` as a dashed, unfilled, unstacked line (a capacity, not a share)."""
    return panel.override_by_query(
        ref_id,
        [
            dashboard_models.DynamicConfigValue(
                id_val="custom.stacking", value={"mode": "none", "group": ref_id}
            ),
            dashboard_models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            dashboard_models.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            ),
        ],
    )


def _status_row(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("Devices"))
    dashboard.with_panel(
        stat_panel(
            "NVML",
            "nvml_up: 1 when the exporter could initialise NVML and read the GPUs at the last "
            "scrape; 0 means no NVIDIA driver or no GPU (every other nvml_ series is then "
            "absent).",
            "none",
            [Query("nvml_up", "{{instance}}")],
            Size(4, 5),
            steps=((None, "red"), (1, "green")),
        ).mappings(
            [
                dashboard_models.ValueMap(
                    options={
                        "0": dashboard_models.ValueMappingResult(text="down", color="red"),
                        "1": dashboard_models.ValueMappingResult(text="up", color="green"),
                    }
                )
            ]
        )
    )
    dashboard.with_panel(
        stat_panel(
            "Utilisation now",
            "nvml_gpu_utilization_ratio per GPU: share of the last sample period in which a "
            "kernel ran. Red from 80 %, the level of the GPUUtilizationKPIBreached alert "
            "(which needs it sustained).",
            "percentunit",
            [Query("nvml_gpu_utilization_ratio", GPU_LEGEND)],
            Size(6, 5),
            steps=BELOW_80_PERCENT,
            instant=False,
        )
    )
    dashboard.with_panel(
        stat_panel(
            "Memory used",
            "nvml_gpu_memory_used_bytes / nvml_gpu_memory_total_bytes per GPU. Red from 95 %, "
            "the level of the GPUMemoryNearlyFull alert.",
            "percentunit",
            # `> 0` as in the alert: a device reporting no total yields no sample, not +Inf.
            [Query("nvml_gpu_memory_used_bytes / (nvml_gpu_memory_total_bytes > 0)", GPU_LEGEND)],
            Size(6, 5),
            steps=BELOW_95_PERCENT,
            instant=False,
        )
    )
    dashboard.with_panel(
        info_table(
            "GPUs",
            "nvml_gpu_info: index, UUID, product name and driver version of each GPU.",
            Query("nvml_gpu_info"),
            Size(8, 5),
            hidden=("__name__", "job"),
        )
    )


def _device_panels(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_panel(
        timeseries_panel(
            "Utilisation",
            "nvml_gpu_utilization_ratio per GPU (0-1, NVML's kernel-busy share, read at each "
            "scrape). The dashed line is the 80 % KPI.",
            "percentunit",
            [Query("nvml_gpu_utilization_ratio", GPU_LEGEND)],
            Size(12, 8),
            steps=BELOW_80_PERCENT,
            bounds=(0, 1),
        )
    )
    dashboard.with_panel(
        _as_reference_line(
            timeseries_panel(
                "Memory used / total",
                "nvml_gpu_memory_used_bytes (all processes, as the driver counts it) against "
                "nvml_gpu_memory_total_bytes (dashed) per GPU.",
                "bytes",
                [
                    Query("nvml_gpu_memory_used_bytes", "GPU {{gpu}} used"),
                    Query("nvml_gpu_memory_total_bytes", "GPU {{gpu}} total"),
                ],
                Size(12, 8),
                bounds=(0, None),
            ),
            "B",
        )
    )
    for title, metric, unit, what in (
        ("Temperature", "nvml_gpu_temperature_celsius", "celsius", "core temperature"),
        ("Power", "nvml_gpu_power_watts", "watt", "power draw"),
    ):
        dashboard.with_panel(
            timeseries_panel(
                title,
                f"{metric}: the GPU's {what} as NVML reports it at each scrape.",
                unit,
                [Query(metric, GPU_LEGEND)],
                Size(12, 8),
            )
        )


def _residency_row(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("Models and processes"))
    dashboard.with_panel(
        _as_reference_line(
            timeseries_panel(
                "VRAM per resident model",
                "ollama_model_vram_bytes (size_vram from /api/ps) of each resident model, "
                "stacked, against the total memory of the exporter host's GPUs (dashed). Per "
                "model, not per process: the seed report's single 7,236 MiB figure was the "
                "whole Ollama process. A model leaves the stack when Ollama unloads it.",
                "bytes",
                [
                    Query(
                        f"sum by (target, model) ({q.sel('ollama_model_vram_bytes', [q.TARGET])})",
                        "{{model}} · {{target}}",
                    ),
                    TOTAL_MEMORY,
                ],
                Size(12, 9),
                stacked=True,
                bounds=(0, None),
            ),
            "B",
        )
    )
    dashboard.with_panel(
        timeseries_panel(
            "GPU memory per process",
            "nvml_gpu_process_memory_used_bytes: memory of each process using a GPU now "
            "(Ollama's runners among them), stacked per GPU. Containers often hide other "
            "processes from NVML, so this may be empty where the totals are not.",
            "bytes",
            [
                Query(
                    "nvml_gpu_process_memory_used_bytes",
                    "{{process}} (pid {{pid}}) · GPU {{gpu}}",
                )
            ],
            Size(12, 9),
            stacked=True,
            bounds=(0, None),
        )
    )


def _probe_row(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("Measured during each model's probes"))
    legend = "{{model}} · {{prompt}} · GPU {{gpu}}"
    dashboard.with_panel(
        timeseries_panel(
            "GPU utilisation during probes",
            "ollama_probe_gpu_utilization_ratio: mean NVML utilisation sampled while the "
            "latest probe of each model and prompt ran (targets on this GPU host only). The "
            "dashed line is the 80 % KPI.",
            "percentunit",
            [Query(q.sel("ollama_probe_gpu_utilization_ratio", [q.TARGET]), legend)],
            Size(12, 9),
            steps=BELOW_80_PERCENT,
            bounds=(0, 1),
        )
    )
    dashboard.with_panel(
        _as_reference_line(
            timeseries_panel(
                "Peak GPU memory during probes",
                "ollama_probe_gpu_memory_peak_bytes: the highest memory used on each GPU "
                "while the latest probe of each model and prompt ran (whole GPU, all "
                "processes), against the device total (dashed).",
                "bytes",
                [
                    Query(q.sel("ollama_probe_gpu_memory_peak_bytes", [q.TARGET]), legend),
                    TOTAL_MEMORY,
                ],
                Size(12, 9),
                bounds=(0, None),
            ),
            "B",
        )
    )


def build() -> dashboard_builders.Dashboard:
    """The GPU dashboard."""
    dashboard = new_dashboard(
        UID,
        "Ollama / GPU",
        "Per GPU utilisation, memory, temperature and power from NVML; VRAM per resident "
        "model; per-process GPU memory; GPU use measured during each model's probes.",
        variables=[target_variable()],
        time_from="now-6h",
    )
    _status_row(dashboard)
    _device_panels(dashboard)
    _residency_row(dashboard)
    _probe_row(dashboard)
    return dashboard
