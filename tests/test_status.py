"""The status page rendered from hand-made snapshots, read back through an HTML parser.

What an on-call engineer must be able to read off it: a down target at the top and on every
row of its jobs, result and reason apart, the failure streak, a failed check with the answer,
times in UTC with their age, the last reload, and nothing a hostile name could inject.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from exporter import __version__
from exporter.config import load_config
from exporter.gpu import DisabledGpuReader
from exporter.probing.health import TargetHealth
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.probe import BackendTimings, ProbeOutcome, Reason
from exporter.results import FailureStreak, JobState
from exporter.service import ReloadOutcome, Service
from exporter.web.status import EXCERPT_CHARS, REFRESH_S, StatusSnapshot, render_status, snapshot_of
from tests.exporter_process import wait_until
from tests.test_hardening_support import closed_port

NOW = 1_764_863_077.0  # 2025-12-04 15:44:37 UTC
SCRIPT = "<script>alert('x')</script>"
UP = TargetHealth(
    up=True,
    since=NOW - 3_600,
    version="0.32.15",
    listed_at=NOW - 60,
    listed_models=3,
    probed_models=2,
)
DOWN = TargetHealth(
    up=False,
    since=NOW - 125,
    version="0.32.15",
    error="ConnectError: [Errno 111] Connection refused",
    error_at=NOW - 5,
    failed_checks=9,
)


# --- reading the page back ----------------------------------------------------------------------


@dataclass
class Row:
    css: set[str]
    target: str | None
    cells: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """Tables by id as rows of cell texts (entities decoded), plus every element's text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[Row]] = {}
        self.ids: dict[str, str] = {}
        self.tags: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self._table: str | None = None
        self._open: list[tuple[str, str]] = []  # (tag, id) of elements with an id
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "meta":
            self.meta.append(a)
        if a.get("id"):
            self._open.append((tag, a["id"] or ""))
            self.ids[a["id"] or ""] = ""
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append(
                Row(set((a.get("class") or "").split()), a.get("data-target"))
            )
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].cells.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, element in self._open:
            self.ids[element] += data

    def rows(self, table: str) -> list[dict[str, str]]:
        """Data rows as {column header: cell text}."""
        header, *rows = self.tables[table]
        return [dict(zip(header.cells, r.cells, strict=True)) for r in rows if len(r.cells) > 1]

    def row_of(self, table: str, **wanted: str) -> tuple[Row, dict[str, str]]:
        header, *rows = self.tables[table]
        for r in rows:
            cells = dict(zip(header.cells, r.cells, strict=False))
            if wanted.items() <= cells.items():
                return r, cells
        raise AssertionError(f"no row {wanted} in {table}: {[r.cells for r in rows]}")


def result(
    key: JobKey,
    *,
    reason: Reason | None = None,
    detail: str = "ok",
    answer: str = "",
    checks: dict[str, bool] | None = None,
    at: float = NOW - 30,
    cold: bool | None = False,
    reported: BackendTimings | None = None,
) -> ProbeResult:
    outcome = ProbeOutcome(
        reason=reason,
        detail=detail,
        duration_s=2.5 if reason is None else 0.012,
        ttft_s=0.25 if reason is None else None,
        answer=answer,
        reported=reported,
    )
    return ProbeResult(
        key, outcome, finished_at=at, interval_s=300.0, cold_start=cold, checks=checks or {}
    )


def state(item: ProbeResult | ProbeSkip, streak: FailureStreak | None = None) -> JobState:
    return JobState(item, streak or FailureStreak())


def snap(
    jobs: dict[JobKey, JobState],
    targets: list[tuple[str, TargetHealth]] | None = None,
    reload: ReloadOutcome | None = None,
) -> Page:
    targets = [("local", UP)] if targets is None else targets
    return Page(render_status(StatusSnapshot(NOW, targets, jobs, reload)))


GEMMA = JobKey("local", "gemma3:12b", "avocado_pl")
MISTRAL = JobKey("local", "mistral:7b", "liveness")


# --- the page as a whole -------------------------------------------------------------------------


def test_the_page_refreshes_itself_and_says_when_it_was_rendered() -> None:
    page = snap({})
    assert {"http-equiv": "refresh", "content": str(REFRESH_S)} in page.meta
    assert page.ids["as-of"] == "2025-12-04 15:44:37 UTC"
    assert "script" not in page.tags  # no JavaScript needed
    assert page.rows("jobs") == []
    assert "No probe has ended yet." in page.tables["jobs"][1].cells[0]
    text = render_status(StatusSnapshot(NOW, [], {}))
    assert f"Version {__version__}." in text
    for link in ('href="/metrics"', 'href="/-/healthy"', 'href="/-/ready"'):
        assert link in text


def test_all_up_and_passing_says_ok() -> None:
    ok = result(GEMMA, answer="Awokado to potas i błonnik.", checks={"min_words": True})
    page = snap({GEMMA: state(ok)})
    assert page.ids["summary"] == "OK: 1 targets up, 1 jobs ok, 0 skipped"
    skip = ProbeSkip(MISTRAL, "not_loaded", "skipped: not_loaded", NOW - 10, 300.0)
    page = snap({GEMMA: state(ok), MISTRAL: state(skip)})
    assert page.ids["summary"] == "OK: 1 targets up, 1 jobs ok, 1 skipped"


