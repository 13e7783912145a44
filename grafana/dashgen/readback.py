"""Reading dashboards back: their queries, the metric names they use, variable expansion.

The tests use these helpers on the committed JSON (not on the builders), so they check what
Grafana will actually load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Dashboard = dict[str, Any]


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    instant: bool


def panels(dashboard: Dashboard) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def query_panels(dashboard: Dashboard) -> Iterator[dict[str, Any]]:
    """Panels that query a datasource (rows and text panels have no targets)."""
    return (p for p in panels(dashboard) if p.get("type") not in {"row", "text"})


def queries(dashboard: Dashboard) -> Iterator[PanelQuery]:
    """Every panel query, then every annotation query (range queries, as Grafana runs them)."""
    yield from _panel_queries(dashboard)
    yield from annotation_queries(dashboard)


def annotation_queries(dashboard: Dashboard) -> Iterator[PanelQuery]:
    """The Prometheus annotation queries; Grafana's built-in annotation has no expr."""
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield PanelQuery(
                panel=f"annotation {annotation.get('name', '')}",
                ref_id="",
                expr=annotation["expr"],
                instant=False,
            )


def _panel_queries(dashboard: Dashboard) -> Iterator[PanelQuery]:
    for panel in query_panels(dashboard):
        for target in panel.get("targets", []):
            yield PanelQuery(
                panel=panel.get("title", ""),
                ref_id=target.get("refId", ""),
                expr=target.get("expr", ""),
                instant=bool(target.get("instant")),
            )


def table_columns(panel: dict[str, Any]) -> dict[str, str]:
    """A comparison table's value columns in display order: column name -> its query.

    The names come from the table's organize transformation, which renames each query's
    `Value #<refId>` column and orders the columns.
    """
    renames: dict[str, str] = {}
    order: dict[str, int] = {}
    for transformation in panel.get("transformations", []):
        if transformation.get("id") == "organize":
            renames = transformation["options"].get("renameByName", {})
            order = transformation["options"].get("indexByName", {})
    exprs = {target["refId"]: target["expr"] for target in panel.get("targets", [])}
    columns = sorted(renames, key=lambda column: order.get(column, len(order)))
    return {renames[c]: exprs[c.removeprefix("Value #")] for c in columns}


def variables(dashboard: Dashboard) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


# Characters Grafana escapes in a multi-value Prometheus variable before joining the values
# with `|` (the value ends up inside a PromQL string, hence the doubled backslash).
_REGEX_SPECIAL = set("\\^$*+?.()|{}[]'")


def regex_escape(value: str) -> str:
    return "".join("\\\\" + c if c in _REGEX_SPECIAL else c for c in value)


def format_value(variable: Mapping[str, Any], chosen: str | Sequence[str]) -> str:
    """How Grafana's Prometheus datasource writes a variable's value into a query.

    All -> the variable's allValue; several values of a multi variable -> `(a|b)` with regex
    characters escaped; one value of a multi variable -> the escaped value.
    """
    if chosen == "$__all":
        return str(variable["allValue"])
    values = [chosen] if isinstance(chosen, str) else list(chosen)
    if variable.get("multi") or variable.get("includeAll"):
        escaped = [regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return values[0]


def variable_values(
    dashboard: Dashboard, builtins: Mapping[str, str], *, model: str = "$__all"
) -> dict[str, str]:
    """Formatted values of every variable: `model` as given, other multi ones All, the rest
    their default (current) value; plus Grafana's built-ins (`__range`, ...) as given."""
    values = dict(builtins)
    for variable in variables(dashboard):
        if variable["name"] == "model":
            values["model"] = format_value(variable, model)
        elif variable.get("includeAll"):
            values[variable["name"]] = format_value(variable, "$__all")
        else:
            values[variable["name"]] = format_value(variable, variable["current"]["value"])
    return values


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def label_values_query(query: str) -> tuple[str, str]:
    """(series selector, label) of a `label_values(selector, label)` variable query."""
    match = _LABEL_VALUES.match(query.strip())
    if match is None:
        raise ValueError(f"not a label_values query: {query!r}")
    return match["selector"], match["label"]


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def expand(expr: str, values: Mapping[str, str]) -> str:
    """Replace $name and ${name} by already formatted values; unknown names fail loudly."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric (and recording rule) names a PromQL expression selects.

    A small lexer instead of a parser (no PromQL parser ships for Python): label matchers,
    strings, range selectors and label lists are removed first, then every identifier that is
    not a function call or a keyword is a metric name.
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}
