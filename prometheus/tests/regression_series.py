"""Writes prometheus/tests/regression_test.yml: OllamaModelRegressed on realistic probe series.

    python -m prometheus.tests.regression_series            # rewrite the test file
    python -m prometheus.tests.regression_series --check    # exit 1 if it is not current

Hand-written counters cannot show what the alert must ignore: jittered intervals and per-probe
noise. This script replays probes as the exporter counts them, from a fixed seed: every
`liveness` probe of a scenario ends 5 minutes plus up to 10 % jitter after the previous one
(so a 5-minute scrape grid sees an empty step now and then), answers 300 tokens ±10 % at
25 tokens/s ±10 % (Ollama's eval time) plus 0.6 s of prompt evaluation and overhead, and
adds its tokens, eval seconds and duration (histogram buckets) to the counters. Each scenario
is one promtool test on its own target, with 7 days 6 hours of history before its event at
174h, so that the baseline window (7d offset 6h) is full when the event happens. The
expectations (when the ticket opens and closes, its rendered description) are written below
by hand and checked by promtool; change a scenario and they must be checked again.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prometheus.runbook_links import RUNBOOK_BASE_URL

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "regression_test.yml"

STEP = 300  # seconds between samples (a 5-minute scrape grid: promtool `interval: 5m`)
EVENT_H = 174  # the scenario's event: 7 days 6 hours after the first sample
END_H = EVENT_H + 36  # the last sample
BUCKETS = ("5.0", "10.0", "20.0", "30.0", "45.0", "60.0", "90.0", "120.0", "180.0", "+Inf")
SOURCE = 'job="ollama-probe-exporter",instance="exporter:10434"'
MODEL = "gemma3:12b"
PROMPT = "liveness"


@dataclass(frozen=True)
class Probe:
    at: float  # seconds since the first sample, when the probe ended
    tokens: int
    eval_seconds: float
    duration: float


@dataclass(frozen=True)
class Scenario:
    """One target with one job; the functions shape each probe from its end time (hours)."""

    target: str
    seed: int  # of the jitter and noise: the expectations below hold for this seed
    name: str
    comment: str
    rate: Callable[[float], float] = lambda h: 25.0  # tokens per second of eval time
    tokens: Callable[[float], float] = lambda h: 300.0
    cold_start_h: float | None = None  # the first probe ending after this loads for 90 s
    interval: int = 300  # seconds between probes, before jitter
    prompt: str = "liveness"
    stops_at_h: float | None = None  # no probe ends after this
    version_changes_h: tuple[float, ...] = ()
    digest_changes_h: tuple[float, ...] = ()
    versions: tuple[tuple[float, str], ...] = ((0.0, "0.32.15"),)
    checks: list[dict[str, Any]] = field(default_factory=list)


def probes(scenario: Scenario) -> Iterator[Probe]:
    rng = random.Random(scenario.seed)
    at = rng.uniform(0, STEP)
    cold_start = scenario.cold_start_h
    while at <= END_H * 3600:
        hours = at / 3600
        if scenario.stops_at_h is not None and hours > scenario.stops_at_h:
            return
        tokens = round(scenario.tokens(hours) * rng.uniform(0.9, 1.1))
        eval_seconds = tokens / (scenario.rate(hours) * rng.uniform(0.9, 1.1))
        duration = eval_seconds + 0.6
        if cold_start is not None and hours >= cold_start:
            duration, cold_start = duration + 90.0, None
        yield Probe(at, tokens, round(eval_seconds, 3), round(duration, 3))
        at += scenario.interval * rng.uniform(1.0, 1.1)


def compress(values: list[str]) -> str:
    """promtool's expanding notation: `vxN` for N+1 equal values, `a+dxN` for whole steps."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i + 1
        if values[i] != "_" and "." not in values[i]:
            # A run of one integer step (counts, or a value that does not change).
            step = None
            while j < len(values) and values[j] != "_" and "." not in values[j]:
                diff = int(values[j]) - int(values[j - 1])
                if step is not None and diff != step:
                    break
                step, j = diff, j + 1
            n = j - i - 1
            if n == 0 or (n == 1 and step != 0):  # `a b` reads better than `a+dx1`
                out.append(values[i])
                j = i + 1
            elif step == 0:
                out.append(f"{values[i]}x{n}")
            else:
                out.append(f"{values[i]}+{step}x{n}" if step > 0 else f"{values[i]}{step}x{n}")
        else:
            while j < len(values) and values[j] == values[i]:
                j += 1
            out.append(values[i] if j == i + 1 else f"{values[i]}x{j - i - 1}")
        i = j
    return " ".join(out)


