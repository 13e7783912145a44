"""`compare --from-prometheus URL --range 7d`: the probes Prometheus already scraped, as
observations, so a comparison costs Ollama nothing more.

The exporter serves no per-probe history, only counters and the gauges of the last probe. Each
probe is recovered from the scrape that first shows it: a scrape where
`ollama_probe_last_run_timestamp_seconds` moved and `ollama_probes_total` rose (the timestamp
also moves on skipped runs, which the counter does not count). The last-probe gauges of that
same scrape describe the probe. Prometheus gives every sample of one scrape the same timestamp,
so the gauges are looked up by exact timestamp, never interpolated. Reading the raw samples is
prometheus_api's part.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from exporter.compare.observations import Observation
from exporter.compare.prometheus_api import (
    Key,
    Points,
    PrometheusApi,
    PrometheusSourceError,
    parse_range,
    read_metric,
)

__all__ = ["PrometheusRecord", "PrometheusSourceError", "parse_range", "read_prometheus"]

LAST_RUN = "ollama_probe_last_run_timestamp_seconds"
LAST_SUCCESS = "ollama_probe_last_success_timestamp_seconds"
PROBES = "ollama_probes_total"
FAILURES = "ollama_probe_failures_total"
TOKENS = "ollama_probe_generated_tokens_total"
SUCCESS = "ollama_probe_success"
LAST_DURATION = "ollama_probe_last_duration_seconds"
TTFT = "ollama_probe_last_time_to_first_token_seconds"
TOKENS_PER_SECOND = "ollama_probe_tokens_per_second"
LOAD = "ollama_probe_load_duration_seconds"
COLD_START = "ollama_probe_cold_start"
CHARACTERS = "ollama_probe_response_characters"
WORDS = "ollama_probe_response_words"
CHECK_PASSED = "ollama_probe_check_passed"
GPU_PEAK = "ollama_probe_gpu_memory_peak_bytes"
GPU_UTILIZATION = "ollama_probe_gpu_utilization_ratio"
VRAM = "ollama_model_vram_bytes"
UP = "ollama_up"

# Each metric read, with the labels that tell its series of one job apart (the rest, job and
# instance included, identify the job).
METRICS: Mapping[str, tuple[str, ...]] = {
    LAST_RUN: (),
    LAST_SUCCESS: (),
    PROBES: (),
    FAILURES: ("reason",),
    TOKENS: (),
    SUCCESS: (),
    LAST_DURATION: (),
    TTFT: (),
    TOKENS_PER_SECOND: (),
    LOAD: (),
    COLD_START: (),
    CHARACTERS: (),
    WORDS: (),
    CHECK_PASSED: ("check",),
    GPU_PEAK: ("gpu", "uuid"),
    GPU_UTILIZATION: ("gpu", "uuid"),
    VRAM: (),
    UP: (),
}
_QUERY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PrometheusRecord:
    """The observations recovered from a range of Prometheus' samples, and how far to trust it."""

    observations: list[Observation]
    targets: list[str]  # the `target` labels seen, sorted
    start: float  # Unix seconds of the range read
    end: float
    scrape_interval_s: float | None  # median gap between samples of the last-run series
    probe_interval_s: float | None  # median gap between successive runs of a job
    unseen_probes: int  # counted by ollama_probes_total, but no scrape showed them on their own
    notes: list[str]  # plain sentences for the report: how the figures were obtained, limits


def read_prometheus(
    url: str,
    range_s: float,
    targets: Sequence[str] = (),
    *,
    end: float | None = None,
    client: httpx.Client | None = None,
) -> PrometheusRecord:
    """The probes of `targets` (all when empty) that Prometheus at `url` holds for `range_s`."""
    if not range_s > 0:
        raise ValueError(f"a range must be longer than zero, not {range_s}")
    end = time.time() if end is None else end
    start = end - range_s
    owned = client is None
    client = httpx.Client(timeout=_QUERY_TIMEOUT_S) if client is None else client
    try:
        api = PrometheusApi(client, url.rstrip("/"))
        samples = {
            name: read_metric(api, name, labels, targets, start, end)
            for name, labels in METRICS.items()
        }
    finally:
        if owned:
            client.close()
    return _Recovery(samples).record(url, start, end)


# --- recovering probes --------------------------------------------------------------------------


def _increases(points: Mapping[int, float]) -> Points:
    """A counter's rise at each sample since the one before; a drop is a reset (rise = value)."""
    rises: Points = {}
    times = sorted(points)
    for before, now in itertools.pairwise(times):
        value = points[now]
        rises[now] = value - points[before] if value >= points[before] else value
    return rises


def _gaps(stamps: Sequence[float]) -> list[float]:
    ordered = sorted(stamps)
    return [b - a for a, b in itertools.pairwise(ordered)]