def test_a_down_target_is_down_at_the_top_and_on_every_row_of_its_jobs() -> None:
    """Zero-config with Ollama gone: the last probes were fine, but nothing may look healthy."""
    ok = result(GEMMA, at=NOW - 200)
    page = snap(
        {GEMMA: state(ok), MISTRAL: state(result(MISTRAL, at=NOW - 190))}, [("local", DOWN)]
    )

    assert page.ids["summary"].startswith("PROBLEM: 1 of 1 targets DOWN (local)")
    [target] = page.rows("targets")
    assert target["status"] == "DOWN"
    assert target["in this state since"] == "2025-12-04 15:42:32 UTC | 2 min 5 s ago"
    assert target["failed health checks in a row"] == "9"
    assert target["last health error"] == (
        "ConnectError: [Errno 111] Connection refused | 2025-12-04 15:44:32 UTC | 5 s ago"
    )
    assert target["Ollama version"] == "0.32.15"
    assert target["last model listing"] == "never, so far"
    for row in page.tables["jobs"][1:]:
        assert "target-down" in row.css and "ok" in row.css
    assert {r["result"] for r in page.rows("jobs")} == {"TARGET DOWN (last result: OK)"}


def test_an_up_target_shows_version_since_and_its_last_listing() -> None:
    page = snap({}, [("local", UP), ("fresh", TargetHealth())])
    up, fresh = page.rows("targets")
    assert (up["status"], up["in this state since"]) == (
        "UP",
        "2025-12-04 14:44:37 UTC | 1 h 0 min ago",
    )
    assert up["last model listing"] == (
        "3 models listed, 2 probed | 2025-12-04 15:43:37 UTC | 1 min 0 s ago"
    )
    assert up["last health error"] == "—"
    assert fresh["status"] == "UNKNOWN: no health check yet"
    assert fresh["Ollama version"] == "unknown"
    assert page.ids["summary"].startswith("STARTING")


# --- one job ----------------------------------------------------------------------------------


def test_a_good_probe_shows_its_figures_and_no_ok_ok() -> None:
    reported = BackendTimings(load_s=3.2, prompt_tokens=26, eval_count=100, eval_s=2.0)
    answer = "Awokado ma dużo potasu."
    ok = result(GEMMA, answer=answer, checks={"min_words": True}, cold=True, reported=reported)
    row_tag, row = snap({GEMMA: state(ok)}).row_of("jobs", model="gemma3:12b")
    assert row_tag.css == {"ok"}
    assert row["ended"] == "2025-12-04 15:44:07 UTC | 30 s ago"
    assert (row["result"], row["reason, detail"]) == ("OK", "—")
    assert row["failing"] == "—"
    assert row["duration"] == "2.500 s | first token 0.250 s | 50.0 tokens/s"
    assert row["residency, load time"] == "cold start, 3.200 s"
    assert row["answer"] == (
        f"100 tokens (26 prompt tokens) | {len(answer)} characters, {len(answer.split())} words"
    )
    assert row["checks"] == "min_words passed"


def test_a_failed_probe_shows_reason_detail_and_streak_apart() -> None:
    failed = result(MISTRAL, reason=Reason.CONNECT, detail="ConnectError: refused", cold=None)
    streak = FailureStreak(count=4, since=NOW - 900)
    row_tag, row = snap({MISTRAL: state(failed, streak)}).row_of("jobs", model="mistral:7b")
    assert "fail" in row_tag.css
    assert (row["result"], row["reason, detail"]) == (
        "PROBE FAILED",
        "connect | ConnectError: refused",
    )
    assert row["failing"] == (
        "4 failed probes in a row, since 2025-12-04 15:29:37 UTC | 15 min 0 s ago"
    )
    assert row["residency, load time"] == "residency unknown"
    assert row["checks"] == "not run (no answer)"
    assert row["answer"] == "—"


def test_a_failed_check_is_failed_and_shows_the_start_of_the_answer() -> None:
    answer = "Avocados are <em>great</em> & " + "x" * 600  # English, where Polish was expected
    bad = result(GEMMA, answer=answer, checks={"min_words": True, "language": False})
    page = snap({GEMMA: state(bad)})
    row_tag, row = page.row_of("jobs", model="gemma3:12b")
    assert "fail" in row_tag.css and "ok" not in row_tag.css
    assert (row["result"], row["reason, detail"]) == (
        "CHECK FAILED",
        "language | the answer is below",
    )
    assert row["checks"] == "min_words passed, language FAILED"
    assert row["failing"] == "—"  # the probe itself worked
    assert page.ids["summary"] == "PROBLEM: answer check FAILED for 1 of 1 jobs"
    excerpt = next(r for r in page.tables["jobs"] if "excerpt" in r.css)
    assert f"first {EXCERPT_CHARS} of {len(answer)} characters" in excerpt.cells[0]
    assert answer[:EXCERPT_CHARS] in excerpt.cells[0]
    assert answer[: EXCERPT_CHARS + 1] not in excerpt.cells[0]
    assert "em" not in page.tags  # the answer's markup is text, not markup


