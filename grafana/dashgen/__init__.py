"""Dashboards as code: builds the JSON under grafana/dashboards/ with grafana-foundation-sdk.

Run `python -m grafana.dashgen` from the repository root to rewrite the committed files;
`--check` only compares them (tests/test_dashboards.py does the same in memory).
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from . import gpu, kpis, model_comparison
from .layout import render

# File name under grafana/dashboards/ -> builder.
DASHBOARDS: dict[str, Callable[[], dashboard_builders.Dashboard]] = {
    "model-comparison.json": model_comparison.build,
    "kpis-slos.json": kpis.build,
    "gpu.json": gpu.build,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}