@dataclass
class _Tally:
    observations: list[Observation] = dataclasses.field(default_factory=list)
    unseen: int = 0
    skipped_runs: int = 0
    scrape_gaps: list[float] = dataclasses.field(default_factory=list)
    run_gaps: list[float] = dataclasses.field(default_factory=list)


class _Recovery:
    """The probes of every job in the samples read."""

    def __init__(self, samples: Mapping[str, Mapping[Key, Mapping[Key, Points]]]) -> None:
        self._samples = samples
        self._rises_of: dict[tuple[str, Key, Key], Points] = {}

    def _points(self, name: str, job: Key, part: Key = ()) -> Mapping[int, float]:
        return self._samples[name].get(job, {}).get(part, {})

    def _parts(self, name: str, job: Key) -> Mapping[Key, Mapping[int, float]]:
        return self._samples[name].get(job, {})

    def _value(self, name: str, job: Key, ms: int) -> float | None:
        return self._points(name, job).get(ms)

    def _rises(self, name: str, job: Key, part: Key = ()) -> Points:
        """A counter's rise at each of its samples, computed once per series."""
        key = (name, job, part)
        if key not in self._rises_of:
            self._rises_of[key] = _increases(self._points(name, job, part))
        return self._rises_of[key]

    def record(self, url: str, start: float, end: float) -> PrometheusRecord:
        tally = _Tally()
        jobs = [job for job in self._samples[LAST_RUN] if _probe_labels(job) is not None]
        for job in sorted(jobs):
            self._read_job(job, tally)
        tally.observations.sort(key=lambda o: (o.finished_at, o.target, o.model, o.prompt))
        scrape = statistics.median(tally.scrape_gaps) if tally.scrape_gaps else None
        probe = statistics.median(tally.run_gaps) if tally.run_gaps else None
        return PrometheusRecord(
            observations=tally.observations,
            targets=self._targets(),
            start=start,
            end=end,
            scrape_interval_s=scrape,
            probe_interval_s=probe,
            unseen_probes=tally.unseen,
            notes=_notes(url, start, end, tally, scrape, probe, _duplicates(jobs)),
        )

    def _targets(self) -> list[str]:
        jobs = [*self._samples[LAST_RUN], *self._samples[UP]]
        return sorted({dict(job)["target"] for job in jobs if "target" in dict(job)})

    def _read_job(self, job: Key, tally: _Tally) -> None:
        runs = self._points(LAST_RUN, job)
        times = sorted(runs)
        before = {now: runs[then] for then, now in itertools.pairwise(times)}
        tally.scrape_gaps += [gap / 1000 for gap in _gaps(times)]
        tally.run_gaps += _gaps(list(set(runs.values())))
        probes = self._rises(PROBES, job)
        tally.skipped_runs += sum(
            1 for ms in times[1:] if runs[ms] != before[ms] and probes.get(ms) == 0
        )
        for ms, count in sorted(probes.items()):
            if count <= 0:
                continue
            run = runs.get(ms)
            # No run seen at this scrape (the gauge has no sample): counted, not recovered.
            seen = run is not None and run != before.get(ms)
            observation = self._observation(job, ms, run, before.get(ms)) if seen else None
            if observation is None:
                tally.unseen += round(count)
                continue
            tally.observations.append(observation)
            tally.unseen += round(count) - 1  # only the last of several probes has gauges

    def _observation(
        self, job: Key, ms: int, run: float | None, since: float | None
    ) -> Observation | None:
        """The probe whose result the scrape at `ms` shows; None if it cannot tell the outcome."""
        success = self._value(SUCCESS, job, ms)
        labels = _probe_labels(job)
        if success is None or run is None or labels is None:
            return None
        reason = None if success == 1 else self._reason(job, ms)
        cold = self._value(COLD_START, job, ms)
        outcome = Observation(
            target=labels[0],
            model=labels[1],
            prompt=labels[2],
            finished_at=run,
            reason=reason,
            # Set by failed probes too (a timeout shows the timeout).
            duration_s=self._value(LAST_DURATION, job, ms),
            # A model_not_found probe leaves the gauge as it was: it would be an older probe's.
            cold_start=None if cold is None or reason == "model_not_found" else cold == 1,
            vram_bytes=_int(self._vram(job, ms)),
        )
        return outcome if reason is not None else self._success(outcome, job, ms, since)

    def _success(self, base: Observation, job: Key, ms: int, since: float | None) -> Observation:
        """`base` with the answer gauges, which keep the last *successful* probe's values."""
        value = self._value
        finished = value(LAST_SUCCESS, job, ms)
        # The last-run time may be a skip that followed the probe before the same scrape.
        if finished is None or (since is not None and finished <= since):
            finished = base.finished_at
        rate = value(TOKENS_PER_SECOND, job, ms)
        if not self._rises(TOKENS, job).get(ms, 0) > 0:
            rate = None  # this probe counted no tokens, so the gauge is an older probe's rate
        checks = {
            dict(part)["check"]: points[ms] == 1
            for part, points in self._parts(CHECK_PASSED, job).items()
            if ms in points
        }
        peaks = [p[ms] for p in self._parts(GPU_PEAK, job).values() if ms in p]
        loads = [p[ms] for p in self._parts(GPU_UTILIZATION, job).values() if ms in p]
        return dataclasses.replace(
            base,
            finished_at=finished,
            ttft_s=value(TTFT, job, ms),
            tokens_per_second=rate,
            load_s=value(LOAD, job, ms),
            characters=_int(value(CHARACTERS, job, ms)),
            words=_int(value(WORDS, job, ms)),
            checks=checks,
            gpu_peak_memory_bytes=round(sum(peaks)) if peaks else None,
            gpu_utilization_ratio=sum(loads) / len(loads) if loads else None,
        )

    def _reason(self, job: Key, ms: int) -> str:
        """The one reason whose failure counter rose at this scrape, else "unknown"."""
        rose = {
            dict(part).get("reason", "")
            for part in self._parts(FAILURES, job)
            if self._rises(FAILURES, job, part).get(ms, 0) > 0
        }
        return rose.pop() if len(rose) == 1 else "unknown"

    def _vram(self, job: Key, ms: int) -> float | None:
        model_job = tuple(pair for pair in job if pair[0] != "prompt")
        return self._value(VRAM, model_job, ms)


