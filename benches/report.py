"""RESULTS.md from the saved sections: machine, a summary of every target, then the details."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benches.common import Section

ORDER = (
    "fidelity",
    "scrape_cost",
    "footprint",
    "scheduler",
    "cost_to_ollama",
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _machine(metas: list[dict[str, str]]) -> list[str]:
    keys: tuple[str, ...] = ("date", "command", "exporter commit", "cpu", "nproc", "ram")
    keys += ("kernel", "python", "allocator", "libraries", "load")
    labels = {"load": "load average at start", "nproc": "cores (nproc)"}
    rows = []
    for key in keys:
        values = sorted({m.get(key, "") for m in metas})
        rows.append([labels.get(key, key), "; ".join(v for v in values if v)])
    return _table(["", "value"], rows)


def _summary(sections: list[Section]) -> list[str]:
    rows = [
        [s.name, f.name, f.value, f.target, f.verdict]
        for s in sections
        for f in s.figures
        if f.ok is not None
    ]
    return _table(["benchmark", "figure", "measured", "target", "verdict"], rows)


def _section(section: Section, meta: dict[str, str]) -> list[str]:
    lines = [
        f"## {section.title} (`{section.name}`)",
        "",
        f"Run {section.started}, {section.mode} mode, {section.wall_s:.0f} s wall, "
        f"by `{meta.get('command', '')}`.",
        "",
    ]
    rows = [[f.name, f.value, f.target, f.verdict] for f in section.figures]
    lines += _table(["figure", "measured", "target", "verdict"], rows)
    for caption, header, table_rows in section.tables:
        lines += ["", f"*{caption}*", "", *_table(header, table_rows)]
    for note in section.notes:
        lines += ["", note]
    return [*lines, ""]


def render(saved: dict[str, dict[str, Any]], findings: Path | None = None) -> str:
    names = [n for n in ORDER if n in saved]
    sections = [Section.from_json(dict(saved[n]["section"])) for n in names]
    metas = [saved[n]["meta"] for n in names]
    lines = [
        "# Benchmark results",
        "",
        "Written by `benches/run` (see docs/benchmarks.md). Timings are medians and p99s "
        "(nearest rank: the p99 of 100 runs is the 99th smallest) with their run counts (n). "
        "Every comparison was measured side by side in the same run.",
        "",
        "## Machine and run",
        "",
        *_machine(metas),
        "",
        "## Targets",
        "",
        *_summary(sections),
        "",
    ]
    for section, meta in zip(sections, metas, strict=True):
        lines += _section(section, meta)
    if findings is not None and findings.exists():
        lines += [findings.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines)
