"""`ollama-probe-exporter compare`: which model to run, with the uncertainty of every figure.

Observations come from live rounds (the exporter's own probe code) or from what Prometheus
already holds; either way they go through the same analysis and the same document. The CLI
imports this module only for `compare`, so the exporter itself never needs the report extra.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from exporter.compare import prometheus_source as source
from exporter.compare.analysis import Report, analyse
from exporter.compare.jsondoc import render_json
from exporter.compare.markdown import render_markdown
from exporter.compare.rounds import Plan, Progress, run_rounds
from exporter.config import Config
from exporter.gpu import GpuReader
from exporter.probe_command import TargetState

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_T = TypeVar("_T")


@dataclass(frozen=True)
class Options:
    rounds: int
    per_visit: int
    prompts: tuple[str, ...]  # empty: every configured prompt
    targets: tuple[str, ...]  # empty: every configured target
    seed: int
    output: str  # markdown, html or json
    out: Path | None
    from_prometheus: str | None
    range: str


def compare(config: Config, options: Options, gpu: Callable[[Config], GpuReader]) -> int:
    """Run the comparison, write the document, and return the exit status."""
    print(f"compare: seed {options.seed}", file=sys.stderr)
    if options.from_prometheus:
        report = _from_prometheus(options)
    else:
        selected = _select(config, options)
        if selected is None:
            return EXIT_USAGE
        report = _live(selected, options, gpu)
    if report is None:
        return EXIT_FAILED
    _write(_render(report, options.output), options.out)
    return EXIT_OK if report.ok else EXIT_FAILED


def _select(config: Config, options: Options) -> Config | None:
    """The configuration narrowed to the asked-for prompts and targets; None after an error."""
    prompts = _pick("prompt", options.prompts, {p.id: p for p in config.prompts})
    targets = _pick("target", options.targets, {t.name: t for t in config.targets})
    if prompts is None or targets is None:
        return None
    return config.model_copy(update={"prompts": prompts, "targets": targets})


def _pick(kind: str, wanted: tuple[str, ...], known: dict[str, _T]) -> list[_T] | None:
    unknown = [w for w in wanted if w not in known]
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        print(
            f"ollama-probe-exporter compare: unknown --{kind} {', '.join(unknown)} "
            f"(the configuration has: {names})",
            file=sys.stderr,
        )
        return None
    return [known[w] for w in dict.fromkeys(wanted)] if wanted else list(known.values())


def _live(config: Config, options: Options, gpu: Callable[[Config], GpuReader]) -> Report:
    plan = Plan(options.rounds, options.per_visit, options.seed)
    reader = gpu(config)
    try:
        run = run_rounds(config, reader, plan, _progress_to(sys.stderr))
    finally:
        reader.close()
    figures, comparisons, recommendations = analyse(run.observations, options.seed)
    notes = [
        "Models were listed once, before the first round; each visit probed one model "
        f"{plan.per_visit} times per prompt back to back, in an order shuffled per round.",
    ]
    if run.skips:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(run.skips.items()))
        notes.append(f"Runs skipped without probing (probe.only_loaded): {skipped}.")
    return Report(
        method="Measured live with the exporter's own probe code.",
        rounds=plan.rounds,
        per_visit=plan.per_visit,
        seed=plan.seed,
        targets=run.targets,
        results=figures,
        comparisons=comparisons,
        recommendations=recommendations,
        notes=notes,
        generated_at=time.time(),
    )


def _from_prometheus(options: Options) -> Report | None:
    assert options.from_prometheus is not None
    try:
        record = source.read_prometheus(
            options.from_prometheus, source.parse_range(options.range), options.targets
        )
    except (source.PrometheusSourceError, ValueError) as exc:
        print(f"ollama-probe-exporter compare: {exc}", file=sys.stderr)
        return None
    wanted = set(options.prompts)
    observations = [o for o in record.observations if not wanted or o.prompt in wanted]
    figures, comparisons, recommendations = analyse(observations, options.seed)
    return Report(
        method=f"Rebuilt from the series Prometheus at {options.from_prometheus} holds "
        f"over the last {options.range}; nothing was probed for this report.",
        rounds=None,
        per_visit=None,
        seed=options.seed,
        targets=[TargetState(name, True) for name in record.targets],
        results=figures,
        comparisons=comparisons,
        recommendations=recommendations,
        notes=record.notes,
        generated_at=time.time(),
    )


def _render(report: Report, output: str) -> str:
    if output == "json":
        return render_json(report)
    if output == "html":
        from exporter.compare.html import render_html  # matplotlib: only for this output

        return render_html(report)
    return render_markdown(report)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out.write_text(text, encoding="utf-8")
    print(f"compare: wrote {out}", file=sys.stderr)


def _progress_to(stream: TextIO) -> Callable[[Progress], None]:
    """One line rewritten in place on a terminal; nothing when piped or redirected."""
    if not stream.isatty():
        return lambda _: None

    def show(p: Progress) -> None:
        eta = "-" if p.eta_s is None else _clock(p.eta_s)
        line = (
            f"round {p.round}/{p.rounds}  {p.visit}  {p.done}/{p.total} probes  "
            f"elapsed {_clock(p.elapsed_s)}  ETA {eta}"
        )
        end = "\n" if p.done == p.total else ""
        stream.write(f"\r\x1b[K{line}{end}")
        stream.flush()

    return show


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
