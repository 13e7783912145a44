"""Dashboard 1: the seed report's model comparison, live.

Every panel shows the models on one prompt (`$prompt`): a duration measured on a 16-token
liveness prompt and one measured on the 512-token avocado question are not comparable.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from . import promql as q
from .annotations import change_annotations
from .layout import new_dashboard
from .panels import (
    BELOW_60_SECONDS,
    UNIT_CHARACTERS,
    UNIT_TOKENS_PER_SECOND,
    UNIT_WORDS,
    Column,
    Query,
    Size,
    Step,
    bargauge_panel,
    comparison_table,
    timeseries_panel,
)
from .variables import model_variable, prompt_variable, target_variable, window_variable

UID = "ollama-model-comparison"
KEY = ("target", "model")
DURATION = "ollama_probe_duration_seconds"
TTFT = "ollama_probe_time_to_first_token_seconds"
# The table and the rankings cover the dashboard's time range, like the report covered its run.
RANGE = "$__range"

MEAN_OVER_RANGE = q.histogram_mean(DURATION, q.PROBE_LABELS, RANGE, KEY)
# Models are compared with the others on their own target (the prompt is one already): a
# fast GPU box must not make every model of a CPU box look slow.
RELATIVE_SPEED = q.relative_to_fastest(MEAN_OVER_RANGE, within=("target",))
# The samples behind the range columns: every successful probe is timed and checked, every
# probe counts towards success and cold starts.
SUCCESSES_OVER_RANGE = q.sample_count(f"{DURATION}_count", q.PROBE_LABELS, RANGE, KEY)
PROBES_OVER_RANGE = q.sample_count("ollama_probes_total", q.PROBE_LABELS, RANGE, KEY)
COLD_STARTS_OVER_RANGE = q.sample_count(
    "ollama_probe_cold_starts_total", q.PROBE_LABELS, RANGE, KEY
)
# GPU energy of the successful probes over the range, per answer and per generated token.
# Only GPU targets whose GPUs have an energy counter have the series: others get no value.
ENERGY = "ollama_probe_gpu_energy_joules_total"


def _energy_per(counter: str, window: str) -> str:
    energy = q.sum_increase(ENERGY, q.PROBE_LABELS, window, KEY)
    return f"{energy} / {q.sum_increase(counter, q.PROBE_LABELS, window, KEY)}"


ENERGY_PER_ANSWER = _energy_per(f"{DURATION}_count", RANGE)
ENERGY_PER_TOKEN = _energy_per("ollama_probe_generated_tokens_total", RANGE)
# Ratios: green when everything passed, as the report's KPIs expect.
GOOD_RATIO: tuple[Step, ...] = ((None, "red"), (0.99, "yellow"), (1.0, "green"))


def _success_ratio() -> str:
    failures = q.sum_increase("ollama_probe_failures_total", q.PROBE_LABELS, RANGE, KEY)
    probes = q.sum_increase("ollama_probes_total", q.PROBE_LABELS, RANGE, KEY)
    return f"1 - {failures} / {probes}"


def _check_pass_ratio() -> str:
    """Share of answer-check runs that passed, averaged over the prompt's checks.

    Checks run on successful probes only, so each check's failures are divided by the
    successful probes (probes - failures) of the same series; `ignoring(check)` matches the
    per-check failure counts against that per-series denominator.
    """
    series = (*KEY, "prompt")
    check_failures = q.sum_increase(
        "ollama_probe_check_failures_total", q.PROBE_LABELS, RANGE, (*series, "check")
    )
    probes = q.sum_increase("ollama_probes_total", q.PROBE_LABELS, RANGE, series)
    failures = q.sum_increase("ollama_probe_failures_total", q.PROBE_LABELS, RANGE, series)
    return (
        f"1 - avg by ({q.by(KEY)}) ({check_failures}"
        f" / ignoring(check) group_left() ({probes} - {failures}))"
    )


def _vram() -> str:
    """VRAM of each compared model from /api/ps (per model, no prompt label).

    Models that are not resident have no vram series; they show 0 through the loaded=0 gauge.
    The `and on(target, model)` keeps only models probed with the selected prompt, so
    embedding models (listed but never probed) add no empty rows.
    """
    resident = q.max_by("ollama_model_vram_bytes", q.MODEL_LABELS, KEY)
    unloaded = f"max by ({q.by(KEY)}) ({q.sel('ollama_model_loaded', q.MODEL_LABELS)} == 0)"
    probed = q.sel("ollama_probes_total", q.PROBE_LABELS)
    return f"({resident} or {unloaded}) and on ({q.by(KEY)}) {probed}"


def _gpu_share() -> str:
    """The part of a resident model's memory that is on the GPU: size_vram / size (1 = all
    of it; less means layers run on the CPU). Models that are not resident have no row."""
    vram = q.max_by("ollama_model_vram_bytes", q.MODEL_LABELS, KEY)
    memory = q.max_by("ollama_model_memory_bytes", q.MODEL_LABELS, KEY)
    probed = q.sel("ollama_probes_total", q.PROBE_LABELS)
    return f"({vram} / {memory}) and on ({q.by(KEY)}) {probed}"


def _columns() -> list[Column]:
    """The range columns, each group followed by its sample count, then the latest probe's."""
    return [
        Column("Relative speed", RELATIVE_SPEED, "percentunit", decimals=0),
        Column("Mean time", MEAN_OVER_RANGE, "s", BELOW_60_SECONDS),
        Column("Checks passed", _check_pass_ratio(), "percentunit", GOOD_RATIO, decimals=1),
        Column("Energy/answer", ENERGY_PER_ANSWER, "joule"),
        Column("Energy/token", ENERGY_PER_TOKEN, "joule", decimals=3),
        Column("n (ok)", SUCCESSES_OVER_RANGE, "none", decimals=0),
        Column("Success", _success_ratio(), "percentunit", GOOD_RATIO, decimals=1),
        Column("Cold starts", COLD_STARTS_OVER_RANGE, "none", decimals=0),
        Column("n (all)", PROBES_OVER_RANGE, "none", decimals=0),
        Column(
            "Last time",
            q.max_by("ollama_probe_last_duration_seconds", q.PROBE_LABELS, KEY),
            "s",
            BELOW_60_SECONDS,
        ),
        Column(
            "TTFT",
            q.max_by("ollama_probe_last_time_to_first_token_seconds", q.PROBE_LABELS, KEY),
            "s",
        ),
        Column(
            "Tokens/s",
            q.max_by("ollama_probe_tokens_per_second", q.PROBE_LABELS, KEY),
            UNIT_TOKENS_PER_SECOND,
            decimals=1,
        ),
        Column(
            "Characters",
            q.max_by("ollama_probe_response_characters", q.PROBE_LABELS, KEY),
            UNIT_CHARACTERS,
            decimals=0,
        ),
        Column(
            "Words",
            q.max_by("ollama_probe_response_words", q.PROBE_LABELS, KEY),
            UNIT_WORDS,
            decimals=0,
        ),
        Column("VRAM", _vram(), "bytes"),
        Column("GPU share", _gpu_share(), "percentunit", decimals=0),
    ]


