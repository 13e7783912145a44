"""Cost to Ollama: what the exporter sends per probe round, and the duty cycle it imposes.

Part 1 runs the real exporter against a double whose /api/tags has no `capabilities` field
(as older Ollama servers), so discovery needs /api/show; the double counts every request and
its bytes by path. Inventory calls must follow inventory_interval and /api/show must happen
once per model, not per probe. /api/ps is sent once before every probe by design (cold-start
detection), plus once per health check.

Part 2 gives the exporter more probe time than max_duty_cycle allows and compares its exported
busy seconds (per slot, as the duty-cycle recording rule divides them) and stretch with the
busy time the double itself saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benches.common import (
    DoubleHost,
    ExporterProcess,
    Record,
    Section,
    model_spec,
    samples,
    total,
    workdir,
)

GENERATION_PATHS = ("/api/chat", "/api/generate")


@dataclass(frozen=True)
class Params:
    models: int
    interval_s: float
    health_s: float
    inventory_s: float
    cost_s: float
    duty_interval_s: float
    duty_s: float


FULL = Params(5, 10.0, 5.0, 20.0, 61.0, 2.0, 60.0)  # ~2.5 min beside the footprint soak
QUICK = Params(2, 1.0, 0.5, 1.0, 1.5, 0.5, 1.5)

PROMPTS = [
    {"id": "liveness", "text": "Are you ready?", "options": {"num_predict": 16}},
    {"id": "gen", "text": "Name a fruit.", "api": "generate", "options": {"num_predict": 32}},
]


def _probe_config(url: str, p: Params, **probe: Any) -> dict[str, Any]:
    return {
        "targets": [{"name": "local", "url": url}],
        "prompts": PROMPTS,
        "probe": {
            "interval": f"{p.interval_s}s",
            "timeout": f"{min(5.0, p.interval_s * 0.8)}s",
            "health_interval": f"{p.health_s}s",
            "inventory_interval": f"{p.inventory_s}s",
        }
        | probe,
    }


def run(p: Params, mode: str) -> Section:
    section = Section("cost_to_ollama", "Cost to Ollama", mode)
    _requests_per_round(section, p)
    _duty(section, p)
    return section


# --- part 1: requests and bytes --------------------------------------------------------------
def _requests_per_round(section: Section, p: Params) -> None:
    models = [model_spec(f"m{i}:7b", resident=True) for i in range(p.models)]
    target = {"models": models, "tags_without_capabilities": True}
    with workdir("cost") as tmp, DoubleHost([target]) as host:
        config = _probe_config(host.urls[0], p)
        with ExporterProcess(config, tmp) as exporter:
            time.sleep(p.cost_s)
            text = exporter.metrics()
            records = host.records()[0]
            elapsed = time.perf_counter() - exporter.started_at
    probes = [r for r in records if r.path in GENERATION_PATHS]
    jobs = p.models * len(PROMPTS)
    rounds = len(probes) / jobs
    section.table(
        f"Requests the exporter sent in {elapsed:.0f} s ({len(probes)} probes = {rounds:.1f} "
        f"rounds of {jobs} jobs; interval {p.interval_s:g} s, health {p.health_s:g} s, "
        f"inventory {p.inventory_s:g} s)",
        ["path", "requests", "per round", "per probe", "bytes sent", "bytes per request"],
        _path_rows(records, rounds, len(probes)),
    )
    _judge_requests(section, p, records, probes, elapsed, text)


def _path_rows(records: list[Record], rounds: float, probes: int) -> list[list[str]]:
    rows = []
    for path in sorted({r.path for r in records}):
        hits = [r for r in records if r.path == path]
        sent = sum(r.bytes_in for r in hits)
        rows.append(
            [
                path,
                str(len(hits)),
                f"{len(hits) / rounds:.2f}",
                f"{len(hits) / probes:.2f}",
                f"{sent:,}",
                f"{sent / len(hits):.0f}",
            ]
        )
    sent = sum(r.bytes_in for r in records)
    rows.append(["all", str(len(records)), f"{len(records) / rounds:.2f}", "", f"{sent:,}", ""])
    return rows


def _count(records: list[Record], path: str) -> int:
    return sum(1 for r in records if r.path == path)


def _judge_requests(
    section: Section,
    p: Params,
    records: list[Record],
    probes: list[Record],
    elapsed: float,
    text: str,
) -> None:
    shows, tags = _count(records, "/api/show"), _count(records, "/api/tags")
    versions, ps = _count(records, "/api/version"), _count(records, "/api/ps")
    section.add(
        "/api/show (model details)",
        f"{shows} for {p.models} models over {len(probes)} probes",
        "once per model, not per probe",
        shows == p.models,
    )
    refreshes = elapsed / p.inventory_s + 1
    section.add(
        "/api/tags (listing)",
        f"{tags} in {elapsed:.0f} s (inventory_interval {p.inventory_s:g} s: ~{refreshes:.0f})",
        "per inventory interval, not per probe",
        tags <= refreshes + 1 and tags < len(probes),
    )
    section.add(
        "/api/ps",
        f"{ps} = {ps - versions} before probes ({(ps - versions) / len(probes):.2f} per probe) "
        f"+ {versions} with health checks",
        "1 per probe by design (cold-start detection)",
    )
    per_round = sum(r.bytes_in for r in records) / (len(probes) / (p.models * len(PROMPTS)))
    section.add(
        "bytes sent per probe round", f"{per_round:,.0f} B ({p.models * len(PROMPTS)} probes)"
    )
    counted = total(text, "ollama_probes_total")
    section.add(
        "probes counted by the exporter vs seen by the double",
        f"{counted:.0f} vs {len(probes)}",
        "equal",
        abs(counted - len(probes)) <= 1,  # one may be in flight at the scrape
    )


# --- part 2: duty cycle ----------------------------------------------------------------------
def _duty(section: Section, p: Params) -> None:
    # Each probe takes ~0.4 s: 0.1 s to the first token and 30 tokens 10 ms apart.
    slow = {"first_token_delay": 0.1, "token_interval": 0.01, "resident": True}
    answer = " ".join(f"w{i}" for i in range(31))
    models = [model_spec(f"d{i}:7b", answer=answer, **slow) for i in range(3)]
    config = _probe_config("", p) | {"prompts": PROMPTS[:1]}
    with workdir("duty") as tmp, DoubleHost([{"models": models}]) as host:
        config["targets"] = [{"name": "local", "url": host.urls[0]}]
        config["probe"] |= {"interval": f"{p.duty_interval_s}s", "max_duty_cycle": 0.25}
        config["probe"]["timeout"] = f"{p.duty_interval_s * 0.9}s"
        with ExporterProcess(config, tmp) as exporter:
            time.sleep(p.duty_s)
            text = exporter.metrics()
            records = host.records()[0]
    _judge_duty(section, p, records, text)


def _busy_ratio(records: list[Record]) -> tuple[float, float, float]:
    """Busy share the double saw: union of receipt..last byte over first..last activity."""
    spans = sorted(
        (r.received_at, r.last_byte_at)
        for r in records
        if r.path in GENERATION_PATHS and r.last_byte_at is not None
    )
    if not spans or not records:
        return 0.0, 0.0, 0.0
    busy, cursor = 0.0, -1.0
    for start, end in spans:
        busy += max(0.0, end - max(start, cursor))
        cursor = max(cursor, end)
    window = spans[-1][1] - records[0].received_at
    mean = sum(e - s for s, e in spans) / len(spans)
    return busy / window, window, mean


def _judge_duty(section: Section, p: Params, records: list[Record], text: str) -> None:
    stretch = total(text, "ollama_exporter_probe_interval_stretch_ratio")
    intervals = [v for _, v in samples(text, "ollama_probe_interval_seconds")]
    external, window, mean = _busy_ratio(records)
    # The duty-cycle recording rule's quantity over the double's window: the exporter's busy
    # seconds (its probes' measured durations) per concurrency slot.
    busy = total(text, "ollama_exporter_probe_busy_seconds_total")
    slots = total(text, "ollama_exporter_probe_concurrency_slots")
    duty = busy / window / slots if window and slots else 0.0
    projected = 3 * mean / p.duty_interval_s
    section.add(
        "duty cycle, exporter vs double",
        f"exporter {duty:.3f}, double's busy share {external:.3f} over {window:.0f} s "
        f"(3 jobs of ~{mean * 1000:.0f} ms every {p.duty_interval_s:g} s: projected "
        f"{projected:.2f} unstretched)",
        "<= max_duty_cycle 0.25, exporter within 0.02 of the double",
        duty <= 0.25 * 1.05 and abs(duty - external) <= 0.02 if p.duty_s >= 30 else None,
    )
    expected = max(1.0, projected / 0.25)
    section.add(
        "interval stretch",
        f"{stretch:.2f}x (expected ~{expected:.2f}x from the double's durations); effective "
        f"intervals {', '.join(f'{v:.2f}' for v in intervals)} s",
        "stretch = projected / max_duty_cycle",
        abs(stretch - expected) / expected <= 0.15 if p.duty_s >= 30 else None,
    )
