"""Dashboard 2: the seed report's KPIs, the SLO error budgets, and the firing alerts.

The KPI stats use the same expressions, windows and thresholds as the KPI alerts of
prometheus/rules, so a red stat and a firing alert mean the same thing. The SLO panels read
the `slo:*` recording rules instead of recomputing them.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import promql as q
from .annotations import change_annotations
from .layout import new_dashboard
from .panels import (
    ABOVE_99_9_PERCENT,
    BELOW_1_PERCENT,
    BELOW_60_SECONDS,
    BELOW_80_PERCENT,
    UNIT_TIMES,
    Column,
    Query,
    Size,
    Step,
    comparison_table,
    info_table,
    stat_panel,
    timeseries_panel,
)
from .variables import target_variable

UID = "ollama-kpis-slos"
# The windows of the KPI alerts in prometheus/rules (tests/test_dashboards.py checks that they
# still agree).
MEAN_RESPONSE_WINDOW = "2h"
ERROR_RATE_WINDOW = "1d"
GPU_UTILISATION_WINDOW = "15m"
BURN_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLO_KEY = ("slo", "target", "model", "prompt")
# Burn rate steps: 1 spends the budget exactly over the 30-day period; 3, 6 and 14.4 are the
# ticket and page factors of the multi-window burn alerts.
BURN_STEPS: tuple[Step, ...] = ((None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red"))
BUDGET_STEPS: tuple[Step, ...] = ((None, "red"), (0, "orange"), (0.25, "yellow"), (0.5, "green"))
SLO_LEGEND = "{{slo}} {{target}} {{model}} {{prompt}}"


def burn_rate(window: str) -> str:
    """Error ratio over `window` / the SLO's error budget (1 - objective)."""
    return (
        f"{q.sel(f'slo:sli_error:ratio_rate{window}', [q.TARGET])}"
        f" / on (slo) group_left() max by (slo) (slo:error_budget:ratio)"
    )


def _kpi_stats(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("KPIs of the seed report (red = KPI breached)"))
    series = ("target", "model", "prompt")
    dashboard.with_panel(
        stat_panel(
            "Mean response time < 60 s",
            "Mean time of successful probes per target, model and prompt over the last "
            f"{MEAN_RESPONSE_WINDOW}: rate of ollama_probe_duration_seconds_sum / rate of _count, "
            "as the OllamaResponseTimeKPIBreached alert computes it. Red from 60 s; the alert "
            "also needs 3 successful probes in the window and 10 minutes above.",
            "s",
            [
                Query(
                    q.histogram_mean(
                        "ollama_probe_duration_seconds", [q.TARGET], MEAN_RESPONSE_WINDOW, series
                    ),
                    "{{model}} · {{prompt}} · {{target}}",
                )
            ],
            Size(6, 7),
            steps=BELOW_60_SECONDS,
            instant=False,
        )
    )
    key = ("target", "model")
    failures = q.sum_increase("ollama_probe_failures_total", [q.TARGET], ERROR_RATE_WINDOW, key)
    probes = q.sum_increase("ollama_probes_total", [q.TARGET], ERROR_RATE_WINDOW, key)
    dashboard.with_panel(
        stat_panel(
            "Error rate < 1 %",
            "Failed generation probes / all probes per target and model over the last "
            f"{ERROR_RATE_WINDOW} (every failure reason), as the OllamaErrorRateKPIBreached "
            "alert computes it. Red from 1 %; the alert also needs 100 probes in the window "
            "(one failure in fewer is already 1 %) and 15 minutes above.",
            "percentunit",
            [Query(f"{failures} / {probes}", "{{model}} · {{target}}")],
            Size(6, 7),
            steps=BELOW_1_PERCENT,
            instant=False,
        )
    )
    checks = q.sum_increase("ollama_health_checks_total", [q.TARGET], "$__range", ["target"])
    failed = q.sum_increase(
        "ollama_health_check_failures_total", [q.TARGET], "$__range", ["target"]
    )
    dashboard.with_panel(
        stat_panel(
            "Availability > 99.9 %",
            "Share of health checks (GET /api/version, or /v1/models on an OpenAI-compatible "
            "target, every health interval) that succeeded "
            "over the dashboard's time range, per target: 1 - ollama_health_check_failures_total "
            "/ ollama_health_checks_total. This is the availability SLI; its 30-day budget is "
            "below. Red under 99.9 %.",
            "percentunit",
            [Query(f"1 - {failed} / {checks}", "{{target}}")],
            Size(6, 7),
            steps=ABOVE_99_9_PERCENT,
            decimals=3,
        )
    )
    dashboard.with_panel(
        stat_panel(
            "GPU utilisation < 80 %",
            f"Mean NVML utilisation per GPU over the last {GPU_UTILISATION_WINDOW} "
            "(avg_over_time of nvml_gpu_utilization_ratio), the sustained level the "
            "GPUUtilizationKPIBreached alert watches (it fires after 15 more minutes above). "
            "Red from 80 %.",
            "percentunit",
            [
                Query(
                    f"avg_over_time(nvml_gpu_utilization_ratio[{GPU_UTILISATION_WINDOW}])",
                    "GPU {{gpu}} · {{instance}}",
                )
            ],
            Size(6, 7),
            steps=BELOW_80_PERCENT,
            instant=False,
        )
    )


