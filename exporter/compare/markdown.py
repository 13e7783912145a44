"""The comparison as Markdown, for people: the document's sections as headings, lists and tables."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.compare.analysis import Report
from exporter.compare.document import Section, Table, sections


def render_markdown(report: Report) -> str:
    lines: list[str] = []
    for section in sections(report):
        lines += _section(section)
    return "\n".join(lines).rstrip() + "\n"


def _section(s: Section) -> list[str]:
    lines = ["#" * s.level + " " + _inline(s.title), ""]
    for paragraph in s.paragraphs:
        lines += [_inline(paragraph), ""]
    if s.bullets:
        lines += [f"- {_inline(b)}" for b in s.bullets] + [""]
    for table in s.tables:
        lines += [*_table(table), ""]
    for note in s.notes:
        lines += [_inline(note), ""]
    return lines


def _table(t: Table) -> list[str]:
    rule = "|" + "---|" * len(t.header)
    return [_row(t.header), rule, *(_row(r) for r in t.rows)]


def _row(cells: Sequence[str]) -> str:
    # A `|` from a model name or an error would start a new column.
    return "| " + " | ".join(_inline(c).replace("|", "\\|") for c in cells) + " |"


def _inline(text: str) -> str:
    """One line: a line break in a server's error text would end a list item or a paragraph."""
    return " ".join(text.split())
