"""Issue 7: scrapes under load, and reloads under scrape load, lose nothing.

A short correctness test, not a soak (that belongs to the benchmarks): 50 concurrent scrapers
hit the real exporter for 20 s while probes of healthy, slow, failing and trickling models run.
Every scrape must answer 200 with a whole exposition in which each probe is all there or not at
all, and no counter goes down. Then reloads (good, bad, SIGHUP) fire under scrape load: the
counters and histograms of every job that remains configured never drop or vanish.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from exporter.probing.probe import Reason
from tests.exporter_process import (
    ExporterProcess,
    Samples,
    parse_samples,
    series_of,
    value,
    wait_until,
)
from tests.fakes.ollama_double import Fault
from tests.test_hardening_support import (
    DoubleProcess,
    cumulative,
    monotonic_problems,
    probes_done,
)

SCRAPERS = 50
LOAD_S = 20.0
MODELS: list[dict[str, object]] = [
    {"name": "ok:1b", "token_interval": 0.005},
    {"name": "slow:1b", "first_token_delay": 0.3},
    {"name": "flaky:1b", "fault": Fault.STATUS_500.value},
    {"name": "trickle:1b", "fault": Fault.TRICKLE.value},
]
NAMES = [str(m["name"]) for m in MODELS]


def config_text(url: str, *prompts: str) -> str:
    return (
        f'targets: [{{name: local, url: "{url}"}}]\n'
        + "prompts:\n"
        + "".join(f"  {p}\n" for p in prompts)
        + "probe: {timeout: 800ms, health_interval: 300ms, inventory_interval: 2s,"
        + " concurrency_per_target: 4, max_duty_cycle: 1}\n"
        + "gpu: {enabled: false}\n"
    )


LIVENESS = '- {id: liveness, text: "Why avocados?", interval: 1s}'
EXTRA = '- {id: extra, text: "And bananas?", interval: 1s}'


@pytest.fixture
def double() -> Iterator[DoubleProcess]:
    """In its own process: 50 scraper threads here must not slow the probed server down."""
    with DoubleProcess(MODELS, trickle_interval=0.1) as running:
        yield running


def atomicity_problems(samples: Samples) -> list[str]:
    """A scrape sees all of a probe or none of it: every probe is a success or one failure."""
    problems = []
    for labels in series_of(samples, "ollama_probes_total"):
        done = value(samples, "ollama_probes_total", **labels) or 0
        ok = value(samples, "ollama_probe_duration_seconds_count", **labels) or 0
        failed = sum(
            value(samples, "ollama_probe_failures_total", **labels, reason=r.value) or 0
            for r in Reason
        )
        if done != ok + failed:
            problems.append(f"{labels}: {done} probes != {ok} successes + {failed} failures")
    return problems


@dataclass
class ScrapeLog:
    """What one scraper saw."""

    scrapes: int = 0
    parsed: int = 0
    slowest_s: float = 0.0
    errors: list[str] = field(default_factory=list)


def scrape_loop(
    url: str,
    until: float,
    log: ScrapeLog,
    check_every: int,
    keep: Callable[[Mapping[str, str]], bool],
) -> None:
    """Scrape until `until`; every `check_every`th scrape is parsed and checked."""
    previous: Samples | None = None
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                response = client.get(url)
            except httpx.HTTPError as exc:
                log.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            log.slowest_s = max(log.slowest_s, time.monotonic() - started)
            log.scrapes += 1
            text = response.text
            if response.status_code != 200 or not text.endswith("\n"):
                log.errors.append(f"HTTP {response.status_code}, {len(text)} bytes")
                continue
            if "ollama_exporter_build_info" not in text:
                log.errors.append("an incomplete exposition")
            if (log.scrapes - 1) % check_every:
                continue  # parse the first scrape, then every check_every-th
            log.parsed += 1
            try:
                log.errors += atomicity_problems(parse_samples(text))
                current = cumulative(text)
            except ValueError as exc:
                log.errors.append(f"unparseable exposition: {exc}")
                continue
            if previous is not None:
                log.errors += monotonic_problems(previous, current, keep)
            previous = current


def run_scrapers(
    url: str,
    count: int,
    seconds: float,
    check_every: int,
    keep: Callable[[Mapping[str, str]], bool],
) -> list[ScrapeLog]:
    logs = [ScrapeLog() for _ in range(count)]
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=scrape_loop, args=(url, until, log, check_every, keep))
        for log in logs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    assert not [t for t in threads if t.is_alive()], "a scraper is stuck"
    return logs


def test_50_scrapers_for_20s_while_probes_run_never_fail(
    double: DoubleProcess, tmp_path: Path
) -> None:
    config = tmp_path / "load.yaml"
    config.write_text(config_text(double.url, LIVENESS), encoding="utf-8")
    with ExporterProcess(config) as exporter:
        before = exporter.samples_when(
            lambda s: all(
                probes_done(s, target="local", model=m, prompt="liveness") for m in NAMES
            ),
            15,
            "a first probe of every model",
        )
        logs = run_scrapers(
            f"{exporter.url}/metrics", SCRAPERS, LOAD_S, check_every=20, keep=lambda _: True
        )
        after = exporter.samples()
        alive = exporter.proc.poll() is None

    errors = [e for log in logs for e in log.errors]
    total = sum(log.scrapes for log in logs)
    assert errors == [], f"{len(errors)} failed or inconsistent scrapes of {total}: {errors[:10]}"
    assert alive
    # Every scraper got through more than once (a hang would show as a 10 s client timeout).
    assert all(log.scrapes >= 2 and log.parsed >= 1 for log in logs), [
        (log.scrapes, log.parsed) for log in logs
    ]
    # The probes kept running under the load (about one a second per job).
    for model in NAMES:
        labels = {"target": "local", "model": model, "prompt": "liveness"}
        assert probes_done(after, **labels) - probes_done(before, **labels) >= LOAD_S / 4, model


def test_reload_under_scrape_load_loses_no_counter_values(
    double: DoubleProcess, tmp_path: Path
) -> None:
    config = tmp_path / "reload.yaml"
    variants = {
        "base": config_text(double.url, LIVENESS),
        "more": config_text(double.url, LIVENESS, EXTRA),
        "bad": config_text(double.url, LIVENESS).replace("timeout: 800ms", "timeout: soon"),
    }

    def install(name: str) -> None:
        staged = tmp_path / "staged.yaml"
        staged.write_text(variants[name], encoding="utf-8")
        os.replace(staged, config)  # the exporter never reads half a file

    install("more")
    with ExporterProcess(config) as exporter:
        first = exporter.samples_when(
            lambda s: all(probes_done(s, target="local", model=m, prompt="extra") for m in NAMES),
            15,
            "a first probe of every model",
        )
        answers: list[tuple[str, int]] = []

        plan = ["base", "bad", "more", "base", "more", "bad", "more"]

        def reloader() -> None:
            # A fixed plan, not a time budget: on a loaded machine every step still happens.
            pause = threading.Event()
            with httpx.Client(timeout=10.0, trust_env=False) as client:
                for i, name in enumerate(plan):
                    install(name)
                    if i % 3 == 2:
                        exporter.proc.send_signal(signal.SIGHUP)
                        answers.append((name, 0))
                    else:
                        reply = client.post(f"{exporter.url}/-/reload")
                        answers.append((name, reply.status_code))
                    pause.wait(0.3)

        reloads = threading.Thread(target=reloader)
        reloads.start()
        logs = run_scrapers(
            f"{exporter.url}/metrics",
            10,
            6.0,
            check_every=1,
            keep=lambda labels: labels.get("prompt") != "extra",
        )
        reloads.join(60)
        assert not reloads.is_alive(), "the reloads did not finish"
        install("base")
        assert exporter.post("/-/reload").status_code == 200
        exporter.samples_when(
            lambda s: {x["prompt"] for x in series_of(s, "ollama_probes_total")} == {"liveness"},
            5,
            "the extra prompt's series to go",
        )
        # Settle past any in-flight inventory of an older configuration, then look again.
        wait_until(lambda: exporter.get("/-/ready").status_code == 200, 10, "/-/ready")
        final = exporter.samples()
        stderr = exporter.stderr

    errors = [e for log in logs for e in log.errors]
    assert errors == [], f"{len(errors)} problems: {errors[:10]}"
    assert sum(log.parsed for log in logs) >= 10  # each one compared with the one before
    codes = {(name, code) for name, code in answers if code}
    assert codes <= {("base", 200), ("more", 200), ("bad", 500)}, codes
    assert ("bad", 500) in codes and len(answers) == len(plan)
    assert value(final, "ollama_exporter_config_last_reload_successful") == 1
    assert {s["prompt"] for s in series_of(final, "ollama_probes_total")} == {"liveness"}
    problems = monotonic_problems(
        cumulative_of(first),
        cumulative_of(final),
        keep=lambda labels: labels.get("prompt") != "extra",
    )
    assert problems == []
    assert "reload failed, keeping the running configuration" in stderr
    assert "Traceback" not in stderr


def cumulative_of(samples: Samples) -> Samples:
    """Counters and histogram parts of already-parsed samples (by their suffixes)."""
    suffixes = ("_total", "_bucket", "_count", "_sum")
    return {k: v for k, v in samples.items() if k[0].endswith(suffixes)}
