"""The comparison as one self-contained HTML file: the document's sections, plus charts.

The sections come from `document.sections`, the same the Markdown renderer uses, so the two
outputs cannot disagree; every piece of text is escaped here, since model, target and error
names come from servers and configs. Each summary section gets one inline SVG made with
matplotlib: box plots of warm durations, time to first token and tokens/s per model. Glyphs
are drawn as paths and nothing is linked, so the file reads the same offline and on any
machine, and the same report renders to the same bytes.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from exporter.compare.analysis import ModelFigures, Report
from exporter.compare.document import Section, Table, sections

STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.45; color: #1f1f1f;
  max-width: 90rem; margin: 1.5rem auto; padding: 0 1rem; }
h1, h2, h3 { line-height: 1.2; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.75rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.5rem; text-align: left;
  vertical-align: top; }
th { background: #efefef; }
tbody tr:nth-child(even) { background: #f8f8f8; }
td { font-variant-numeric: tabular-nums; }
code { background: #efefef; padding: 0 0.2rem; border-radius: 0.2rem; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #444; max-width: 60rem; }
"""

# (key in ModelFigures.samples, panel title)
PANELS = (
    ("duration_s", "duration, warm (s)"),
    ("ttft_s", "time to first token, warm (s)"),
    ("tokens_per_second", "tokens/s, warm (server's decode rate; higher is faster)"),
)

# Fixed so the SVG ids, and so the whole file, are the same for the same report; glyphs as
# paths so the charts need no font on the reader's machine; no mathtext, since a model name
# may contain "$"; DejaVu Sans ships with matplotlib.
RC: dict[RcKeyType, object] = {
    "svg.hashsalt": "ollama-probe-exporter compare",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "text.parse_math": False,
}
# Without these matplotlib writes its version, a URL and the date into every SVG.
NO_METADATA: dict[str, str | None] = {
    "Creator": None,
    "Date": None,
    "Format": None,
    "Type": None,
}


def render_html(report: Report) -> str:
    """The report as a complete HTML5 document with its charts inline; no network needed."""
    parts = sections(report)
    body = "\n".join(_section(s, report, i) for i, s in enumerate(parts))
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(parts[0].title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _prose(text: str) -> str:
    """Escaped text with `backticked` words as code; the escaping comes first, so it holds."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _esc(text))


def _section(section: Section, report: Report, index: int) -> str:
    level = min(max(section.level, 1), 6)
    out = [f"<section>\n<h{level}>{_esc(section.title)}</h{level}>"]
    out += [f"<p>{_prose(p)}</p>" for p in section.paragraphs]
    if section.bullets:
        items = "".join(f"<li>{_esc(b)}</li>" for b in section.bullets)
        out.append(f"<ul>{items}</ul>")
    out += [_table(t) for t in section.tables]
    if section.charts_for is not None:
        target, prompt = section.charts_for
        out.append(_chart(target, prompt, _members(report, target, prompt), index))
    out += [f"<p>{_prose(n)}</p>" for n in section.notes]
    out.append("</section>")
    return "\n".join(out)


def _table(table: Table) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in table.header)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{rows}\n</tbody>\n</table></div>"
    )


def _members(report: Report, target: str, prompt: str) -> list[ModelFigures]:
    """The group's models in the summary table's order: fastest median duration first."""
    members = [f for f in report.results if (f.target, f.prompt) == (target, prompt)]
    return sorted(members, key=lambda f: f.duration.median if f.duration else float("inf"))


def _chart(target: str, prompt: str, members: Sequence[ModelFigures], index: int) -> str:
    prefix = f"chart{index}-"
    caption_id = f"{prefix}caption"
    svg = _svg(members, prefix).replace(
        "<svg ", f'<svg role="img" aria-labelledby="{caption_id}" ', 1
    )
    return (
        f'<figure>\n{svg}\n<figcaption id="{caption_id}">{_esc(_caption(target, prompt, members))}'
        "</figcaption>\n</figure>"
    )


def _caption(target: str, prompt: str, members: Sequence[ModelFigures]) -> str:
    models = "; ".join(_counts(f) for f in members) or "no models"
    return (
        f"Warm probes on {target}, prompt {prompt}: duration and time to first token in "
        "seconds, and the server's decode rate in tokens/s, as box plots (median line, box "
        "from the first to the third quartile, whiskers to the furthest value within 1.5 "
        "times the box, points beyond). Models fastest first: "
        f"{models}."
    )


def _counts(f: ModelFigures) -> str:
    ns = [len(f.samples.get(key, [])) for key, _ in PANELS]
    if len(set(ns)) == 1:
        return f"{f.model} (n={ns[0]})"
    return f"{f.model} (duration n={ns[0]}, TTFT n={ns[1]}, tokens/s n={ns[2]})"


def _svg(members: Sequence[ModelFigures], prefix: str) -> str:
    """One figure, three stacked panels, as SVG markup ready to inline in HTML."""
    with matplotlib.rc_context(RC):
        figure = _figure(members)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata=NO_METADATA)
    return _inlinable(buffer.getvalue(), prefix)


def _figure(members: Sequence[ModelFigures]) -> Figure:
    rows = max(len(members), 1)
    figure = Figure(figsize=(9.0, 3 * (0.9 + 0.32 * rows)), layout="constrained")
    axes = figure.subplots(len(PANELS), 1)
    for ax, (key, title) in zip(axes, PANELS, strict=True):
        # A model without values for a panel stays in it as an empty row labelled n=0, so the
        # rows line up across panels and the gap is visible rather than silent.
        values = [f.samples.get(key, []) for f in members]
        labels = [f"{f.model} (n={len(v)})" for f, v in zip(members, values, strict=True)]
        if members:
            ax.boxplot(values, orientation="horizontal", tick_labels=labels, widths=0.5)
        ax.invert_yaxis()  # the first (fastest) model on top, as in the table
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    return figure


def _inlinable(svg: str, prefix: str) -> str:
    """The SVG element alone: no XML prolog or DOCTYPE, no comments, ids unique in the page.

    Matplotlib names its elements figure_1, axes_1, and its glyphs by character, so two charts
    in one page would share ids; the prefix keeps every id and reference to it apart.
    """
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\bid="', f'id="{prefix}', svg)
    svg = svg.replace('xlink:href="#', f'xlink:href="#{prefix}')
    return svg.replace("url(#", f"url(#{prefix}").strip()
