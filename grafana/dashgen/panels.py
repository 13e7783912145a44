"""Small builders shared by the three dashboards.

Every panel of every dashboard is made by one of the functions here, so the datasource, the
unit and the description are set in one place and cannot be forgotten on a single panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus as prometheus_models
from grafana_foundation_sdk.models.common import BigValueGraphMode

# The provisioned datasource uid (grafana/provisioning/datasources). Referencing it directly is
# what makes file provisioning work: `${DS_PROMETHEUS}` inputs are never resolved there.
PROMETHEUS = dashboard_models.DataSourceRef(type_val="prometheus", uid="prometheus")

# Grafana's custom-unit syntax: the suffix is appended to the value as written.
UNIT_TOKENS_PER_SECOND = "suffix: tok/s"
UNIT_CHARACTERS = "suffix: chars"
UNIT_WORDS = "suffix: words"
# Burn rates: multiples of the error ratio that spends the budget exactly over the period.
UNIT_TIMES = "suffix:\N{MULTIPLICATION SIGN}"

Step = tuple[float | None, str]
"""A threshold step: (lower bound or None for the base step, colour)."""

# Threshold steps that mirror the KPI alerts of prometheus/rules (the report's KPIs).
BELOW_60_SECONDS: tuple[Step, ...] = ((None, "green"), (60.0, "red"))
BELOW_1_PERCENT: tuple[Step, ...] = ((None, "green"), (0.01, "red"))
ABOVE_99_9_PERCENT: tuple[Step, ...] = ((None, "red"), (0.999, "green"))
BELOW_80_PERCENT: tuple[Step, ...] = ((None, "green"), (0.8, "red"))
BELOW_95_PERCENT: tuple[Step, ...] = ((None, "green"), (0.95, "red"))


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel; `legend` is Grafana's legendFormat."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Column:
    """One value column of a comparison table, filled by an instant query."""

    name: str
    expr: str
    unit: str
    steps: tuple[Step, ...] = ()
    decimals: int | None = None


@dataclass(frozen=True)
class Size:
    """Width and height on Grafana's 24-column grid."""

    w: int
    h: int = 8


