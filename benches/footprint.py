"""Footprint: RSS, file descriptors, threads and CPU of the real exporter over a long soak.

The exporter CLI runs as a child process against ten doubles (in another child process) with a
mix of faults, short intervals and a scrape every 15 s, as Prometheus would. /proc/<pid> is
sampled every few seconds; growth is judged by least-squares slopes after a warm-up. At the
end a reload switches to long intervals and the CPU used between probes is measured.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from benches.common import (
    AnonSample,
    DoubleHost,
    ExporterProcess,
    ProcSample,
    Section,
    Summary,
    model_spec,
    read_anon,
    read_proc,
    samples,
    slope_with_error,
    summary_ms,
    total,
    workdir,
)

STREAM_FAULTS = ("error_line", "drop_mid_stream", "garbage_line", "no_done", "invalid_utf8")
STATUS_FAULTS = ("status_500", "status_503", "not_found", "other_404")
RSS_LIMIT = 100 * 1024 * 1024
GROWTH_LIMIT = 10 * 1024 * 1024
IDLE_CPU_LIMIT = 0.01


@dataclass(frozen=True)
class Params:
    targets: int
    models: int
    prompts: int
    interval_s: float
    soak_s: float
    idle_s: float
    sample_every_s: float
    scrape_every_s: float
    warmup_s: float
    min_probes: int
    idle_interval_s: float  # the probe interval after the reload that ends the soak


# One hour at 600 jobs. The verdict is a bounded footprint: RSS under the limit throughout, and
# the last quarter's median within GROWTH_LIMIT of the second quarter's (the first is warm-up).
FULL = Params(10, 20, 3, 20.0, 3600.0, 90.0, 5.0, 15.0, 120.0, 20_000, 3600.0)
QUICK = Params(2, 3, 1, 1.0, 2.0, 1.0, 0.25, 0.5, 0.0, 1, 10.0)


def _fault(target: int, model: int, models: int) -> str:
    """A fixed mix: every target has a stream fault and a status fault; some hang or flood."""
    if model == models - 1:
        return STREAM_FAULTS[target % len(STREAM_FAULTS)]
    if model == models - 2:
        return STATUS_FAULTS[target % len(STATUS_FAULTS)]
    if model == models - 3 and target % 5 == 0:
        return "hang_before_headers"  # ends at the exporter's total deadline: a timeout
    if model == models - 3 and target % 5 == 3:
        return "huge_response"  # over max_response_bytes: invalid_response
    return "none"


def _targets(p: Params) -> list[dict[str, Any]]:
    answer = " ".join(f"potassium{i}" for i in range(30))
    return [
        {
            "huge_bytes": 1024 * 1024,
            "models": [
                model_spec(
                    f"m{m:02d}:1b",
                    answer=answer,
                    resident=m % 2 == 0,
                    first_token_delay=0.002,
                    fault=_fault(t, m, p.models),
                )
                for m in range(p.models)
            ],
        }
        for t in range(p.targets)
    ]


PROMPTS = [
    {"id": "liveness", "text": "Are you ready?", "options": {"num_predict": 16}},
    {
        "id": "gen_regex",
        "text": "Name a mineral.",
        "api": "generate",
        "options": {"num_predict": 64},
        "checks": {"regex": "potassium"},
    },
    {
        "id": "avocado_en",
        "text": "Why are avocados healthy?",
        "checks": {"min_words": 5, "contains_any": ["potassium"], "language": "en"},
    },
]


def config(urls: list[str], p: Params, interval_s: float, health_s: float) -> dict[str, Any]:
    return {
        "targets": [{"name": f"t{i:02d}", "url": url} for i, url in enumerate(urls)],
        "prompts": PROMPTS[: p.prompts],
        "probe": {
            "interval": f"{interval_s}s",
            # The soak's deadline in both phases: the hanging probes end as soon after the reload.
            "timeout": f"{min(4.0, p.interval_s * 0.8)}s",
            "health_interval": f"{health_s}s",
            "inventory_interval": "60s",
            "concurrency_per_target": 4,
            # The hanging models alone would project a duty above 0.25 and stretch the schedule,
            # which would cut the probe rate this soak needs.
            "max_duty_cycle": 1.0,
            "max_response_bytes": 256 * 1024,
        },
    }


class Sampler:
    """Background /proc and /metrics sampling of the exporter during the soak."""

    def __init__(self, exporter: ExporterProcess, p: Params) -> None:
        self._exporter = exporter
        self._p = p
        self.proc: list[ProcSample] = []
        self.anon: list[AnonSample] = []
        self.scrape_s: list[float] = []
        self.text: list[TextSample] = []
        self.probes: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_scrape = time.perf_counter()
        while not self._stop.wait(self._p.sample_every_s):
            self.proc.append(read_proc(self._exporter.pid))
            if time.perf_counter() >= next_scrape:
                next_scrape += self._p.scrape_every_s
                self._scrape()
                # smaps is long and takes the exporter's memory-map lock: as often as scrapes.
                self.anon.append(read_anon(self._exporter.pid))

    def _scrape(self) -> None:
        start = time.perf_counter()
        text = self._exporter.metrics()
        self.scrape_s.append(time.perf_counter() - start)
        self.text.append(TextSample(start, len(text.encode())))
        self.probes.append((time.perf_counter(), total(text, "ollama_probes_total")))


@dataclass(frozen=True)
class TextSample:
    """The size of one scrape's text. Counters gain digits as probes add up, so the text grows
    by design. All of it but the live process lines is kept twice in the exporter: per job or
    target, and joined for scrapes (exporter.exposition.scrape)."""

    at: float  # perf_counter, when the scrape began
    text_bytes: int


def _idle_cpu(exporter: ExporterProcess, seconds: float) -> tuple[float, float]:
    """Share of one core the exporter used over `seconds`, and the probes it ran meanwhile."""
    before_text = exporter.metrics()
    before = read_proc(exporter.pid)
    time.sleep(seconds)
    after = read_proc(exporter.pid)
    after_text = exporter.metrics()
    probes = total(after_text, "ollama_probes_total") - total(before_text, "ollama_probes_total")
    return (after.cpu_s - before.cpu_s) / (after.at - before.at), probes


@dataclass(frozen=True)
class Variant:
    """One exporter build to soak (a second one could run beside it, as a before/after)."""

    name: str
    module: str
    env: dict[str, str]


# The allocator settings every shipped start path sets (the image, hence compose, and
# scripts/run): one malloc arena, no per-thread caches of freed chunks. The first variant is
# judged; the plain process (the pip entry point with nothing set) soaks beside it under the
# same load, so the docs can say what a user who skips the settings gets.
SHIPPED_ENV = {"MALLOC_ARENA_MAX": "1", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
VARIANTS = (
    Variant("image and scripts/run", "exporter", SHIPPED_ENV),
    Variant("plain, no allocator settings", "exporter", {}),
)


@dataclass
class Soak:
    sampler: Sampler
    final: str
    soak_s: float
    idle_cpu: float
    idle_probes: float
    after_idle: ProcSample


def _soak(p: Params, variant: Variant) -> Soak:
    with workdir("footprint") as tmp, DoubleHost(_targets(p), release_every=30.0) as host:
        soak_config = config(host.urls, p, p.interval_s, health_s=max(1.0, p.interval_s / 4))
        with ExporterProcess(soak_config, tmp, module=variant.module, env=variant.env) as exp:
            started = time.perf_counter()
            with Sampler(exp, p) as sampler:
                time.sleep(max(0.0, p.soak_s - (time.perf_counter() - started)))
            soak_s = time.perf_counter() - started
            final = exp.metrics()
            # Long intervals after a reload: what remains is the exporter's idle cost.
            exp.reload(config(host.urls, p, p.idle_interval_s, health_s=15.0))
            # First runs are paced at start-up; the hanging ones then time out.
            exp.wait_ready(180.0)
            time.sleep(min(5.0, p.idle_s))  # let the hanging probes hit their deadline
            idle_cpu, idle_probes = _idle_cpu(exp, p.idle_s)
            return Soak(sampler, final, soak_s, idle_cpu, idle_probes, read_proc(exp.pid))


def run(p: Params, mode: str) -> Section:
    section = Section("footprint", "Footprint over a soak", mode)
    soaks: dict[str, Soak] = {}

    def worker(variant: Variant) -> None:
        try:
            soaks[variant.name] = _soak(p, variant)
        except Exception as exc:  # one variant failing must not lose the other's soak
            section.add(f"error [{variant.name}]", f"the soak raised: {exc!r}", "runs", False)

    threads = [threading.Thread(target=worker, args=(v,)) for v in VARIANTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for variant in VARIANTS:
        if variant.name in soaks:
            judged = variant is VARIANTS[0]
            _report(section, p, variant.name, soaks[variant.name], judged=judged)
    section.notes.append(
        '"image and scripts/run" is `python -m exporter` with the allocator settings that the '
        "image and scripts/run set (MALLOC_ARENA_MAX=1, GLIBC_TUNABLES=glibc.malloc.tcache_count=0"
        '); "plain" is the same process with nothing set, as a pip user who skips '
        "docs/configuration.md's advice starts it (no verdicts). Each soaks against doubles of "
        "its own, at the same time."
    )
    return section


def _report(section: Section, p: Params, name: str, soak: Soak, judged: bool) -> None:
    """Figures of one variant; only the judged one carries verdicts."""
    proc = soak.sampler.proc
    t0 = proc[0].at if proc else 0.0
    steady = [s for s in proc if s.at - t0 >= p.warmup_s] or proc
    probes = total(soak.final, "ollama_probes_total")
    jobs = p.targets * p.models * p.prompts
    full = p.min_probes > 1 and judged

    def add(figure: str, value: str, target: str = "", ok: bool | None = None) -> None:
        section.add(f"{figure} [{name}]", value, target, ok if full else None)

    add(
        "soak",
        f"{probes:.0f} probes in {soak.soak_s:.0f} s ({jobs} jobs, interval {p.interval_s:g} s)",
        f">= {p.min_probes} probes in >= 900 s",
        probes >= p.min_probes and soak.soak_s >= 900,
    )
    add("failure mix", _failures(soak.final))
    rss = [s.rss_bytes for s in proc]
    add(
        "RSS",
        f"max {max(rss) / 2**20:.1f} MiB, median {Summary.of(rss).median / 2**20:.1f} MiB, "
        f"after idle {soak.after_idle.rss_bytes / 2**20:.1f} MiB (n={len(rss)} samples)",
        "<= 100 MB",
        max(rss) <= RSS_LIMIT,
    )
    growth, bounded = _growth(proc, p)
    add(
        "RSS, last 15 min vs 15-30 min",
        growth,
        f"medians within {GROWTH_LIMIT / 2**20:.0f} MiB",
        bounded,
    )
    after_warmup = [s for s in soak.sampler.anon if s.at - t0 >= p.warmup_s]
    add("anonymous memory outside thread stacks", _anon(after_warmup))
    add("served text", _text([s for s in soak.sampler.text if s.at - t0 >= p.warmup_s]))
    add(
        "fds and threads",
        f"fds {min(s.fds for s in steady)}..{max(s.fds for s in steady)}, "
        f"threads {min(s.threads for s in steady)}..{max(s.threads for s in steady)}",
    )
    cpu = (proc[-1].cpu_s - proc[0].cpu_s) / (proc[-1].at - proc[0].at) if len(proc) > 1 else 0
    add("CPU during soak", f"{cpu * 100:.1f} % of one core (mean)")
    add(
        "idle CPU between probes",
        f"{soak.idle_cpu * 100:.2f} % of one core over {p.idle_s:g} s "
        f"({soak.idle_probes:.0f} probes ran)",
        "< 1 % of one core",
        soak.idle_cpu < IDLE_CPU_LIMIT,
    )
    scrapes = Summary.of(soak.sampler.scrape_s)
    last = soak.sampler.text[-1].text_bytes if soak.sampler.text else 0
    add(
        f"scrapes during soak (every {p.scrape_every_s:g} s, no gzip)",
        f"{summary_ms(scrapes, 1)}, {last / 1024:.0f} KiB",
    )
    section.data[name] = {
        "probes": probes,
        "rss_max": max(rss),
        "samples": [[s.at - t0, s.rss_bytes, s.threads, s.fds, s.cpu_s] for s in proc],
        "anon": [[s.at - t0, s.mapped_bytes, s.resident_bytes] for s in soak.sampler.anon],
        "text": [[s.at - t0, s.text_bytes] for s in soak.sampler.text],
    }


def _failures(final: str) -> str:
    by_reason: dict[str, float] = {}
    for labels, value in samples(final, "ollama_probe_failures_total"):
        by_reason[labels["reason"]] = by_reason.get(labels["reason"], 0.0) + value
    mix = ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_reason.items()) if v)
    return f"{mix or 'none'}; skips {total(final, 'ollama_probe_skips_total'):.0f}"


def _minute_means(
    steady: list[ProcSample] | list[AnonSample] | list[TextSample], value: str
) -> list[tuple[float, float]]:
    """Per-minute means: a render's transient peak should not pass for a trend."""
    t0 = steady[0].at
    buckets: dict[int, list[float]] = {}
    for s in steady:
        buckets.setdefault(int((s.at - t0) // 60), []).append(float(getattr(s, value)))
    return [(k * 60 + 30, sum(v) / len(v)) for k, v in sorted(buckets.items())]


def _growth(proc: list[ProcSample], p: Params) -> tuple[str, bool]:
    """The last 15 minutes' median RSS against the 15-to-30-minute median.

    A bounded footprint is what users need: the first quarter hour is the warm-up, the second
    the reference, the last is where growth would show.
    """
    if not proc:
        return "no samples", False
    t0, end = proc[0].at, proc[-1].at - proc[0].at
    quarter = 900.0 if end >= 1800.0 else end / 4
    reference = [s.rss_bytes for s in proc if quarter <= s.at - t0 < 2 * quarter]
    last = [s.rss_bytes for s in proc if s.at - t0 >= end - quarter]
    if not reference or not last:
        return "too few samples", False
    ref, tail = Summary.of(reference).median, Summary.of(last).median
    text = (
        f"median {tail / 2**20:.1f} MiB over the last {quarter / 60:.0f} min vs "
        f"{ref / 2**20:.1f} MiB over {quarter / 60:.0f}-{2 * quarter / 60:.0f} min "
        f"({(tail - ref) / 2**20:+.1f} MiB; n={len(last)} and {len(reference)})"
    )
    return text, abs(tail - ref) <= GROWTH_LIMIT


def _anon(steady: list[AnonSample]) -> str:
    """Whether a rise in RSS is new memory or reserved pages being touched (see AnonSample)."""
    if len(steady) < 4:
        return "too few samples"
    parts = []
    for what, name in (("resident", "resident_bytes"), ("mapped", "mapped_bytes")):
        means = [(t, v / 2**20) for t, v in _minute_means(steady, name)]
        slope, se = slope_with_error(means)
        first, last = means[0][1], means[-1][1]
        parts.append(f"{what} {first:.1f} -> {last:.1f} MiB ({slope:+.1f} ± {2 * se:.1f} MiB/h)")
    left = (steady[-1].mapped_bytes - steady[-1].resident_bytes) / 2**20
    return (
        f"{parts[0]} of {parts[1]}, per-minute means after the warm-up; "
        f"mapped but not resident at the end {left:.1f} MiB"
    )


def _text(steady: list[TextSample]) -> str:
    """How much of an RSS slope the served text's own growth can explain."""
    means = [(t, v / 1024) for t, v in _minute_means(steady, "text_bytes")] if steady else []
    if len(means) < 3:
        return f"too few minutes sampled ({len(means)})"
    slope, se = slope_with_error(means)
    return (
        f"{means[0][1]:.1f} -> {means[-1][1]:.1f} KiB ({slope:+.1f} ± {2 * se:.1f} KiB/h), "
        "per-minute means after the warm-up"
    )