def _slo_panels(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("SLOs: 30-day error budgets and burn rates"))
    budget = q.sel("slo:period_error_budget_remaining:ratio", [q.TARGET])
    dashboard.with_panel(
        stat_panel(
            "Error budget left",
            "slo:period_error_budget_remaining:ratio per SLO series: the share of the 30-day "
            "error budget not yet spent (availability per target: 99.9 % of health checks; "
            "latency per model and prompt: 99 % of probes successful within 60 s). Below 0 the "
            "objective is missed for the period.",
            "percentunit",
            [Query(budget, SLO_LEGEND)],
            Size(8, 9),
            steps=BUDGET_STEPS,
            decimals=1,
        )
    )
    columns = [
        Column(
            f"Burn {window}",
            f"max by ({q.by(SLO_KEY)}) ({burn_rate(window)})",
            UNIT_TIMES,
            BURN_STEPS,
            decimals=2,
        )
        for window in BURN_WINDOWS
    ]
    dashboard.with_panel(
        comparison_table(
            "Burn rate per SLO and window",
            "Error ratio over each window (slo:sli_error:ratio_rate<window>) divided by the "
            "error budget (slo:error_budget:ratio, 1 - objective): 1 spends the budget exactly "
            "in 30 days. The alerts page when 1h and 5m both exceed 14.4 or 6h and 30m exceed "
            "6, and open a ticket when 1d and 2h exceed 3 or 3d and 6h exceed 1.",
            columns,
            Size(16, 9),
            key_labels=SLO_KEY,
            sort_by="Burn 1h",
        )
    )
    dashboard.with_panel(
        timeseries_panel(
            "Burn rate over 1h",
            "slo:sli_error:ratio_rate1h / slo:error_budget:ratio per SLO series. Dashed lines: "
            "1 (budget spent in exactly 30 days), 6 and 14.4 (the page factors).",
            UNIT_TIMES,
            [Query(burn_rate("1h"), SLO_LEGEND)],
            Size(24, 8),
            steps=BURN_STEPS,
            bounds=(0, None),
        )
    )


def _alerts_panel(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("Alerts"))
    dashboard.with_panel(
        info_table(
            "Firing alerts",
            'ALERTS{alertstate="firing"} from Prometheus now: one row per firing alert with '
            "its labels (severity, target, model, prompt, gpu). Pending alerts are left out; "
            "Alertmanager's view (silences, inhibitions) is in the Alertmanager datasource.",
            Query('ALERTS{alertstate="firing"}'),
            Size(24, 8),
            hidden=("__name__", "alertstate"),
        )
    )


def build() -> dashboard_builders.Dashboard:
    """The KPI and SLO dashboard."""
    dashboard = new_dashboard(
        UID,
        "Ollama / KPIs and SLOs",
        "The seed report's KPIs (mean response < 60 s, error rate < 1 %, availability > "
        "99.9 %, GPU utilisation < 80 %), SLO error budgets and burn rates, firing alerts.",
        variables=[target_variable()],
        time_from="now-24h",
        annotations=change_annotations(by_model=False),
    )
    _kpi_stats(dashboard)
    _slo_panels(dashboard)
    _alerts_panel(dashboard)
    return dashboard