TABLE_DESCRIPTION = (
    "One row per model and target on the selected prompt: the seed report's table, measured "
    "continuously. The first columns cover the dashboard's time range, each group followed by "
    "the number of probes it rests on, so a mean of 2 probes does not pass for one of 200. "
    "Relative speed = the mean response time of the fastest model on the same target / this "
    "model's mean (100 % = the fastest model of its target; models of different targets are "
    "not compared). Mean time is rate(_sum) / rate(_count) of the duration histogram over the "
    "range. Checks passed = passed answer-check runs / all runs. These three rest on the "
    "successful probes, n (ok): only they are timed and checked. Success = 1 - failed / all "
    "probes; cold starts = probes that found the model not resident; both rest on all probes, "
    "n (all). The counts are increase() over the range, rounded; they miss a probe that ended "
    "before the series' first scrape, like every counter column. "
    "Last time, TTFT (time to first token), tokens/s (Ollama's decode rate, eval_count / "
    "eval_duration), characters and words describe the latest successful answer (last time: "
    "the latest probe). VRAM is size_vram from /api/ps for this model alone (0 = not "
    "resident), not the Ollama process total the report logged. GPU share = size_vram / "
    "size from /api/ps (100 % = the whole model on the GPU; resident models only). "
    "Energy/answer and energy/token: the GPU energy counters' increase over the successful "
    "probes in the range, divided by their number and by the tokens they generated; GPU "
    "targets with an energy counter only. It is the whole GPU's energy while the probe ran: "
    "other models or users on the same GPU add to it."
)


