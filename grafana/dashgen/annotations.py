"""Annotations: the changes that explain a step in a graph, drawn on every time series.

A model pulled again under the same name (new digest), an Ollama upgrade and a configuration
reload of the exporter each change what the probes measure. Each is a Prometheus annotation
query on the series that records it, so the marker sits beside the step it caused.

The SDK's AnnotationQuery carries only `expr` of a Prometheus annotation's fields; the others
(step, titleFormat, textFormat, tagKeys) are the Prometheus datasource's annotation fields,
which Grafana reads from the annotation's top level, so a subclass writes them there.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dashboard_models

from . import promql as q
from .panels import PROMETHEUS

# Annotation queries are range queries at this step; the window of each query is two steps,
# so a change is seen by at least one evaluation, and neighbouring hits merge into one marker.
STEP = "60s"
WINDOW = "2m"


class PrometheusAnnotation(dashboard_models.AnnotationQuery):
    """An annotation query with the Prometheus datasource's own fields."""

    def __init__(self, name: str, expr: str, title: str, text: str, tags: str, color: str) -> None:
        super().__init__(name=name, datasource=PROMETHEUS, icon_color=color, expr=expr)
        self.step = STEP
        self.title_format = title
        self.text_format = text
        self.tag_keys = tags

    def to_json(self) -> dict[str, object]:
        payload: dict[str, Any] = super().to_json()
        payload.update(
            step=self.step,
            titleFormat=self.title_format,
            textFormat=self.text_format,
            tagKeys=self.tag_keys,
            useValueForTime=False,
        )
        return payload


class Annotation(cogbuilder.Builder[dashboard_models.AnnotationQuery]):
    """Builds one PrometheusAnnotation (the dashboard builder takes builders)."""

    def __init__(self, annotation: PrometheusAnnotation) -> None:
        self._annotation = annotation

    def build(self) -> dashboard_models.AnnotationQuery:
        return self._annotation


def _increased(counter: str, matchers: tuple[str, ...]) -> str:
    # increase, not changes: an exporter restart resets the counter, which is no change.
    return f"increase({q.sel(counter, matchers)}[{WINDOW}]) > 0"


def change_annotations(*, by_model: bool) -> list[Annotation]:
    """Model digest changes, Ollama version changes and exporter configuration reloads;
    `by_model`: the dashboard has a $model variable, which the model changes follow."""
    models = q.MODEL_LABELS if by_model else (q.TARGET,)
    return [
        Annotation(
            PrometheusAnnotation(
                "Model changed",
                _increased("ollama_model_changes_total", models),
                "Model {{model}} changed on {{target}}",
                "The model's digest in /api/tags changed (pulled or re-created under the "
                "same name): ollama_model_changes_total.",
                "target,model",
                "orange",
            )
        ),
        Annotation(
            PrometheusAnnotation(
                "Ollama version changed",
                _increased("ollama_server_version_changes_total", (q.TARGET,)),
                "Ollama version changed on {{target}}",
                "/api/version answered another version than before: "
                "ollama_server_version_changes_total.",
                "target",
                "purple",
            )
        ),
        Annotation(
            PrometheusAnnotation(
                "Exporter reloaded",
                "changes(ollama_exporter_config_last_reload_success_timestamp_seconds"
                f"[{WINDOW}]) > 0",
                "Exporter configuration loaded on {{instance}}",
                "A configuration load succeeded (a reload, or a restart of the exporter): "
                "ollama_exporter_config_last_reload_success_timestamp_seconds changed.",
                "instance",
                "blue",
            )
        ),
    ]