def thresholds(steps: Sequence[Step]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds from (value, colour) steps."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


def prom_query(
    query: Query, ref_id: str, *, instant: bool = False, table_format: bool = False
) -> prometheus_builders.Dataquery:
    """A Prometheus target bound to the provisioned datasource."""
    target = (
        prometheus_builders.Dataquery()
        .datasource(PROMETHEUS)
        .expr(query.expr)
        .legend_format(query.legend or "__auto")
        .ref_id(ref_id)
    )
    target = target.instant() if instant else target.range()
    if table_format:
        target = target.format(prometheus_models.PromQueryFormat.TABLE)
    return target


def _ref_id(index: int) -> str:
    return chr(ord("A") + index)


class _QueryPanel(Protocol):
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...


_P = TypeVar("_P", bound=_QueryPanel)


def _with_queries(panel: _P, queries: Sequence[Query], *, instant: bool = False) -> _P:
    for index, query in enumerate(queries):
        panel = panel.with_target(prom_query(query, _ref_id(index), instant=instant))
    return panel


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    size: Size,
    *,
    steps: Sequence[Step] = (),
    stacked: bool = False,
    bounds: tuple[float | None, float | None] = (None, None),
) -> timeseries.Panel:
    """A time series; thresholds, when given, are drawn as dashed lines (the alert level)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(size.w)
        .height(size.h)
        .line_width(1)
        .fill_opacity(30 if stacked else 10)
        .show_points(common_models.VisibilityMode.AUTO)
        # Sparse probes leave gaps between samples; bridging them up to 1 h keeps one line
        # per model instead of scattered dots, while longer outages still show as gaps.
        .span_nulls(3_600_000)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "mean", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )
    if stacked:
        panel = panel.stacking(
            common_builders.StackingConfig().mode(common_models.StackingMode.NORMAL)
        )
    if steps:
        panel = panel.thresholds(thresholds(steps)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common_models.GraphThresholdsStyleMode.DASHED
            )
        )
    low, high = bounds
    if low is not None:
        panel = panel.min(low)
    if high is not None:
        panel = panel.max(high)
    return _with_queries(panel, queries)


def stat_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    size: Size,
    *,
    steps: Sequence[Step] = ((None, "green"),),
    instant: bool = True,
    decimals: int | None = None,
) -> stat.Panel:
    """A stat coloured by its thresholds; one tile per series."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(size.w)
        .height(size.h)
        .thresholds(thresholds(steps))
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        # A sparkline only where the query is a range query.
        .graph_mode(BigValueGraphMode.NONE if instant else BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return _with_queries(panel, queries, instant=instant)


def bargauge_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    size: Size,
    *,
    steps: Sequence[Step] = ((None, "blue"),),
    bounds: tuple[float | None, float | None] = (0, None),
) -> bargauge.Panel:
    """A horizontal bar gauge over instant values; the query decides the order (sort_desc)."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(size.w)
        .height(size.h)
        .thresholds(thresholds(steps))
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    low, high = bounds
    if low is not None:
        panel = panel.min(low)
    if high is not None:
        panel = panel.max(high)
    return _with_queries(panel, queries, instant=True)


def _column_override(panel: table.Panel, column: Column) -> table.Panel:
    properties = [dashboard_models.DynamicConfigValue(id_val="unit", value=column.unit)]
    if column.steps:
        properties += [
            dashboard_models.DynamicConfigValue(
                id_val="thresholds",
                value={
                    "mode": "absolute",
                    "steps": [{"value": value, "color": color} for value, color in column.steps],
                },
            ),
            dashboard_models.DynamicConfigValue(
                id_val="custom.cellOptions", value={"type": "color-text"}
            ),
        ]
    if column.decimals is not None:
        properties.append(
            dashboard_models.DynamicConfigValue(id_val="decimals", value=column.decimals)
        )
    return panel.override_by_name(column.name, properties)


def comparison_table(
    title: str,
    description: str,
    columns: Sequence[Column],
    size: Size,
    *,
    key_labels: Sequence[str],
    sort_by: str,
) -> table.Panel:
    """One row per key-label combination, one column per instant query.

    Every query must aggregate `by (<key_labels>)` so that all frames carry the same label
    columns: Grafana's merge transformation joins rows on equal label values, and one extra
    label (prompt, check, reason) in a single frame would split its rows from the others.
    """
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(columns[0].unit)
        .span(size.w)
        .height(size.h)
        .sort_by([common_builders.TableSortByFieldState().display_name(sort_by).desc(True)])
    )
    for index, column in enumerate(columns):
        ref_id = _ref_id(index)
        panel = panel.with_target(
            prom_query(Query(column.expr), ref_id, instant=True, table_format=True)
        )
    panel = panel.with_transformation(
        dashboard_models.DataTransformerConfig(id_val="merge", options={})
    )
    panel = panel.with_transformation(
        dashboard_models.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True},
                "indexByName": {
                    name: position
                    for position, name in enumerate(
                        [*key_labels, *(f"Value #{_ref_id(i)}" for i in range(len(columns)))]
                    )
                },
                "renameByName": {
                    f"Value #{_ref_id(index)}": column.name for index, column in enumerate(columns)
                },
            },
        )
    )
    for column in columns:
        panel = _column_override(panel, column)
    return panel


def info_table(
    title: str, description: str, query: Query, size: Size, *, hidden: Sequence[str]
) -> table.Panel:
    """A table of an info-style series (value 1): its labels are the content."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit("none")
        .span(size.w)
        .height(size.h)
        .with_target(prom_query(query, "A", instant=True, table_format=True))
        .with_transformation(
            dashboard_models.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {name: True for name in ("Time", "Value", *hidden)}},
            )
        )
    )
    return panel
