"""`ollama-probe-exporter probe`: one round of every job now, as the report's comparison table.

This is the hand-run end-to-end test the project grew out of, as one command: it exits
non-zero when a probe or an answer check failed, or when a target's models could not be listed.
It runs the jobs with the exporter's own ProbeRunner and records them in a ResultStore of its
own, as the scheduler does; it serves no series, so it has no exposition.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.config import Config, PromptConfig
from exporter.gpu import GpuReader
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.runner import JobSpec, ProbeRunner
from exporter.probing.targets import Target, http_clients
from exporter.redact import printable
from exporter.results import ResultStore

# Said when a listing failed without leaving a reason; Target records one for every failure.
_UNKNOWN_REASON = "models could not be listed"


@dataclass(frozen=True)
class TargetState:
    """Whether a target's models could be listed, and if not, why (redacted)."""

    name: str
    up: bool
    error: str | None = None


@dataclass(frozen=True)
class Round:
    """What one round produced: every target's state and the results of its models."""

    targets: list[TargetState]
    results: list[ProbeResult | ProbeSkip]

    @property
    def ok(self) -> bool:
        def good(item: ProbeResult | ProbeSkip) -> bool:
            return isinstance(item, ProbeSkip) or (
                item.outcome.success and all(item.checks.values())
            )

        return all(t.up for t in self.targets) and all(good(r) for r in self.results)


def list_targets(config: Config) -> tuple[list[TargetState], list[Target]]:
    """Every target's state after one listing of its models, and the targets that answered."""
    states, listed = [], []
    for target_config in config.targets:
        target = Target(target_config, *http_clients(target_config))
        if not target.refresh_inventory(config, config.probe.timeout):
            states.append(TargetState(target.name, False, target.listing_error or _UNKNOWN_REASON))
            continue
        states.append(TargetState(target.name, True))
        listed.append(target)
    return states, listed


def job_spec(config: Config, target: Target, model: str, prompt: PromptConfig) -> JobSpec:
    """The job of one (target, model, prompt), with the interval the configuration gives it."""
    return JobSpec(
        JobKey(target.name, model, prompt.id), target, prompt, config.interval_of(prompt)
    )


def run_round(config: Config, gpu: GpuReader) -> Round:
    """Probe every (target, model, prompt) once, one after another."""
    runner = ProbeRunner(config, gpu)
    store = ResultStore()
    states, listed = list_targets(config)
    for target in listed:
        inventory = target.inventory
        for model in inventory.models if inventory else {}:
            for prompt in config.prompts:
                spec = job_spec(config, target, model, prompt)
                store.open(spec.key, prompt.checks.names(), energy=runner.measures_energy(spec))
                result = runner.run(spec, spec.interval_s)
                if result is not None:  # None: cancelled, which a one-shot round never does
                    store.record(result)
    return Round(states, list(store.latest().values()))


def rows(results: Sequence[ProbeResult | ProbeSkip]) -> list[dict[str, Any]]:
    """One dict per job with the report's columns.

    Relative speed compares the models of one target on one prompt: another server's hardware
    says nothing about which of this server's models is faster.
    """
    fastest: dict[tuple[str, str], float] = {}
    for r in results:
        if isinstance(r, ProbeResult) and r.outcome.success:
            group = (r.key.target, r.key.prompt)
            fastest[group] = min(fastest.get(group, r.outcome.duration_s), r.outcome.duration_s)
    return [_row(r, fastest) for r in results]


def _row(item: ProbeResult | ProbeSkip, fastest: dict[tuple[str, str], float]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": item.key.target,
        "model": item.key.model,
        "prompt": item.key.prompt,
    }
    if isinstance(item, ProbeSkip):
        return {**base, "result": f"skipped ({item.reason})"}
    outcome, reported = item.outcome, item.outcome.reported
    rate = None
    if reported and reported.eval_count and reported.eval_s:
        rate = reported.eval_count / reported.eval_s
    energy = _energy_joules(item) if outcome.success else None
    per_token = None
    if energy is not None and reported and reported.eval_count:
        per_token = energy / reported.eval_count
    relative = None
    if outcome.success and outcome.duration_s > 0:
        relative = fastest[(item.key.target, item.key.prompt)] / outcome.duration_s
    return {
        **base,
        "result": "ok" if outcome.success else str(outcome.reason),
        "detail": outcome.detail,
        "duration_s": outcome.duration_s,
        "ttft_s": outcome.ttft_s,
        "load_s": reported.load_s if reported else None,
        "tokens": reported.eval_count if reported else None,
        "tokens_per_s": rate,
        "chars": item.response_characters if outcome.success else None,
        "words": item.response_words if outcome.success else None,
        "vram_bytes": item.vram_bytes,
        "energy_j": energy,
        "energy_j_per_token": per_token,
        "cold_start": item.cold_start,
        "checks": dict(item.checks),
        "relative_speed": relative,
    }


def _energy_joules(result: ProbeResult) -> float | None:
    """The GPUs' energy during the probe, summed; None when no GPU had an energy counter."""
    joules = [u.energy_joules for u in result.gpu if u.energy_joules is not None]
    return sum(joules) if joules else None


def format_json(round_: Round) -> str:
    """The round as one JSON object: every target's state, and one item per job."""
    targets = [{"name": t.name, "up": t.up, "error": t.error} for t in round_.targets]
    document = {"targets": targets, "results": rows(round_.results)}
    return json.dumps(document, indent=2, ensure_ascii=False)


_COLUMNS = (
    "target",
    "model",
    "prompt",
    "result",
    "duration",
    "TTFT",
    "load",
    "tokens",
    "tok/s",
    "chars",
    "words",
    "VRAM",
    "energy",
    "J/token",
    "cold",
    "checks",
    "relative speed",
)


def format_table(round_: Round) -> str:
    """A plain-text table like the report's, one line per job, then a line per down target."""
    table = [list(_COLUMNS)] + [_cells(row) for row in rows(round_.results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    down = [t for t in round_.targets if not t.up]
    if down:
        lines.append("")
        lines += [f"target {printable(t.name)}: down ({printable(t.error or '')})" for t in down]
    return "\n".join(lines)


def _cells(row: dict[str, Any]) -> list[str]:
    def num(key: str, fmt: str, unit: str = "") -> str:
        value = row.get(key)
        return "" if value is None else format(value, fmt) + unit

    vram = row.get("vram_bytes")
    cold = row.get("cold_start")
    checks = row.get("checks") or {}
    cells = [
        row["target"],
        row["model"],
        row["prompt"],
        row["result"],
        num("duration_s", ".2f", "s"),
        num("ttft_s", ".2f", "s"),
        num("load_s", ".2f", "s"),
        num("tokens", "d"),
        num("tokens_per_s", ".1f"),
        num("chars", "d"),
        num("words", "d"),
        "" if vram is None else f"{vram / 2**20:.0f} MiB",
        num("energy_j", ".1f", " J"),
        num("energy_j_per_token", ".3f"),
        "" if cold is None else ("yes" if cold else "no"),
        " ".join(f"{k}:{'ok' if v else 'FAIL'}" for k, v in checks.items()),
        "" if row.get("relative_speed") is None else f"{row['relative_speed'] * 100:.0f}%",
    ]
    # Names come from the server and the config: a newline or tab would split or shift a row.
    return [printable(cell) for cell in cells]
