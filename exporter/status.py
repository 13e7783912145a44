"""The human status page at `/`: the latest result of every probe job, HTML-escaped."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping

from exporter import __version__
from exporter.results import JobKey, ProbeResult, ProbeSkip

_HEAD = """<!doctype html>
<html><head><meta charset="utf-8"><title>Ollama probe exporter</title>
<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}
.fail{color:#b00}.ok{color:#070}</style></head><body>
<h1>Ollama probe exporter</h1>
<p>Version {version}. <a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> ·
<a href="/-/ready">Readiness</a></p>
"""
_COLUMNS = (
    "target",
    "model",
    "prompt",
    "ended",
    "result",
    "detail",
    "duration",
    "TTFT",
    "tokens/s",
    "checks",
)


def render_status(
    latest: Mapping[JobKey, ProbeResult | ProbeSkip], now: float | None = None
) -> str:
    """An HTML page with one row per job; every value is escaped."""
    now = time.time() if now is None else now
    rows = [_row(key, latest[key], now) for key in sorted(latest)]
    header = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = "".join(rows) or f'<tr><td colspan="{len(_COLUMNS)}">No probe has ended yet.</td></tr>'
    return (
        _HEAD.replace("{version}", html.escape(__version__))
        + f"<table><tr>{header}</tr>{body}</table></body></html>\n"
    )


def _row(key: JobKey, item: ProbeResult | ProbeSkip, now: float) -> str:
    ago = f"{now - item.finished_at:.0f}s ago"
    if isinstance(item, ProbeSkip):
        cells = [*key.labels(), ago, "skipped", item.detail, "", "", "", ""]
        return _tr(cells, "")
    outcome = item.outcome
    server = outcome.server
    rate = ""
    if server and server.eval_count and server.eval_s:
        rate = f"{server.eval_count / server.eval_s:.1f}"
    checks = ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in item.checks.items())
    cells = [
        *key.labels(),
        ago,
        "ok" if outcome.success else str(outcome.reason),
        outcome.detail,
        f"{outcome.duration_s:.3f}s",
        "" if outcome.ttft_s is None else f"{outcome.ttft_s:.3f}s",
        rate,
        checks,
    ]
    return _tr(cells, "ok" if outcome.success else "fail")


def _tr(cells: list[str], css: str) -> str:
    tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
    return f'<tr class="{css}">{tds}</tr>'
