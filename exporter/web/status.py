"""The status page at `/`: what an on-call engineer opens first during an incident.

One server-rendered page, no JavaScript: a summary line, the targets (up or down, since when,
why), every job's latest result with its failure streak and figures, and the last reload. It
reloads itself every 30 s. Every state is written out in words as well as coloured, and every
value is HTML-escaped. Rendering reads a StatusSnapshot only, so tests need no scheduler.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter import __version__
from exporter.probing.health import TargetHealth, duration_text
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.results import JobState
from exporter.service import ReloadOutcome, Service

REFRESH_S = 30
EXCERPT_CHARS = 500
NONE = "—"

_STYLE = """body{font-family:sans-serif;margin:1em}td,th{padding:3px 8px;text-align:left;
vertical-align:top;border-bottom:1px solid #ddd;max-width:30em;overflow-wrap:break-word}
table{border-collapse:collapse;font-size:90%}
.state{font-weight:bold}.age{color:#555;font-size:90%}.utc{white-space:nowrap}
.ok,.up{background:#e3f4e6}.fail,.down{background:#fbdcdc}.skip,.unknown{background:#eee}
.warn{background:#fff3cd}
tr.target-down{background:#fbdcdc}tr.target-down td.state::before{content:"\\26A0  "}
.summary{font-size:120%;font-weight:bold;padding:6px}
pre{white-space:pre-wrap;margin:4px 0;background:#fff;border:1px solid #ccc;padding:4px}"""
_JOB_COLUMNS = (
    "target",
    "model",
    "prompt",
    "ended",
    "result",
    "reason, detail",
    "failing",
    "duration",
    "residency, load time",
    "answer",
    "checks",
)
_TARGET_COLUMNS = (
    "target",
    "status",
    "in this state since",
    "Ollama version",
    "failed health checks in a row",
    "last health error",
    "last model listing",
)


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the page shows, read at one moment."""

    now: float
    targets: Sequence[tuple[str, TargetHealth]]
    jobs: Mapping[JobKey, JobState]
    reload: ReloadOutcome | None = None


def snapshot_of(service: Service, now: float | None = None) -> StatusSnapshot:
    """The running service's state for the page."""
    return StatusSnapshot(
        now=time.time() if now is None else now,
        targets=[(t.name, t.health.snapshot()) for t in service.targets],
        jobs=service.store.states(),
        reload=service.last_reload,
    )


def render_status(snap: StatusSnapshot) -> str:
    """The whole page; every value from the snapshot is escaped."""
    summary, css = _summary(snap)
    down = {name for name, health in snap.targets if health.up is False}
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>{_e(summary)} · Ollama probe exporter</title><style>{_STYLE}</style></head>"
        "<body><h1>Ollama probe exporter</h1>"
        f'<p>As of <time id="as-of">{_utc(snap.now)}</time>; this page reloads every '
        f"{REFRESH_S} s. Version {_e(__version__)}. "
        '<a href="/metrics">Metrics</a> · <a href="/-/healthy">Health</a> · '
        '<a href="/-/ready">Readiness</a></p>'
        f'<p id="summary" class="summary {css}">{_e(summary)}</p>'
        f"<h2>Targets</h2>{_targets_table(snap)}"
        f"<h2>Probe jobs</h2>{_jobs_table(snap, down)}"
        f"<h2>Configuration</h2>{_reload(snap)}</body></html>\n"
    )


# --- summary and sections --------------------------------------------------------------------


def _summary(snap: StatusSnapshot) -> tuple[str, str]:
    down = [name for name, health in snap.targets if health.up is False]
    failed = sum(1 for s in snap.jobs.values() if _result_of(s.latest) == "PROBE FAILED")
    checks = sum(1 for s in snap.jobs.values() if _result_of(s.latest) == "CHECK FAILED")
    problems = []
    if down:
        problems.append(f"{len(down)} of {len(snap.targets)} targets DOWN ({', '.join(down)})")
    if failed:
        problems.append(f"probe FAILED for {failed} of {len(snap.jobs)} jobs")
    if checks:
        problems.append(f"answer check FAILED for {checks} of {len(snap.jobs)} jobs")
    if problems:
        return "PROBLEM: " + "; ".join(problems), "fail"
    unknown = sum(1 for _, health in snap.targets if health.up is None)
    if unknown or not snap.jobs:
        return f"STARTING: {unknown} targets not checked yet, {len(snap.jobs)} results", "unknown"
    skipped = sum(1 for s in snap.jobs.values() if isinstance(s.latest, ProbeSkip))
    ok = len(snap.jobs) - skipped
    return f"OK: {len(snap.targets)} targets up, {ok} jobs ok, {skipped} skipped", "ok"


def _targets_table(snap: StatusSnapshot) -> str:
    if not snap.targets:
        return "<p>No target is configured.</p>"
    rows = "".join(_target_row(name, health, snap.now) for name, health in snap.targets)
    return f'<table id="targets">{_header(_TARGET_COLUMNS)}{rows}</table>'


def _target_row(name: str, health: TargetHealth, now: float) -> str:
    state, css = {
        True: ("UP", "up"),
        False: ("DOWN", "down"),
        None: ("UNKNOWN: no health check yet", "unknown"),
    }[health.up]
    error = NONE
    if health.error is not None and health.error_at is not None:
        error = f"{_e(health.error)}<br>{_when(health.error_at, now)}"
    listing = "never, so far"
    if health.listed_at is not None:
        listed = "model" if health.listed_models == 1 else "models"
        listing = (
            f"{health.listed_models} {listed} listed, {health.probed_models} probed"
            f"<br>{_when(health.listed_at, now)}"
        )
    cells = [
        _e(name),
        f'<td class="state">{state}</td>',
        NONE if health.since is None else _when(health.since, now),
        _e(health.version or "unknown"),
        str(health.failed_checks),
        error,
        listing,
    ]
    return _tr(cells, css, name)


def _jobs_table(snap: StatusSnapshot, down: set[str]) -> str:
    rows = [
        _job_rows(key, snap.jobs[key], snap.now, key.target in down) for key in sorted(snap.jobs)
    ]
    empty = f'<tr><td colspan="{len(_JOB_COLUMNS)}">No probe has ended yet.</td></tr>'
    body = "".join(rows) or empty
    return f'<table id="jobs">{_header(_JOB_COLUMNS)}{body}</table>'


def _reload(snap: StatusSnapshot) -> str:
    last = snap.reload
    if last is None:
        return '<p id="reload">No reload since the exporter started.</p>'
    when = f"at {_utc(last.at)} ({duration_text(snap.now - last.at)} ago)"
    if last.ok and last.warnings:
        notes = "".join(f"<li>{_e(w)}</li>" for w in last.warnings)
        return (
            f'<div id="reload" class="warn"><p><span class="state">Last reload OK, except what '
            f"needs a restart</span> {when}:</p><ul>{notes}</ul></div>"
        )
    if last.ok:
        return f'<p id="reload" class="ok"><span class="state">Last reload OK</span> {when}.</p>'
    return (
        f'<div id="reload" class="fail"><p><span class="state">Last reload FAILED</span> {when};'
        f" the previous configuration is still running:</p><pre>{_e(last.error or '')}</pre></div>"
    )


# --- one job ---------------------------------------------------------------------------------


def _job_rows(key: JobKey, state: JobState, now: float, target_down: bool) -> str:
    item = state.latest
    result = _result_of(item)
    css = {"OK": "ok", "SKIPPED": "skip"}.get(result, "fail")
    if target_down:
        # The last result may be from before the outage: the row must not look healthy.
        result, css = f"TARGET DOWN (last result: {result})", f"{css} target-down"
    cells = [
        *(_e(label) for label in key.labels()),
        _when(item.finished_at, now),
        f'<td class="state">{result}</td>',
        _reason_and_detail(item),
        _failing(state, now),
        *_figures(item),
    ]
    row = _tr(cells, css, key.target)
    if isinstance(item, ProbeResult) and _result_of(item) == "CHECK FAILED":
        row += _excerpt_row(item.outcome.answer)
    return row


def _result_of(item: ProbeResult | ProbeSkip) -> str:
    if isinstance(item, ProbeSkip):
        return "SKIPPED"
    if not item.outcome.success:
        return "PROBE FAILED"
    return "CHECK FAILED" if not all(item.checks.values()) else "OK"


def _reason_and_detail(item: ProbeResult | ProbeSkip) -> str:
    if isinstance(item, ProbeSkip):
        reason, detail = item.reason, item.detail
    elif item.outcome.reason is not None:
        reason, detail = item.outcome.reason.value, item.outcome.detail
    elif failed := [name for name, ok in item.checks.items() if not ok]:
        reason, detail = ", ".join(failed), "the answer is below"
    else:
        return NONE  # a success has no reason: "ok" twice said nothing
    return f'<b class="reason">{_e(reason)}</b><br>{_e(detail)}'


def _failing(state: JobState, now: float) -> str:
    streak = state.streak
    if streak.count == 0 or streak.since is None:
        return NONE
    probes = "probe" if streak.count == 1 else "probes"
    return f"{streak.count} failed {probes} in a row, since {_when(streak.since, now)}"


def _figures(item: ProbeResult | ProbeSkip) -> list[str]:
    if isinstance(item, ProbeSkip):
        return [NONE] * 4
    outcome, reported = item.outcome, item.outcome.reported
    duration = f"{outcome.duration_s:.3f} s"
    if outcome.ttft_s is not None:
        duration += f"<br>first token {outcome.ttft_s:.3f} s"
    if reported is not None and reported.eval_count and reported.eval_s:
        duration += f"<br>{reported.eval_count / reported.eval_s:.1f} tokens/s"
    cold = {True: "cold start", False: "warm", None: "residency unknown"}[item.cold_start]
    load_s = None if reported is None else reported.load_s
    load = cold if load_s is None else f"{cold}, {load_s:.3f} s"
    return [duration, load, _answer(item), _checks(item)]


def _answer(item: ProbeResult) -> str:
    lines = []
    reported = item.outcome.reported
    if reported is not None and reported.eval_count is not None:
        lines.append(f"{reported.eval_count} tokens ({reported.prompt_tokens or 0} prompt tokens)")
    if item.outcome.success:
        lines.append(f"{item.response_characters} characters, {item.response_words} words")
    return "<br>".join(lines) or NONE


def _checks(item: ProbeResult) -> str:
    if not item.outcome.success:
        return "not run (no answer)"
    if not item.checks:
        return NONE
    return ", ".join(
        f"{_e(name)} {'passed' if ok else 'FAILED'}" for name, ok in item.checks.items()
    )


def _excerpt_row(answer: str) -> str:
    excerpt = answer[:EXCERPT_CHARS]
    cut = f" of {len(answer)}" if len(answer) > EXCERPT_CHARS else ""
    text = f"The answer that failed its checks (first {len(excerpt)}{cut} characters):"
    return (
        f'<tr class="excerpt fail"><td colspan="{len(_JOB_COLUMNS)}">{text}'
        f"<pre>{_e(excerpt)}</pre></td></tr>"
    )


# --- helpers ---------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _when(at: float, now: float) -> str:
    """Absolute UTC time and age; the age alone goes stale when a screen is left open."""
    age = duration_text(now - at)
    return f'<span class="utc">{_utc(at)}</span><br><span class="age">{age} ago</span>'


def _header(columns: Sequence[str]) -> str:
    return "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"


def _tr(cells: Sequence[str], css: str, target: str | None = None) -> str:
    """A row of already escaped cells; a cell given as a whole <td> is kept as it is."""
    tds = "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
    data = "" if target is None else f' data-target="{_e(target)}"'
    return f'<tr class="{css}"{data}>{tds}</tr>'
