"""The comparison as a document: sections of paragraphs and tables, every number with its n.

Markdown and HTML render the same sections, so the two outputs cannot disagree; HTML adds the
charts. Cells are plain text here; each renderer escapes them for its own format.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exporter.compare.analysis import Comparison, Kpi, ModelFigures, Report, Spread
from exporter.compare.stats import Figure, Interval

STATISTICS = (
    "Warm figures use successful probes of models that were resident when probed; cold starts "
    "are counted apart with their own load time. A median's 95 % interval is distribution-free "
    "(order statistics), so it holds at small n; below n = 6 there is none. A pair's ratio is "
    "median(slower) / median(faster) with a bootstrap 95 % interval, and the verdict is `faster` "
    "only when that interval excludes 1 and a Mann-Whitney U test gives p < 0.05. A KPI is "
    "`pass` or `fail` only when its whole 95 % interval is on one side of the limit; otherwise "
    "it is `undetermined`. Answer checks are passed/total probes with a Wilson 95 % interval."
)


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Section:
    title: str
    level: int = 2
    paragraphs: Sequence[str] = ()
    bullets: Sequence[str] = ()
    tables: Sequence[Table] = ()
    charts_for: tuple[str, str] | None = None  # (target, prompt) whose charts HTML adds
    notes: Sequence[str] = field(default=())  # paragraphs after the tables


def sections(report: Report) -> list[Section]:
    """The report, top to bottom: what ran, summary, recommendation, pairs, KPIs, models, GPU."""
    out = [_heading(report)]
    out += _summaries(report)
    out.append(Section("Recommendation", bullets=report.recommendations or ["no model measured"]))
    out.append(_pairs(report.comparisons))
    out.append(_kpis(report.results))
    out.append(Section("Per model"))
    out += [_model(f) for f in report.results]
    out.append(_gpu(report.results))
    out.append(
        Section("How these figures were obtained", paragraphs=[STATISTICS], bullets=report.notes)
    )
    return out


def _heading(report: Report) -> Section:
    when = datetime.datetime.fromtimestamp(report.generated_at, datetime.UTC)
    lines = [f"Generated {when:%Y-%m-%d %H:%M} UTC. {report.method}"]
    if report.rounds is not None:
        lines.append(
            f"{report.rounds} rounds, {report.per_visit} probes per prompt per visit, "
            f"visit order shuffled with seed {report.seed}."
        )
    down = [t for t in report.targets if not t.up]
    bullets = [f"target {t.name}: down ({t.error})" for t in down]
    return Section("Model comparison", level=1, paragraphs=lines, bullets=bullets)


def _summaries(report: Report) -> list[Section]:
    groups = sorted({(f.target, f.prompt) for f in report.results})
    return [
        _summary(t, p, [f for f in report.results if (f.target, f.prompt) == (t, p)])
        for t, p in groups
    ]


def _summary(target: str, prompt: str, members: list[ModelFigures]) -> Section:
    header = (
        "model",
        "n",
        "duration, median [95 % CI]",
        "TTFT, median [95 % CI]",
        "tokens/s, median [95 % CI]",
        "relative speed [95 % CI]",
        "checks passed",
        "failures",
        "cold starts",
    )
    ordered = sorted(members, key=lambda f: f.duration.median if f.duration else float("inf"))
    rows = [
        [
            f.model,
            str(f.n),
            _median(f.duration, "s"),
            _median(f.ttft, "s"),
            _median(f.tokens_per_second, ""),
            _relative(f),
            _checks(f),
            _failures(f),
            str(f.cold_starts),
        ]
        for f in ordered
    ]
    return Section(
        f"Summary: {target}, prompt {prompt}",
        tables=[Table(header, rows)],
        charts_for=(target, prompt),
    )


def _pairs(comparisons: list[Comparison]) -> Section:
    header = ("target", "prompt", "faster", "slower", "ratio [95 % CI]", "p", "verdict")
    rows = [
        [
            c.target,
            c.prompt,
            c.faster,
            c.slower,
            f"{c.ratio:.2f}x {_interval(c.ci95, '.2f')}",
            f"{c.p_value:.3g}",
            c.verdict,
        ]
        for c in comparisons
    ]
    if not rows:
        return Section("Pairs", paragraphs=["No pair of models had two warm probes each."])
    return Section("Pairs", tables=[Table(header, rows)])


def _kpis(results: list[ModelFigures]) -> Section:
    header = ("target", "model", "prompt", "KPI", "estimate [95 % CI]", "verdict", "why")
    rows = [
        [f.target, f.model, f.prompt, k.name, _kpi_value(k), k.verdict, k.why]
        for f in results
        for k in f.kpis
    ]
    return Section("KPIs", tables=[Table(header, rows)])


def _kpi_value(k: Kpi) -> str:
    if k.estimate is None:
        return "-"
    percent = "%" in k.name
    fmt: Callable[[float], str] = (
        (lambda v: f"{v * 100:.1f} %") if percent else (lambda v: f"{v:.2f} s")
    )
    ci = "" if k.ci95 is None else f" [{fmt(k.ci95[0])}, {fmt(k.ci95[1])}]"
    return fmt(k.estimate) + ci


def _model(f: ModelFigures) -> Section:
    bullets = [
        f"probes: {f.probes}; warm n = {f.n}; cold starts {f.cold_starts}"
        + (f"; residency unknown {f.unknown_residency}" if f.unknown_residency else ""),
        f"failures: {_failures(f) or 'none'}",
        f"answer checks: {_checks(f)}",
        f"characters: {_spread(f.characters)}; words: {_spread(f.words)}",
    ]
    header = ("figure", "n", "median", "mean", "p90", "median's 95 % CI")
    rows = [
        _figure_row(name, fig, unit)
        for name, fig, unit in (
            ("duration (warm)", f.duration, "s"),
            ("time to first token (warm)", f.ttft, "s"),
            ("tokens/s (warm, server's decode rate)", f.tokens_per_second, ""),
            ("load time (cold starts)", f.cold_load, "s"),
        )
        if fig is not None
    ]
    tables = [Table(header, rows)] if rows else []
    return Section(
        f"{f.model} on {f.target}, prompt {f.prompt}", level=3, bullets=bullets, tables=tables
    )


def _gpu(results: list[ModelFigures]) -> Section:
    header = (
        "target",
        "model",
        "prompt",
        "VRAM (Ollama)",
        "GPU peak memory",
        "GPU utilisation, mean",
    )
    rows = [
        [
            f.target,
            f.model,
            f.prompt,
            _mib(f.vram_bytes),
            _mib(f.gpu_peak_memory_bytes),
            "-"
            if f.gpu_utilization is None
            else f"{f.gpu_utilization.mean * 100:.0f} % (n={f.gpu_utilization.n})",
        ]
        for f in results
    ]
    note = (
        "VRAM is the model's own share as Ollama reports it (/api/ps), not the server "
        "process's; GPU figures are NVML readings during the model's probes, for targets "
        "marked as on this machine's GPUs."
    )
    return Section("GPU", tables=[Table(header, rows)], notes=[note])


def _figure_row(name: str, fig: Figure, unit: str) -> list[str]:
    fmt = _fmt(fig.median, unit)
    return [
        name,
        str(fig.n),
        fmt(fig.median),
        fmt(fig.mean),
        fmt(fig.p90),
        _interval(fig.ci95, "", fmt),
    ]


def _fmt(scale: float, unit: str) -> Callable[[float], str]:
    digits = 3 if abs(scale) < 1 else 2 if abs(scale) < 100 else 1
    return lambda v: f"{v:.{digits}f}{' ' + unit if unit else ''}"


def _median(fig: Figure | None, unit: str) -> str:
    if fig is None:
        return "-"
    fmt = _fmt(fig.median, unit)
    return f"{fmt(fig.median)} {_interval(fig.ci95, '', fmt)} (n={fig.n})"


def _interval(ci: Interval | None, spec: str, fmt: Callable[[float], str] | None = None) -> str:
    if ci is None:
        return "[n too small]"
    show = fmt or (lambda v: format(v, spec))
    return f"[{show(ci[0])}, {show(ci[1])}]"


def _relative(f: ModelFigures) -> str:
    if f.relative_speed is None:
        return "-"
    if f.relative_speed == 1.0 and f.relative_ci95 is None:
        return "100 % (fastest)"
    ci = f.relative_ci95
    bounds = "" if ci is None else f" [{ci[0] * 100:.0f}, {ci[1] * 100:.0f} %]"
    return f"{f.relative_speed * 100:.0f} %{bounds}"


def _checks(f: ModelFigures) -> str:
    c = f.checks
    if c.total == 0:
        return "no checks"
    ci = "" if c.ci95 is None else f" [{c.ci95[0] * 100:.0f}, {c.ci95[1] * 100:.0f} %]"
    return f"{c.passed}/{c.total}{ci}"


def _failures(f: ModelFigures) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(f.failures.items()))


def _spread(s: Spread | None) -> str:
    if s is None:
        return "-"
    return f"mean {s.mean:.0f}, sd {s.sd:.0f} (n={s.n})"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"
