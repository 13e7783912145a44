"""Scheduler accuracy: start lag against the plan, no run skipped or doubled, self-report honest.

600 probe jobs (20 targets x 10 models x 3 prompts) run for 10 minutes at a 60 s interval with
enough concurrency per target that nothing queues, while /metrics is scraped every 15 s as
Prometheus would. The plan (each run's planned time, jitter included) is not knowable from
outside: the jitter is drawn inside the exporter. Two external views are used:

1. The plan as APScheduler logs it ("Running job ... (scheduled at T)", kept at INFO by
   benches.exporter_logged) against the double's receipt time of the matching probe request.
   Log lines name the job only by its trigger object, so each trigger's planned times are
   matched to the (target, model, prompt) whose receipts follow them most closely.
2. No log at all: consecutive receipts of one job must be interval x (1 + U(0, 0.1)) apart,
   plus the change in lag. Gaps outside [interval - tolerance, 1.1 x interval + tolerance] bound
   the lag from below; a skipped run shows as a gap near 2 x interval, a doubled one near 0.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benches.common import (
    DoubleHost,
    ExporterProcess,
    Record,
    Section,
    Summary,
    histogram_buckets,
    model_spec,
    samples,
    summary_ms,
    total,
    workdir,
)

LAG_P99_LIMIT_S = 1.0
# The histogram measures to the moment the request goes out; the external lag also holds the
# loopback and the double's accept (under a millisecond), and the histogram's buckets are
# coarse below 0.25 s. Agreement is judged where a lag starts to matter.
AGREEMENT_FROM_S = 0.25
JITTER = 0.1
LAG_METRIC = "ollama_exporter_probe_schedule_lag_seconds"
_RUNNING = re.compile(
    r'Running job "ProbeScheduler\._run \(trigger: <[^>]* object at (0x[0-9a-f]+)>.*'
    r"\(scheduled at ([^)]+)\)$"
)
_SKIPPED = re.compile(r'Execution of job "ProbeScheduler\._run .*skipped')


@dataclass(frozen=True)
class Params:
    targets: int
    models: int
    prompts: int
    interval_s: float
    duration_s: float
    scrape_every_s: float


FULL = Params(20, 10, 3, 60.0, 600.0, 15.0)
QUICK = Params(2, 2, 1, 1.0, 5.0, 1.0)
PROMPT_TEXTS = {"p0": "First question?", "p1": "Second question?", "p2": "Third question?"}

JobId = tuple[int, str, str]  # target index, model, prompt id


def _config(urls: list[str], p: Params) -> dict[str, Any]:
    prompts = [{"id": pid, "text": text} for pid, text in list(PROMPT_TEXTS.items())[: p.prompts]]
    return {
        "targets": [{"name": f"t{i:02d}", "url": url} for i, url in enumerate(urls)],
        "prompts": prompts,
        "probe": {
            "interval": f"{p.interval_s}s",
            "timeout": f"{min(30.0, p.interval_s * 0.5)}s",
            "concurrency_per_target": p.models * p.prompts,  # no job ever waits for a slot
        },
    }


@dataclass
class Scrapes:
    """What the Prometheus-like scraper saw: its latencies and the largest stretch exported."""

    times: list[float]
    max_stretch: float = 1.0


def _scrape_loop(exporter: ExporterProcess, every: float, stop: threading.Event) -> Scrapes:
    seen = Scrapes([])

    def loop() -> None:
        while not stop.wait(every):
            start = time.perf_counter()
            text = exporter.metrics()
            seen.times.append(time.perf_counter() - start)
            stretch = samples(text, "ollama_exporter_probe_interval_stretch_ratio")
            seen.max_stretch = max([seen.max_stretch, *(v for _, v in stretch)])

    threading.Thread(target=loop, daemon=True).start()
    return seen


def run(p: Params, mode: str) -> Section:
    section = Section("scheduler", "Scheduler accuracy", mode)
    models = [model_spec(f"m{i:02d}:1b", resident=True) for i in range(p.models)]
    with (
        workdir("scheduler") as tmp,
        DoubleHost([{"models": models}] * p.targets) as host,
        ExporterProcess(_config(host.urls, p), tmp, module="benches.exporter_logged") as exp,
    ):
        stop = threading.Event()
        scrapes = _scrape_loop(exp, p.scrape_every_s, stop)
        time.sleep(max(0.0, p.duration_s - (time.perf_counter() - exp.started_at)))
        stop.set()
        end_at = time.perf_counter()
        wall_offset = time.time() - time.perf_counter()
        text = exp.metrics()
        records = host.records()
        lines = exp.log_lines()
    receipts = _receipts(records)
    plans, skipped_lines = _plans(lines, wall_offset)
    horizon = end_at - 2.0  # runs planned later may not have reached the double yet
    _judge(section, p, receipts, plans, skipped_lines, text, horizon)
    _self_inflation(section, records, text, scrapes)
    section.add("scrapes during the run", summary_ms(Summary.of(scrapes.times), 1))
    return section


def _self_inflation(
    section: Section, records: list[list[Record]], text: str, scrapes: Scrapes
) -> None:
    """Probe time as the exporter measured it vs as the double served it, and the stretch."""
    served = [
        r.last_byte_at - r.received_at
        for recs in records
        for r in recs
        if r.path == "/api/chat" and r.status == 200 and r.last_byte_at is not None
    ]
    measured = total(text, "ollama_probe_duration_seconds_sum")
    count = total(text, "ollama_probe_duration_seconds_count")
    section.add(
        "probe time, exporter vs double",
        f"mean {measured / max(count, 1) * 1000:.1f} ms measured by the exporter over "
        f"{count:.0f} probes vs {sum(served) / max(len(served), 1) * 1000:.1f} ms served by the "
        f"double over {len(served)}; largest duty-cycle stretch exported during the run "
        f"{scrapes.max_stretch:.2f}x",
    )


def _receipts(records: list[list[Record]]) -> dict[JobId, list[float]]:
    by_text = {text: pid for pid, text in PROMPT_TEXTS.items()}
    found: dict[JobId, list[float]] = defaultdict(list)
    for target, recs in enumerate(records):
        for r in recs:
            if r.path == "/api/chat":
                # The exporter prepends a cache-busting marker: "[probe 1a2b3c4d5e6f] ".
                prompt = by_text.get(r.text.split("] ", 1)[-1], "?")
                found[(target, r.model, prompt)].append(r.received_at)
    return {job: sorted(times) for job, times in found.items()}


def _plans(lines: list[str], wall_offset: float) -> tuple[dict[str, list[float]], int]:
    """Planned run times per trigger, converted to perf_counter time; and skip lines."""
    plans: dict[str, list[float]] = defaultdict(list)
    skipped = 0
    for line in lines:
        match = _RUNNING.search(line)
        if match:
            planned = datetime.fromisoformat(match[2]).timestamp() - wall_offset
            plans[match[1]].append(planned)
        elif _SKIPPED.search(line):
            skipped += 1
    return {k: sorted(v) for k, v in plans.items()}, skipped


def match_plans(
    plans: dict[str, list[float]], receipts: dict[JobId, list[float]]
) -> dict[str, JobId]:
    """Give each trigger the job whose receipts follow its planned times most closely."""
    costs: list[tuple[float, str, JobId]] = []
    for trigger, planned in plans.items():
        for job, got in receipts.items():
            n = min(len(planned), len(got))
            if n and abs(len(planned) - len(got)) <= 1:
                # Runs after the first: the first ones all share the start-up instant.
                pairs = list(zip(planned[1:n], got[1:n], strict=True)) or [(planned[0], got[0])]
                costs.append((sum(abs(g - pl) for pl, g in pairs) / len(pairs), trigger, job))
    matched: dict[str, JobId] = {}
    taken: set[JobId] = set()
    for _, trigger, job in sorted(costs):
        if trigger not in matched and job not in taken:
            matched[trigger] = job
            taken.add(job)
    return matched


def _lags(
    plans: dict[str, list[float]],
    receipts: dict[JobId, list[float]],
    matched: dict[str, JobId],
    horizon: float,
) -> tuple[list[float], int, int]:
    """External lags (receipt - plan) and the count of planned runs without / with two receipts."""
    lags: list[float] = []
    missing = extra = 0
    for trigger, job in matched.items():
        planned, got = plans[trigger], receipts[job]
        for i, pl in enumerate(planned):
            if pl > horizon:
                break
            nxt = planned[i + 1] if i + 1 < len(planned) else float("inf")
            inside = [g for g in got if pl - 0.001 <= g < nxt]
            if not inside:
                missing += 1
                continue
            extra += len(inside) - 1
            lags.append(inside[0] - pl)
    return lags, missing, extra


def _gaps(receipts: dict[JobId, list[float]], interval: float) -> tuple[list[float], int, int]:
    """Log-free view: consecutive receipt gaps minus the interval (jitter + change in lag)."""
    deviations: list[float] = []
    skips = doubles = 0
    for times in receipts.values():
        for a, b in itertools.pairwise(times):
            deviation = (b - a) - interval
            deviations.append(deviation)
            skips += deviation > interval * 0.5
            doubles += deviation < -interval * 0.5
    return deviations, skips, doubles


def _expected_counts(
    receipts: dict[JobId, list[float]], p: Params, horizon: float
) -> tuple[int, int]:
    """Jobs whose run count lies outside what the interval and its jitter allow."""
    outside = 0
    for times in receipts.values():
        span = horizon - times[0]
        low = int(span / (p.interval_s * (1 + JITTER))) + 1
        high = int(span / p.interval_s) + 1
        outside += not low <= sum(t <= horizon for t in times) <= high
    return outside, len(receipts)


def _judge(
    section: Section,
    p: Params,
    receipts: dict[JobId, list[float]],
    plans: dict[str, list[float]],
    skipped_lines: int,
    text: str,
    horizon: float,
) -> None:
    jobs = p.targets * p.models * p.prompts
    matched = match_plans(plans, receipts)
    lags, missing, extra = _lags(plans, receipts, matched, horizon)
    runs = sum(len(t) for t in receipts.values())
    section.add(
        "runs",
        f"{runs} probe requests at the double from {len(receipts)} of {jobs} jobs; "
        f"{len(plans)} planned-run sequences in the log, {len(matched)} matched to jobs",
    )
    lag = Summary.of(lags)
    first = Summary.of(_first_run_lags(plans, receipts, matched))
    later = Summary.of(_later_lags(plans, receipts, matched, horizon))
    section.add(
        "start lag, external (double's receipt - logged plan)",
        f"{summary_ms(lag, 1)}; first runs at start-up {summary_ms(first, 1)}; "
        f"later runs {summary_ms(later, 1)}",
        "p99 <= 1 s",
        lag.p99 <= LAG_P99_LIMIT_S if lags else False,
    )
    _judge_counts(section, p, receipts, missing, extra, skipped_lines, text, horizon)
    _judge_agreement(section, lags, text)
    _log_free(section, receipts, p)


def _first_run_lags(
    plans: dict[str, list[float]], receipts: dict[JobId, list[float]], matched: dict[str, JobId]
) -> list[float]:
    return [receipts[job][0] - plans[t][0] for t, job in matched.items()]


def _later_lags(
    plans: dict[str, list[float]],
    receipts: dict[JobId, list[float]],
    matched: dict[str, JobId],
    horizon: float,
) -> list[float]:
    trimmed = {t: v[1:] for t, v in plans.items()}
    later = {job: v[1:] for job, v in receipts.items()}
    return _lags(trimmed, later, matched, horizon)[0]


def _judge_counts(
    section: Section,
    p: Params,
    receipts: dict[JobId, list[float]],
    missing: int,
    extra: int,
    skipped_lines: int,
    text: str,
    horizon: float,
) -> None:
    outside, jobs = _expected_counts(receipts, p, horizon)
    overruns = total(text, "ollama_probe_skips_total", reason="overrun")
    section.add(
        "runs skipped or doubled",
        f"planned runs without a request {missing}, with two {extra}; overrun skips "
        f"{skipped_lines} in the log, {overruns:.0f} in ollama_probe_skips_total; jobs whose "
        f"count falls outside [elapsed / 1.1 interval, elapsed / interval] + 1: {outside} of "
        f"{jobs}",
        "0 skipped, 0 doubled",
        missing == 0 and extra == 0 and skipped_lines == 0 and outside == 0,
    )


def _judge_agreement(section: Section, lags: list[float], text: str) -> None:
    """Compare the exporter's histogram with the external lags bucket by bucket."""
    buckets = histogram_buckets(text, LAG_METRIC)
    count = total(text, f"{LAG_METRIC}_count")
    rows, worst = [], 0.0
    for le, cumulative in buckets:
        mine = cumulative / count if count else 0.0
        theirs = sum(x <= le for x in lags) / len(lags) if lags else 0.0
        rows.append([f"{le:g}", f"{mine:.4f}", f"{theirs:.4f}", f"{theirs - mine:+.4f}"])
        if le >= AGREEMENT_FROM_S:
            worst = max(worst, abs(theirs - mine))
    section.table(
        "Share of runs with lag <= le: the exporter's own histogram vs external (receipt - plan)",
        ["le (s)", "exporter", "external", "external - exporter"],
        rows,
    )
    mean_mine = total(text, f"{LAG_METRIC}_sum") / count if count else 0.0
    section.add(
        "exporter's schedule_lag histogram vs external",
        f"{count:.0f} vs {len(lags)} runs; mean {mean_mine * 1000:.1f} ms vs "
        f"{(sum(lags) / len(lags) if lags else 0) * 1000:.1f} ms; largest share difference "
        f"at le >= {AGREEMENT_FROM_S:g} s: {worst * 100:.2f} points",
        f"agree: within 1 point at every bucket >= {AGREEMENT_FROM_S:g} s",
        worst <= 0.01,
    )


def _log_free(section: Section, receipts: dict[JobId, list[float]], p: Params) -> None:
    deviations, skips, doubles = _gaps(receipts, p.interval_s)
    jitter_max = p.interval_s * JITTER
    below = sum(d < 0 for d in deviations)
    above = sum(d > jitter_max for d in deviations)
    worst_below = -min(deviations, default=0.0)
    worst_above = max(deviations, default=0.0) - jitter_max
    section.add(
        "log-free check: receipt gaps - interval",
        f"{len(deviations)} gaps; {below} below 0 (worst {worst_below * 1000:.0f} ms), {above} "
        f"above the {jitter_max:g} s jitter (worst {worst_above * 1000:.0f} ms): the lag changed "
        f"by at least that much between runs; gaps near 2x interval (skip) {skips}, near 0 "
        f"(double run) {doubles}",
    )
