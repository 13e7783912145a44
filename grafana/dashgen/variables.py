"""Template variables of the dashboards."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard as dashboard_models

from .panels import PROMETHEUS

DEFAULT_PROMPT = "avocado_pl"
# The smoothing windows offered for means and quantiles. Probes are sparse (the default
# avocado_pl prompt runs every 30 min), so a window must hold at least two probes to mean much.
WINDOWS = ("30m", "1h", "3h", "6h", "12h", "1d")
DEFAULT_WINDOW = "1h"


def _label_values(
    name: str, label: str, query: str, *, multi: bool
) -> dashboard_builders.QueryVariable:
    variable = (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        # Refresh on time-range change: models come and go with the inventory.
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        # `.*` instead of Grafana's default alternation of every value: shorter queries, and
        # series that appear after the page was loaded are included too.
        variable = variable.all_value(".*").current(
            dashboard_models.VariableOption(selected=True, text="All", value="$__all")
        )
    return variable


def target_variable() -> dashboard_builders.QueryVariable:
    return _label_values("target", "Target", "label_values(ollama_up, target)", multi=True)


def model_variable() -> dashboard_builders.QueryVariable:
    return _label_values(
        "model",
        "Model",
        'label_values(ollama_probes_total{target=~"$target"}, model)',
        multi=True,
    )


def prompt_variable() -> dashboard_builders.QueryVariable:
    """Single value: models are only comparable on the same prompt."""
    return _label_values(
        "prompt",
        "Prompt",
        'label_values(ollama_probes_total{target=~"$target", model=~"$model"}, prompt)',
        multi=False,
    ).current(
        dashboard_models.VariableOption(selected=True, text=DEFAULT_PROMPT, value=DEFAULT_PROMPT)
    )


def window_variable() -> dashboard_builders.CustomVariable:
    """The window of the moving means and p95s of the time series."""
    return (
        dashboard_builders.CustomVariable("window")
        .label("Smoothing window")
        .values(",".join(WINDOWS))
        .current(
            dashboard_models.VariableOption(
                selected=True, text=DEFAULT_WINDOW, value=DEFAULT_WINDOW
            )
        )
        .options(
            [
                dashboard_models.VariableOption(
                    selected=window == DEFAULT_WINDOW, text=window, value=window
                )
                for window in WINDOWS
            ]
        )
    )