def test_a_skip_is_neither_ok_nor_failed() -> None:
    skip = ProbeSkip(GEMMA, "not_loaded", "skipped: not_loaded", NOW - 10, 300.0)
    row_tag, row = snap({GEMMA: state(skip, FailureStreak(2, NOW - 700))}).row_of("jobs")
    assert row_tag.css == {"skip"}
    assert (row["result"], row["reason, detail"]) == (
        "SKIPPED",
        "not_loaded | skipped: not_loaded",
    )
    assert row["failing"].startswith("2 failed probes in a row")


def test_every_value_is_escaped() -> None:
    hostile = JobKey(target=f"t{SCRIPT}", model=f'm"{SCRIPT}', prompt="p&q")
    failed = result(hostile, reason=Reason.STREAM_ERROR, detail=f"error: {SCRIPT} <b>bold</b>")
    checked = result(GEMMA, answer=f"answer {SCRIPT}", checks={f"c{SCRIPT}": False})
    skip = ProbeSkip(MISTRAL, "not_loaded", f"skipped: {SCRIPT}", NOW - 10, 300.0)
    health = dataclasses.replace(DOWN, version=SCRIPT, error=f"HTTP 500 {SCRIPT}")
    text = render_status(
        StatusSnapshot(
            NOW,
            [(f"t{SCRIPT}", health), ("local", UP)],
            {hostile: state(failed), GEMMA: state(checked), MISTRAL: state(skip)},
            ReloadOutcome(NOW, f"bad {SCRIPT}"),
        )
    )
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "m&quot;&lt;script&gt;" in text and "p&amp;q" in text
    # Escaped, the values still read back exactly, in their own cells.
    page = Page(text)
    _, row = page.row_of("jobs", model=f'm"{SCRIPT}')
    assert (row["target"], row["prompt"], row["reason, detail"]) == (
        f"t{SCRIPT}",
        "p&q",
        f"stream_error | error: {SCRIPT} <b>bold</b>",
    )
    assert page.row_of("jobs", model="gemma3:12b")[1]["checks"] == f"c{SCRIPT} FAILED"
    target_tag, target = page.row_of("targets", target=f"t{SCRIPT}")
    assert target_tag.target == f"t{SCRIPT}"  # the data attribute survives its quotes
    assert (target["Ollama version"], target["status"]) == (SCRIPT, "DOWN")
    assert f"HTTP 500 {SCRIPT}" in target["last health error"]
    assert f"bad {SCRIPT}" in page.ids["reload"]
    assert f"answer {SCRIPT}" in page.ids["jobs"]


# --- reloads ----------------------------------------------------------------------------------


def test_reload_state() -> None:
    assert snap({}).ids["reload"] == "No reload since the exporter started."
    ok = snap({}, reload=ReloadOutcome(NOW - 60)).ids["reload"]
    assert ok == "Last reload OK at 2025-12-04 15:43:37 UTC (1 min 0 s ago)."
    error = f"config.yaml: probe.timeout: 'soon' is not a duration\nline 2 {SCRIPT}"
    failed = snap({}, reload=ReloadOutcome(NOW - 5, error)).ids["reload"]
    assert failed.startswith("Last reload FAILED at 2025-12-04 15:44:32 UTC (5 s ago);")
    assert "previous configuration is still running" in failed
    assert error in failed


def test_the_running_service_feeds_the_page(tmp_path: Path) -> None:
    """snapshot_of a real Service: a target that refuses connections shows DOWN, and both
    outcomes of a reload are recorded with their time and error."""
    path = tmp_path / "exporter.yaml"
    good = textwrap.dedent(
        f"""\
        targets: [{{name: gone, url: "http://127.0.0.1:{closed_port()}"}}]
        prompts: [{{id: liveness, text: hi, interval: 60s}}]
        probe: {{timeout: 2s, health_interval: 300ms}}
        gpu: {{enabled: false}}
        """
    )
    path.write_text(good, encoding="utf-8")
    service = Service(load_config(path), path, DisabledGpuReader())
    service.start()
    try:
        down = wait_until(
            lambda: (s := snapshot_of(service)).targets[0][1].up is False and s,
            10,
            "the refused target to be down",
        )
        assert down.targets[0][0] == "gone" and down.reload is None
        assert "PROBLEM: 1 of 1 targets DOWN (gone)" in render_status(down)

        before = time.time()
        path.write_text(good.replace("300ms", "soon"), encoding="utf-8")
        outcome = service.reload()
        failed = snapshot_of(service).reload
        assert outcome.error is not None and failed is not None
        assert (failed.ok, failed.error) == (False, outcome.error) and failed.at >= before

        path.write_text(good, encoding="utf-8")
        assert service.reload().ok
        ok = snapshot_of(service).reload
        assert ok is not None and (ok.ok, ok.error) == (True, None) and ok.at >= failed.at
    finally:
        service.stop()