def number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def steps() -> range:
    return range(END_H * 3600 // STEP + 1)


def counter(events: list[tuple[float, float]]) -> str:
    """Cumulative sum of (time, amount) events as sampled at each step, created at 0."""
    values, total, i = [], 0.0, 0
    for step in steps():
        while i < len(events) and events[i][0] <= step * STEP:
            total += events[i][1]
            i += 1
        values.append(number(total))
    return compress(values)


def series(scenario: Scenario) -> list[dict[str, str]]:
    done = list(probes(scenario))
    job = f'{SOURCE},target="{scenario.target}",model="{MODEL}",prompt="{scenario.prompt}"'
    server = f'{SOURCE},target="{scenario.target}"'
    out = [
        ("ollama_probe_generated_tokens_total", job, counter([(p.at, p.tokens) for p in done])),
        ("ollama_probe_eval_seconds_total", job, counter([(p.at, p.eval_seconds) for p in done])),
        ("ollama_probe_duration_seconds_count", job, counter([(p.at, 1) for p in done])),
        ("ollama_probe_duration_seconds_sum", job, counter([(p.at, p.duration) for p in done])),
    ]
    for le in BUCKETS:
        bound = float("inf") if le == "+Inf" else float(le)
        hits = [(p.at, 1.0) for p in done if p.duration <= bound]
        out.append(("ollama_probe_duration_seconds_bucket", f'{job},le="{le}"', counter(hits)))
    last: list[str] = []
    for step in steps():
        ended = [p.at for p in done if p.at <= step * STEP]
        last.append(number(round(ended[-1])) if ended else "_")
    out.append(("ollama_probe_last_success_timestamp_seconds", job, compress(last)))
    out.append(("ollama_probe_interval_seconds", job, f"{scenario.interval}x{len(steps()) - 1}"))
    changes = [(h * 3600, 1.0) for h in scenario.version_changes_h]
    out.append(("ollama_server_version_changes_total", server, counter(changes)))
    digests = [(h * 3600, 1.0) for h in scenario.digest_changes_h]
    out.append(("ollama_model_changes_total", f'{server},model="{MODEL}"', counter(digests)))
    for i, (since, version) in enumerate(scenario.versions):
        until = scenario.versions[i + 1][0] if i + 1 < len(scenario.versions) else END_H + 1
        present = ["1" if since * 3600 <= s * STEP < until * 3600 else "_" for s in steps()]
        out.append(("ollama_build_info", f'{server},version="{version}"', compress(present)))
    return [{"series": f"{name}{{{labels}}}", "values": values} for name, labels, values in out]


def at(hours: float) -> str:
    """A promtool eval_time, `174h30m` for 174.5."""
    minutes = round(hours * 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes % 60 else f"{minutes // 60}h"


def silent(*hours: float) -> list[dict[str, Any]]:
    return [
        {"eval_time": at(h), "alertname": "OllamaModelRegressed", "exp_alerts": []} for h in hours
    ]


def fires(hours: float, target: str, description: str) -> dict[str, Any]:
    return {
        "eval_time": at(hours),
        "alertname": "OllamaModelRegressed",
        "exp_alerts": [
            {
                "exp_labels": {
                    "severity": "ticket",
                    "job": "ollama-probe-exporter",
                    "instance": "exporter:10434",
                    "target": target,
                    "model": MODEL,
                    "prompt": PROMPT,
                },
                "exp_annotations": {
                    "summary": (
                        f"{MODEL} on {target} answers {PROMPT} slower than in the week before"
                    ),
                    "description": description,
                    "runbook_url": f"{RUNBOOK_BASE_URL}#ollamamodelregressed",
                },
            }
        ],
    }


def every(start: float, stop: float, hours: float = 1.0) -> list[float]:
    out, h = [], start
    while h <= stop + 1e-9:
        out.append(h)
        h += hours
    return out


E = EVENT_H
SCENARIOS: list[Scenario] = [
    Scenario(
        target="noise",
        seed=1,
        name="noise of ±10 % in answer length and decode rate never opens a ticket",
        comment="nothing happens: the noise alone, over 8 days",
        checks=silent(*every(12, E, 6), *every(E, END_H, 0.5)),
    ),
    Scenario(
        target="upgrade",
        seed=2,
        name="an Ollama upgrade that drops the decode rate by 40 % opens a ticket naming it",
        comment="Ollama 0.32.15 -> 0.33.0 at 174h, decode rate 25 -> 15 tokens/s",
        rate=lambda h: 15.0 if h >= E else 25.0,
        version_changes_h=(E,),
        versions=((0, "0.32.15"), (E, "0.33.0")),
        checks=[
            *silent(*every(12, E + 3, 6), E + 3, E + 37 / 12),
            fires(
                E + 3.25,
                "upgrade",
                "The liveness probes of model gemma3:12b on target upgrade are 1.37 "
                "times slower over the last 6 hours than over the 7 days before. Decode"
                " rate: 73.09% of its baseline (18.2 vs 24.9 tokens/s). The server's "
                "Ollama version changed in that time (now 0.33.0).",
            ),
            fires(
                E + 12,
                "upgrade",
                "The liveness probes of model gemma3:12b on target upgrade are 1.63 "
                "times slower over the last 6 hours than over the 7 days before. Decode"
                " rate: 61.32% of its baseline (14.9 vs 24.3 tokens/s). Median "
                "duration: 134.9% of its baseline (20.42s vs 15.14s). The server's "
                "Ollama version changed in that time (now 0.33.0).",
            ),
        ],
    ),
    Scenario(
        target="verbose",
        seed=3,
        name="answers twice as long after a digest change move the median, not the decode rate",
        comment="the model is pulled again at 174h and answers 600 tokens instead of 300",
        tokens=lambda h: 600.0 if h >= E else 300.0,
        digest_changes_h=(E,),
        checks=[
            *silent(*every(12, E + 3, 6)),
            fires(
                E + 6,
                "verbose",
                "The liveness probes of model gemma3:12b on target verbose are 1.67 "
                "times slower over the last 6 hours than over the 7 days before. Median"
                " duration: 166.7% of its baseline (25s vs 15s). The model's digest "
                "changed in that time (pulled again, or updated).",
            ),
        ],
    ),
    Scenario(
        target="cold",
        seed=4,
        # The sparsest prompt, the largest weight of one probe: 12 probes in the 6 hours, the
        # minimum is 10. The cold start would move a mean duration by 30 % (a ticket), the
        # median not at all; Ollama's eval time excludes the load.
        name="a single cold start (one probe 90 s longer) never opens a ticket",
        comment=(
            "avocado_pl every 30 minutes (600 tokens); the first probe after 175h loads the"
            " model for 90 s (just under the 120 s timeout)"
        ),
        prompt="avocado_pl",
        interval=1800,
        tokens=lambda h: 600.0,
        cold_start_h=E + 1,
        checks=silent(*every(E, END_H, 0.5)),
    ),
    Scenario(
        target="stopped",
        seed=5,
        name="a model whose probes stopped does not keep its ticket open",
        comment="decode rate 25 -> 15 tokens/s at 174h, no probe ends after 179h",
        rate=lambda h: 15.0 if h >= E else 25.0,
        stops_at_h=E + 5,
        # The last probe ends just before 179h: 3 intervals later (15 minutes) the ticket goes.
        checks=[
            fires(
                E + 5,
                "stopped",
                "The liveness probes of model gemma3:12b on target stopped are 1.56 "
                "times slower over the last 6 hours than over the 7 days before. Decode"
                " rate: 64.12% of its baseline (16.0 vs 24.9 tokens/s). Median "
                "duration: 133.3% of its baseline (20s vs 15s). Neither the server's "
                "version nor the model's digest changed in that time.",
            ),
            fires(
                E + 5 + 10 / 60,
                "stopped",
                "The liveness probes of model gemma3:12b on target stopped are 1.58 "
                "times slower over the last 6 hours than over the 7 days before. Decode"
                " rate: 63.47% of its baseline (15.8 vs 24.9 tokens/s). Median "
                "duration: 135.3% of its baseline (20.29s vs 15s). Neither the server's"
                " version nor the model's digest changed in that time.",
            ),
            *silent(E + 5.25, *every(E + 5.5, END_H, 0.5)),
        ],
    ),
    Scenario(
        target="rollback",
        seed=6,
        name="after a rollback the ticket resolves and stays silent",
        comment="Ollama upgraded at 174h (decode rate 25 -> 15 tokens/s), rolled back at 178h",
        rate=lambda h: 15.0 if E <= h < E + 4 else 25.0,
        version_changes_h=(E, E + 4),
        versions=((0, "0.32.15"), (E, "0.33.0"), (E + 4, "0.32.15")),
        # Fires from 177h15m as in `upgrade`; resolves once less than 3/8 of the 6-hour
        # window is before the rollback (181h45m with this seed's jitter), and the baseline,
        # now holding the slow hours, keeps it quiet.
        checks=[
            fires(
                E + 4,
                "rollback",
                "The liveness probes of model gemma3:12b on target rollback are 1.44 "
                "times slower over the last 6 hours than over the 7 days before. Decode"
                " rate: 69.59% of its baseline (17.3 vs 24.9 tokens/s). Median "
                "duration: 125.6% of its baseline (18.85s vs 15s). The server's Ollama "
                "version changed in that time (now 0.32.15).",
            ),
            fires(
                E + 7 + 40 / 60,
                "rollback",
                "The liveness probes of model gemma3:12b on target rollback are 1.25 "
                "times slower over the last 6 hours than over the 7 days before. Decode"
                " rate: 79.89% of its baseline (19.8 vs 24.7 tokens/s). The server's "
                "Ollama version changed in that time (now 0.32.15).",
            ),
            *silent(E + 7.75, *every(E + 8, END_H, 0.5)),
        ],
    ),
    Scenario(
        target="rare",
        seed=7,
        # 6 probes in 6 hours: too few to tell a regression from bad luck (minimum 10).
        name="a prompt probed once an hour never opens a ticket, even 40 % slower",
        comment="one probe an hour; decode rate 25 -> 15 tokens/s at 174h",
        interval=3600,
        rate=lambda h: 15.0 if h >= E else 25.0,
        checks=silent(*every(E, END_H, 0.5)),
    ),
]


def document() -> dict[str, Any]:
    tests = []
    for scenario in SCENARIOS:
        tests.append(
            {
                "name": scenario.name,
                "interval": "5m",
                "input_series": series(scenario),
                "alert_rule_test": scenario.checks,
            }
        )
    return {
        "rule_files": ["../rules/regression.yml"],
        "evaluation_interval": "5m",
        "group_eval_order": ["ollama-regression-records", "ollama-regression-alerts"],
        "tests": tests,
    }


HEADER = """\
# GENERATED by `python -m prometheus.tests.regression_series` (edit the scenarios there).
# OllamaModelRegressed on realistic probe series: jittered 5-minute `liveness` probes with
# ±10 % noise in answer length and decode rate, 7 days 6 hours of history, then an event at
# 174h. One test (and one target) per scenario; see the script's docstring.
"""


def render() -> str:
    scenarios = "".join(f"#   {s.target}: {s.comment}\n" for s in SCENARIOS)
    body = yaml.safe_dump(document(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + "# Scenarios:\n" + scenarios + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prometheus.tests.regression_series")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.exists() and OUTPUT.read_text(encoding="utf-8") == text
        if not current:
            print(f"{OUTPUT.name} is not current: run {parser.prog}", file=sys.stderr)
        return 0 if current else 1
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