def _probe_labels(job: Key) -> tuple[str, str, str] | None:
    labels = dict(job)
    if not {"target", "model", "prompt"} <= labels.keys():
        return None
    return labels["target"], labels["model"], labels["prompt"]


def _int(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else round(value)


def _duplicates(jobs: Sequence[Key]) -> int:
    """(target, model, prompt) combinations that more than one scrape series holds."""
    seen: dict[tuple[str, str, str] | None, int] = {}
    for job in jobs:
        labels = _probe_labels(job)
        seen[labels] = seen.get(labels, 0) + 1
    return sum(1 for count in seen.values() if count > 1)


def _notes(
    url: str,
    start: float,
    end: float,
    tally: _Tally,
    scrape_s: float | None,
    probe_s: float | None,
    duplicates: int,
) -> list[str]:
    """How the figures were obtained and where they fall short, as sentences for the report."""
    notes = [
        f"Read from Prometheus at {url}: raw samples from {_utc(start)} to {_utc(end)}. A probe "
        f"is a scrape at which {LAST_RUN} moved and {PROBES} rose; its outcome is {SUCCESS} "
        f"and the reason whose {FAILURES} rose with it, its figures are the last-probe gauges "
        "of the same scrape.",
        f"A probe's time is the exporter's own ({LAST_SUCCESS} for successes, {LAST_RUN} "
        "otherwise), not the scrape's.",
        "Time to first token, tokens per second, load time, answer size, checks and GPU figures "
        "are read for successful probes only: those gauges keep the last successful answer's "
        "values, so at a failure they would repeat an older success. Failures keep their "
        f"duration ({LAST_DURATION} covers them too).",
        f"VRAM is {VRAM} at the scrape after the probe, and only while the model was resident.",
        "The first sample of each series in the range is its baseline: a probe that the first "
        "scrape in the range already showed is not counted.",
        _intervals(scrape_s, probe_s),
    ]
    if tally.unseen:
        notes.append(
            f"{tally.unseen} probes that {PROBES} counts were not seen on their own (another "
            "probe of the same job ended before the next scrape, or a gauge had no sample "
            "there): they are counted here but are in no figure."
        )
    if tally.skipped_runs:
        notes.append(
            f"{tally.skipped_runs} scheduled runs were skipped (the run time moved without a "
            "probe); they are not observations."
        )
    if duplicates:
        notes.append(
            f"{duplicates} (target, model, prompt) combinations come from more than one scraped "
            "series (other job or instance labels); each is read on its own, so an exporter "
            "that two jobs scrape counts its probes twice."
        )
    return notes


def _intervals(scrape_s: float | None, probe_s: float | None) -> str:
    if scrape_s is None or probe_s is None:
        return "Too few samples to tell the scrape interval from the probe interval."
    text = (
        f"Prometheus scraped every {scrape_s:.3g} s and the jobs ran every {probe_s:.3g} s "
        "(medians)."
    )
    if scrape_s >= probe_s:
        text += (
            " Scrapes are not more frequent than runs, so probes that end between the same two "
            "scrapes are lost but for the last: scrape more often than the jobs run."
        )
    return text


def _utc(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
