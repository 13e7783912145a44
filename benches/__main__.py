"""`benches/run` (python -m benches): run the benchmarks and write RESULTS.md.

    benches/run                      full run (~1.5 h), writes benches/RESULTS.md
    benches/run --quick              tiny sizes, seconds; prints the report
    benches/run --only footprint     one benchmark; the others keep their last results
    benches/run --render-only        rewrite RESULTS.md from benches/results/*.json

Full mode runs in phases (PHASES): the timing-sensitive benchmarks alone, then the footprint
soak beside the light cost benchmark, then the scheduler alone.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from benches import common, cost_to_ollama, fidelity, footprint, scheduler, scrape_cost
from benches.report import render

BENCHES: dict[str, ModuleType] = {
    "fidelity": fidelity,
    "scrape_cost": scrape_cost,
    "cost_to_ollama": cost_to_ollama,
    "footprint": footprint,
    "scheduler": scheduler,
}
# Timing-sensitive ones alone, then the soak beside the light cost benchmark, then the scheduler.
PHASES = (
    ("fidelity",),
    ("scrape_cost",),
    ("footprint", "cost_to_ollama"),
    ("scheduler",),
)
HERE = Path(__file__).resolve().parent


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benches/run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHES),
        help="run only this benchmark (repeatable); others keep their saved results",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: rewrite RESULTS.md from the saved results (e.g. after editing "
        "benches/findings.md)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where RESULTS.md and results/*.json go (default: benches/ in full mode; "
        "quick mode only prints unless given)",
    )
    return parser.parse_args(argv)


def _run_one(name: str, quick: bool) -> common.Section:
    module = BENCHES[name]
    params = module.QUICK if quick else module.FULL
    started = datetime.now(UTC)
    t0 = time.monotonic()
    print(f"[{started:%H:%M:%S}] {name}: started", file=sys.stderr, flush=True)
    try:
        section: common.Section = module.run(params, "quick" if quick else "full")
    except Exception:
        section = common.Section(name, name, "quick" if quick else "full")
        section.add("error", "the benchmark raised", "runs", False)
        section.notes.append("```\n" + traceback.format_exc() + "```")
    if quick:  # tiny sizes say nothing about the targets: keep the figures, drop the verdicts
        for figure in section.figures:
            figure.ok = None if not figure.name.startswith("error") else figure.ok
    section.started = f"{started:%Y-%m-%d %H:%M:%S} UTC"
    section.wall_s = time.monotonic() - t0
    print(f"{name}: done in {section.wall_s:.0f} s", file=sys.stderr, flush=True)
    return section


def _concurrently(names: list[str], quick: bool) -> list[common.Section]:
    results: dict[str, common.Section] = {}

    def worker(name: str) -> None:
        results[name] = _run_one(name, quick)

    threads = [threading.Thread(target=worker, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [results[n] for n in names]


def run_all(names: list[str], quick: bool) -> list[common.Section]:
    if quick:
        return _concurrently(names, quick)
    sections: list[common.Section] = []
    for phase in PHASES:
        wanted = [n for n in phase if n in names]
        if wanted:
            sections += _concurrently(wanted, quick)
    return sections


def _save(out: Path, sections: list[common.Section], meta: dict[str, Any]) -> dict[str, Any]:
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    for section in sections:
        payload = {"meta": meta, "section": section.to_json()}
        (results / f"{section.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    saved = {}
    for name in BENCHES:
        path = results / f"{name}.json"
        if path.exists():
            saved[name] = json.loads(path.read_text())
    return saved


def main(argv: list[str] | None = None, write: Callable[[str], Any] = sys.stdout.write) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    names = args.only or list(BENCHES)
    command = "benches/run" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    meta = common.machine() | {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": command,
    }
    sections = [] if args.render_only else run_all(names, args.quick)
    out = args.out if args.out is not None else (None if args.quick else HERE)
    if out is None:
        saved = {s.name: {"meta": meta, "section": s.to_json()} for s in sections}
    else:
        saved = _save(out, sections, meta)
    text = render(saved, findings=HERE / "findings.md")
    if out is not None:
        (out / "RESULTS.md").write_text(text, encoding="utf-8")
    write(text)
    missed = [f for s in sections for f in s.figures if f.ok is False]
    return 1 if any(f.name.startswith("error") for f in missed) else 0


if __name__ == "__main__":
    sys.exit(main())