def _comparison_row(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_row(dashboard_builders.Row("Comparison on prompt $prompt"))
    dashboard.with_panel(
        comparison_table(
            "Models on prompt $prompt",
            TABLE_DESCRIPTION,
            _columns(),
            Size(24, 10),
            key_labels=KEY,
            sort_by="Relative speed",
        )
    )
    dashboard.with_panel(
        bargauge_panel(
            "Speed ranking",
            "Relative speed over the dashboard's time range: the mean response time of the "
            "fastest model on the same target divided by this model's mean (rate of _sum / rate "
            "of _count of ollama_probe_duration_seconds). 100 % = the fastest of its target, as "
            "in the seed report; models of different targets are not compared. The table's "
            "n (ok) column says how many probes each mean rests on.",
            "percentunit",
            [Query(f"sort_desc({RELATIVE_SPEED})", "{{model}} · {{target}}")],
            Size(8, 8),
            steps=((None, "orange"), (0.8, "yellow"), (1.0, "green")),
            bounds=(0, 1),
        )
    )
    for unit, metric, noun in (
        (UNIT_CHARACTERS, "ollama_probe_response_characters", "characters (code points)"),
        (UNIT_WORDS, "ollama_probe_response_words", "words (whitespace-separated)"),
    ):
        dashboard.with_panel(
            bargauge_panel(
                f"Answer length ({noun.split()[0]})",
                f"Length of the latest successful answer in {noun}, longest first; the answer "
                "text only, not the thinking text.",
                unit,
                [
                    Query(
                        f"sort_desc({q.max_by(metric, q.PROBE_LABELS, KEY)})",
                        "{{model}} · {{target}}",
                    )
                ],
                Size(8, 8),
            )
        )


def _latency_panels(dashboard: dashboard_builders.Dashboard) -> None:
    # The 60 s KPI is on the whole response, so only that panel draws it. Time to first token
    # has no KPI and no alert; a line there would be a threshold nobody agreed on.
    for title, histogram, what, steps, line in (
        (
            "Response time",
            DURATION,
            "the whole probe (request sent to the final chunk read)",
            BELOW_60_SECONDS,
            " The dashed line is the 60 s KPI on the mean response time.",
        ),
        (
            "Time to first token",
            TTFT,
            "the first chunk with content",
            (),
            " No line: the 60 s KPI is on the whole response, and time to first token has no "
            "threshold of its own.",
        ),
    ):
        dashboard.with_panel(
            timeseries_panel(
                f"{title}: mean and p95",
                f"Time to {what}, successful probes only, from the histogram "
                f"{histogram}: mean = rate of _sum / rate of _count and p95 = "
                "histogram_quantile over the buckets, both over the smoothing window "
                f"($window).{line}",
                "s",
                [
                    Query(
                        q.histogram_mean(histogram, q.PROBE_LABELS, "$window", KEY),
                        "{{model}} mean",
                    ),
                    Query(
                        q.histogram_p95(histogram, q.PROBE_LABELS, "$window", KEY), "{{model}} p95"
                    ),
                ],
                Size(12, 9),
                steps=steps,
            )
        )


def _throughput_panels(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_panel(
        timeseries_panel(
            "Tokens per second",
            "Ollama's decode rate on the latest successful probe: eval_count / eval_duration "
            "from the final chunk (generation only, prompt evaluation excluded).",
            UNIT_TOKENS_PER_SECOND,
            [Query(q.sel("ollama_probe_tokens_per_second", q.PROBE_LABELS), "{{model}}")],
            Size(12, 9),
        )
    )
    load = q.sel("ollama_probe_load_duration_seconds", q.PROBE_LABELS)
    cold_start = q.sel("ollama_probe_cold_start", q.PROBE_LABELS)
    cold = f"{load} and on (target, model, prompt) ({cold_start} == 1)"
    dashboard.with_panel(
        timeseries_panel(
            "Load time (cold starts marked)",
            "Ollama's load_duration of the latest probe (model load into memory; near 0 when "
            "the model was resident). Large dots mark the time during which the latest probe "
            "was a cold start: the model was not listed by /api/ps just before it.",
            "s",
            [Query(load, "{{model}}"), Query(cold, "{{model}} cold start")],
            Size(12, 9),
        ).override_by_query(
            "B",
            [
                dashboard_models.DynamicConfigValue(
                    id_val="custom.drawStyle", value=common_models.GraphDrawStyle.POINTS
                ),
                dashboard_models.DynamicConfigValue(id_val="custom.pointSize", value=10),
                dashboard_models.DynamicConfigValue(
                    id_val="custom.showPoints", value=common_models.VisibilityMode.ALWAYS
                ),
            ],
        )
    )


def _energy_panel(dashboard: dashboard_builders.Dashboard) -> None:
    dashboard.with_panel(
        timeseries_panel(
            "GPU energy per answer",
            "Joules the GPUs used per successful probe over the smoothing window ($window): "
            "rate of ollama_probe_gpu_energy_joules_total (NVML's energy counters, read at "
            "each probe's start and end) / rate of successful probes. The whole GPU's energy "
            "while the probe ran, other models' and users' included; GPU targets whose GPUs "
            "have the counter only, never estimated from power samples.",
            "joule",
            [
                Query(_energy_per(f"{DURATION}_count", "$window"), "{{model}} per answer"),
            ],
            Size(12, 9),
        )
    )


def build() -> dashboard_builders.Dashboard:
    """The model comparison dashboard."""
    dashboard = new_dashboard(
        UID,
        "Ollama / Model comparison",
        "The seed report's comparison of models on one prompt, live: response time, TTFT, "
        "tokens/s, answer length, per-model VRAM, success, answer checks, cold starts. "
        "Means over a window carry no uncertainty: to decide which model to run, "
        "`ollama-probe-exporter compare` (or `compare --from-prometheus URL --range 7d` on "
        "what this Prometheus holds) gives medians with 95 % intervals and a verdict per pair.",
        variables=[target_variable(), model_variable(), prompt_variable(), window_variable()],
        time_from="now-6h",
        annotations=change_annotations(by_model=True),
    )
    _comparison_row(dashboard)
    dashboard.with_row(dashboard_builders.Row("Per model over time (prompt $prompt)"))
    _latency_panels(dashboard)
    _throughput_panels(dashboard)
    _energy_panel(dashboard)
    return dashboard
