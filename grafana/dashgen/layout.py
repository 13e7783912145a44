"""The dashboard shell shared by the three dashboards, and its JSON rendering."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_models

TAG = "ollama-probe-exporter"


def new_dashboard(
    uid: str,
    title: str,
    description: str,
    *,
    variables: Sequence[cogbuilder.Builder[dashboard_models.VariableModel]],
    time_from: str,
    annotations: Sequence[cogbuilder.Builder[dashboard_models.AnnotationQuery]] = (),
) -> dashboard_builders.Dashboard:
    """A dashboard with the common settings; panels are added by the caller."""
    dashboard = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, "ollama"])
        .time(time_from, "now")
        # One probe cycle of the liveness prompt is minutes long; refreshing faster than the
        # scrape interval only repeats the same samples.
        .refresh("1m")
        .timezone("browser")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard_builders.DashboardLink("Ollama dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        dashboard = dashboard.with_variable(variable)
    for annotation in annotations:
        dashboard = dashboard.annotation(annotation)
    return dashboard


def _number_panels(model: dashboard_models.Dashboard) -> None:
    # Panel ids must be unique within a dashboard; the SDK leaves them unset, and Grafana would
    # otherwise number them at load time, differently after every edit.
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number


def render(dashboard: dashboard_builders.Dashboard) -> str:
    """The committed JSON text of a dashboard (stable: sorted keys, fixed indent)."""
    model = dashboard.build()
    _number_panels(model)
    return JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False).encode(model) + "\n"
