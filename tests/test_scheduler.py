"""ProbeScheduler on the real APScheduler against the Ollama double: first-run pacing, the
jitter bound, the duty-cycle stretch, overrun skips, and what lag and busy time count.

The planned times are APScheduler's own (the scheduled run times of its submission events), so
they are what the trigger returned and what the schedule-lag histogram measures from.
"""

from __future__ import annotations

import itertools
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)

from exporter.config import Config, load_config, parse_config
from exporter.exposition.scrape import Exposition
from exporter.gpu import DisabledGpuReader
from exporter.probing.jobs import JobKey, ProbeResult
from exporter.probing.pacing import Pacing
from exporter.probing.runner import ProbeRunner
from exporter.probing.scheduler import JITTER_RATIO, STARTUP_RATE, ProbeScheduler
from exporter.probing.targets import Target
from exporter.results import ResultStore
from exporter.service import Service
from tests.exporter_process import Samples, parse_samples, series_of, value, wait_until
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble

SLOT = 1 / STARTUP_RATE
PROBES = "ollama_probes_total"
# datetime holds microseconds, so planned times read back are rounded to them.
ROUNDING = 2e-6


class Rig:
    """One target, runner and ProbeScheduler, with every job submission's planned time noted,
    and every run's end and overrun skip, in the order APScheduler reported them."""

    def __init__(
        self,
        double: OllamaDouble,
        clients: tuple[httpx.Client, httpx.Client],
        *,
        prompts: int = 1,
        interval: str = "600s",
        probe: dict[str, Any] | None = None,
        api_client: httpx.Client | None = None,
    ) -> None:
        settings: dict[str, Any] = {"timeout": "10s", "max_duty_cycle": 1, **(probe or {})}
        self.config: Config = parse_config(
            {
                "targets": [{"name": "local", "url": double.url}],
                "prompts": [
                    {"id": f"p{i}", "text": "Why are avocados healthy?", "interval": interval}
                    for i in range(prompts)
                ],
                "probe": settings,
                "gpu": {"enabled": False},
            },
            "test.yaml",
            {},
        )
        self.store = ResultStore()
        self.target = Target(self.config.targets[0], api_client or clients[0], clients[1])
        pacing = Pacing()
        self.exposition = Exposition(
            self.store, lambda: [self.target], pacing=pacing, live_collectors=()
        )
        runner = ProbeRunner(self.config, DisabledGpuReader())
        self.scheduler = ProbeScheduler(self.store, runner, pacing)
        self._lock = threading.Lock()
        self._planned: dict[str, float] = {}
        self.events: list[tuple[int, str, float]] = []  # (event code, job id, planned time)
        # The one reach inside: APScheduler's events tell the planned time of each run.
        events = EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_MAX_INSTANCES
        self.scheduler._scheduler.add_listener(self._noted, events)

    def _noted(self, event: JobEvent) -> None:
        if isinstance(event, JobSubmissionEvent):
            planned: datetime = event.scheduled_run_times[-1]  # coalesced: the last one
        else:
            assert isinstance(event, JobExecutionEvent)
            planned = event.scheduled_run_time
        with self._lock:
            if event.code == EVENT_JOB_SUBMITTED:
                self._planned.setdefault(event.job_id, planned.timestamp())
            self.events.append((event.code, event.job_id, planned.timestamp()))

    def runs(self, job_id: str, code: int = EVENT_JOB_SUBMITTED) -> list[float]:
        """Planned times of the job's runs submitted (or ended, or skipped) so far, in order."""
        with self._lock:
            return [t for c, j, t in self.events if c == code and j == job_id]

    def planned(self, prefix: str = "probe:") -> dict[str, float]:
        """The planned time of each job's first run (of jobs submitted so far)."""
        with self._lock:
            return {job: t for job, t in self._planned.items() if job.startswith(prefix)}

    def __enter__(self) -> Rig:
        self.scheduler.start([self.target])
        return self

    def __exit__(self, *exc: object) -> None:
        self.scheduler.shutdown()


def assert_paced(planned: list[float], not_before: float) -> None:
    """First runs one slot apart, the first no earlier than `not_before`."""
    planned = sorted(planned)
    assert planned[0] >= not_before - ROUNDING
    gaps = [b - a for a, b in itertools.pairwise(planned)]
    # Never closer than a slot (the first job's slot is its add time, which APScheduler reads a
    # moment later); a slot exactly while the jobs are added faster than the rate.
    assert min(gaps) >= SLOT - 0.001, gaps
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(SLOT, abs=ROUNDING), gaps
    # The last within N slots of the first (the slack covers a stalled add on a loaded machine).
    assert planned[-1] - planned[0] <= len(planned) * SLOT + 0.25


# --- first runs are paced -------------------------------------------------------------------


def models(n: int, prefix: str = "m") -> list[ModelScript]:
    return [ModelScript(f"{prefix}{i:02d}:1b", resident=True) for i in range(n)]


def test_first_runs_at_start_up_are_paced_at_the_startup_rate(clients: Any) -> None:
    with OllamaDouble(models(8)) as double:
        rig = Rig(double, clients, prompts=5, probe={"concurrency_per_target": 40})
        started = time.time()
        with rig:
            wait_until(rig.scheduler.ready, 20, "every job's first run")
            planned = rig.planned()
            others = rig.planned("health:") | rig.planned("inventory:")
        assert len(planned) == 40
        assert_paced(list(planned.values()), not_before=started)
        # Health and inventory are not paced: both were planned before the first probe.
        assert len(others) == 2
        assert max(others.values()) <= min(planned.values()) + ROUNDING


def test_jobs_added_by_a_later_inventory_refresh_are_paced_too(clients: Any) -> None:
    # The inventory job's second run is planned when its first is submitted, before the first
    # listing is known, so at the health interval (the retry interval); both are short here.
    probe = {
        "concurrency_per_target": 40,
        "inventory_interval": "200ms",
        "health_interval": "200ms",
    }
    with (
        OllamaDouble(models(2)) as double,
        Rig(double, clients, prompts=5, probe=probe) as rig,
    ):
        wait_until(rig.scheduler.ready, 20, "the first jobs' first runs")
        first = rig.planned()
        added = time.time()
        double.set_models(models(2) + models(6, prefix="new"))
        wait_until(lambda: len(rig.planned()) == 40, 20, "the new jobs' first runs")
        later = {job: t for job, t in rig.planned().items() if job not in first}
        assert len(later) == 30
        assert_paced(list(later.values()), not_before=added)


def write_config(
    path: Path,
    url: str,
    prompts: int,
    interval: str = "600s",
    listings: str = "5m",
    timeout: str = "10s",
) -> Path:
    listed = ", ".join(
        f"{{id: p{i}, text: 'prompt p{i}', interval: {interval}}}" for i in range(prompts)
    )
    text = f"""\
        targets: [{{name: local, url: "{url}"}}]
        prompts: [{listed}]
        probe: {{timeout: {timeout}, concurrency_per_target: 60, max_duty_cycle: 1,
                 inventory_interval: {listings}}}
        gpu: {{enabled: false}}
        """
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def prompt_of(request: Any) -> str:
    """The prompt id a probe request was sent for (its text ends with "prompt pN")."""
    messages = request.body["messages"]
    return str(messages[-1]["content"]).rsplit(" ", 1)[-1]


@pytest.fixture
def service_on(tmp_path: Path) -> Iterator[Any]:
    """Start a Service on a config file written by write_config; stopped at the end."""
    started: list[Service] = []

    def start(path: Path) -> Service:
        service = Service(load_config(path), path, DisabledGpuReader())
        started.append(service)
        service.start()
        wait_until(service.ready, 20, "the first configuration's first runs")
        return service

    yield start
    for service in started:
        service.stop()


def test_a_reload_probes_only_the_jobs_it_adds_and_paces_them(
    tmp_path: Path, service_on: Any
) -> None:
    """Seen from Ollama: a reload adding 4 prompts to 12 models sends 48 first probes over 48
    slots; the 12 jobs it keeps are not probed again (a re-probe cold-loads every model)."""
    with OllamaDouble(models(12)) as double:
        path = write_config(tmp_path / "exporter.yaml", double.url, prompts=1)
        service = service_on(path)
        write_config(path, double.url, prompts=5)
        before = len(double.requests("/api/chat"))
        reloaded = time.perf_counter()
        assert service.reload().ok
        arrivals = double.wait_for_requests(before + 48, "/api/chat", timeout=20)[before:]
        # The kept prompt p0 would have been re-probed among the first runs, paced with them.
        assert sorted({prompt_of(r) for r in arrivals}) == ["p1", "p2", "p3", "p4"]
        # APScheduler never runs a job before its planned time, and Ollama sees a probe
        # after its run started: the k-th first probe to arrive comes k slots late or later.
        offsets = sorted(r.received_at - reloaded for r in arrivals)
        early = [(k, t) for k, t in enumerate(offsets) if t < k * SLOT]
        assert early == [], f"(k, seconds after the reload) before slot k: {early}"


def test_a_reload_of_an_unchanged_file_probes_nothing(tmp_path: Path, service_on: Any) -> None:
    with OllamaDouble(models(3)) as double:
        path = write_config(tmp_path / "exporter.yaml", double.url, prompts=2, listings="300ms")
        service = service_on(path)
        before = len(double.requests("/api/chat"))
        jobs = series_of(parse_samples(service.exposition.render().decode()), PROBES)
        assert service.reload().ok
        # Re-probes would be first runs, paced 20 ms apart from the reload: all six would have
        # arrived before the second listing after it (300 ms or more later).
        listings = len(double.requests("/api/tags"))
        double.wait_for_requests(listings + 2, "/api/tags", timeout=10)
        assert len(double.requests("/api/chat")) == before
        assert series_of(parse_samples(service.exposition.render().decode()), PROBES) == jobs


def test_a_shortened_interval_is_shown_and_planned_at_the_reload(
    tmp_path: Path, service_on: Any
) -> None:
    """30 min -> 2 s: the interval gauge says 2 s at once, and the next probe comes about 2 s
    after the last, not 30 minutes later (OllamaProbesStale compares with the gauge)."""
    with OllamaDouble(models(1)) as double:
        path = write_config(
            tmp_path / "exporter.yaml", double.url, prompts=1, interval="30m", timeout="1s"
        )
        service = service_on(path)
        key = JobKey("local", "m00:1b", "p0")
        interval = "ollama_probe_interval_seconds"
        labels = {"target": "local", "model": "m00:1b", "prompt": "p0"}
        assert (
            value(parse_samples(service.exposition.render().decode()), interval, **labels) == 1800
        )
        assert service.store.get(key) is not None  # it ran: the next run is planned from it
        before = len(double.requests("/api/chat"))
        write_config(path, double.url, prompts=1, interval="2s", timeout="1s")
        reloaded = time.perf_counter()
        assert service.reload().ok
        samples = parse_samples(service.exposition.render().decode())
        assert value(samples, interval, **labels) == 2
        probe = double.wait_for_requests(before + 1, "/api/chat", timeout=10)[before]
        # The last probe ended before the reload: the next is due within the new interval and
        # its jitter of it (plus a second's slack for a loaded machine).
        assert probe.received_at - reloaded < 2 * 1.1 + 1.0


# --- the duty cycle counts the probe, not the exporter ----------------------------------------

PS_DELAY = 0.4  # a slow /api/ps look-up before each probe


@pytest.fixture
def slow_ps_client() -> Iterator[httpx.Client]:
    """An API client whose /api/ps requests take PS_DELAY longer, as from a loaded Ollama."""

    def slow(request: httpx.Request) -> None:
        if request.url.path == "/api/ps":
            time.sleep(PS_DELAY)  # latency to simulate, not a wait for another thread

    with httpx.Client(trust_env=False, event_hooks={"request": [slow]}) as client:
        yield client


@pytest.mark.parametrize(
    ("script", "timeout", "least"),
    [
        (ModelScript("m:1b", resident=True, first_token_delay=0.2), "10s", 0.2),
        (ModelScript("m:1b", resident=True, fault=Fault.HANG_BEFORE_HEADERS), "300ms", 0.3),
    ],
    ids=["answered", "timed-out"],
)
def test_duty_counts_the_probes_own_time_not_the_look_up_before_it(
    clients: Any, slow_ps_client: httpx.Client, script: ModelScript, timeout: str, least: float
) -> None:
    with (
        OllamaDouble([script]) as double,
        Rig(double, clients, probe={"timeout": timeout}, api_client=slow_ps_client) as rig,
    ):
        wait_until(rig.scheduler.ready, 20, "the first probe")
        result = rig.store.latest()[JobKey("local", "m:1b", "p0")]
        assert isinstance(result, ProbeResult)
        duration = result.outcome.duration_s
        assert duration >= least  # the probe's time: the answer's delay, or the timeout
        duty = rig.scheduler.pacing.duty("local")
        assert duty is not None
        # The job's projected duty is its last recorded duration over its interval (600 s): the
        # probe's duration exactly, without the slow /api/ps look-up the run also waited for.
        assert duty.projected * 600 == pytest.approx(duration, abs=1e-6)
        assert duty.projected * 600 < least + PS_DELAY
        # The busy counter adds the same seconds, and the slots the ratio rule divides by.
        samples = _samples(rig)
        assert value(samples, BUSY, target="local") == pytest.approx(duration, abs=1e-6)
        assert value(samples, SLOTS, target="local") == 1


# --- what the schedule-lag histogram counts ---------------------------------------------------


LAG = "ollama_exporter_probe_schedule_lag_seconds"
WAIT = "ollama_exporter_probe_queue_wait_seconds"
BUSY = "ollama_exporter_probe_busy_seconds_total"
SLOTS = "ollama_exporter_probe_concurrency_slots"


def _samples(rig: Rig) -> Samples:
    return parse_samples(rig.exposition.render().decode())


def test_schedule_lag_counts_the_look_up_before_the_request(
    clients: Any, slow_ps_client: httpx.Client
) -> None:
    # The probe starts when its request goes out; a run held up before that (here by a slow
    # /api/ps look-up, as on a loaded exporter or Ollama) started late, and the histogram says so.
    script = ModelScript("m:1b", resident=True)
    with (
        OllamaDouble([script]) as double,
        Rig(double, clients, api_client=slow_ps_client) as rig,
    ):
        wait_until(rig.scheduler.ready, 20, "the first probe")
        samples = _samples(rig)
    assert value(samples, f"{LAG}_count", target="local") == 1
    assert value(samples, f"{LAG}_bucket", target="local", le="0.25") == 0
    total = value(samples, f"{LAG}_sum", target="local")
    assert total is not None and total >= PS_DELAY


def test_waiting_for_a_slot_is_queue_wait_not_lag(clients: Any) -> None:
    # Concurrency 1 and two jobs: the second waits for the first probe (0.5 s) to end. That wait
    # is the target's queue, exported as queue wait; the second run's lag stays small.
    script = ModelScript("m:1b", resident=True, first_token_delay=0.5)
    with OllamaDouble([script]) as double, Rig(double, clients, prompts=2) as rig:
        wait_until(rig.scheduler.ready, 20, "both first probes")
        samples = _samples(rig)
    assert value(samples, f"{LAG}_count", target="local") == 2
    assert value(samples, f"{LAG}_bucket", target="local", le="0.25") == 2
    assert value(samples, f"{WAIT}_bucket", target="local", le="0.25") == 1  # the first: no wait
    waited = value(samples, f"{WAIT}_sum", target="local")
    assert waited is not None and waited >= 0.4


# --- worker threads ---------------------------------------------------------------------------


def test_a_target_never_has_more_workers_than_its_concurrency_slots(clients: Any) -> None:
    # Six runs due within 0.1 s, each probe 0.2 s long, three slots: the pool starts workers as
    # runs need them, never more than the slots (nor the upkeep pool more than its four).
    before = set(threading.enumerate())
    most = {"probe-local_": 0, "exporter-upkeep_": 0}

    def workers(prefix: str) -> int:
        new = (t for t in threading.enumerate() if t not in before)
        return sum(1 for t in new if t.name.startswith(prefix))

    def all_ran() -> bool:
        for prefix in most:
            most[prefix] = max(most[prefix], workers(prefix))
        return rig.scheduler.ready()

    script = ModelScript("m:1b", resident=True, first_token_delay=0.2)
    with OllamaDouble([script]) as double:
        rig = Rig(double, clients, prompts=6, probe={"concurrency_per_target": 3})
        with rig:
            wait_until(all_ran, 20, "six first probes, three at a time")
            after = workers("probe-local_"), workers("exporter-upkeep_")
    assert 1 <= most["probe-local_"] <= 3 and after[0] <= 3
    assert 1 <= most["exporter-upkeep_"] <= 4 and after[1] <= 4


# --- later runs: the jitter bound, the duty-cycle stretch, overrun skips ----------------------

# datetime keeps microseconds, and a plan is the previous one plus a timedelta (microseconds
# too): each gap read back may be off by a couple of them.
GAP_ROUNDING = 5e-6


def gaps(planned: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(planned)]


def test_later_runs_follow_the_interval_within_the_jitter_and_none_is_skipped_or_doubled(
    clients: Any,
) -> None:
    """Every job's first run at its paced slot, each later one an interval plus at most
    JITTER_RATIO of it after the previous plan; every plan is run once."""
    interval = 0.3
    jobs = [f"probe:local:m{m:02d}:1b:p{p}" for m in range(3) for p in range(2)]
    with OllamaDouble(models(3)) as double:
        rig = Rig(
            double,
            clients,
            prompts=2,
            interval=f"{interval * 1000:.0f}ms",
            probe={"timeout": "200ms", "concurrency_per_target": len(jobs)},
        )
        started = time.time()
        with rig:
            wait_until(
                lambda: all(len(rig.runs(j, EVENT_JOB_EXECUTED)) >= 6 for j in jobs),
                20,
                "six runs of every job",
            )
        chats = len(double.requests("/api/chat"))
    first = [rig.runs(j)[0] for j in jobs]
    assert_paced(first, not_before=started)
    later: list[float] = []
    for job in jobs:
        planned = rig.runs(job)
        assert planned == sorted(set(planned)), f"{job}: a plan submitted twice"
        later += gaps(planned)
    assert min(later) >= interval - GAP_ROUNDING
    assert max(later) <= interval * (1 + JITTER_RATIO) + GAP_ROUNDING
    # The jitter is drawn, not constant: 30-odd gaps all within 1 % of it would be a 1e-30 draw.
    assert max(later) - min(later) > interval * JITTER_RATIO * 0.01
    assert rig.runs(jobs[0], EVENT_JOB_MAX_INSTANCES) == []
    # Each run sent one probe: none doubled, none lost (a run may still be in flight).
    submitted = sum(len(rig.runs(j)) for j in jobs)
    ended = sum(len(rig.runs(j, EVENT_JOB_EXECUTED)) for j in jobs)
    assert ended <= chats <= submitted


def test_the_duty_cycle_stretch_lengthens_the_next_intervals(clients: Any) -> None:
    """One job whose probes take about half its interval, against max_duty_cycle 0.25: from the
    run after the first probe ended, each gap is the interval times that probe's stretch
    (duration / interval / max_duty_cycle), plus the jitter."""
    interval, limit = 0.3, 0.25
    job, key = "probe:local:m:1b:p0", JobKey("local", "m:1b", "p0")
    durations: dict[float, float] = {}  # planned time of a run -> its probe's duration

    def ended(event: JobEvent) -> None:
        # The run's own result: runs of one job never overlap, and the next one is planned an
        # interval or more later. (A probe cancelled by the shutdown at the end publishes none.)
        assert isinstance(event, JobExecutionEvent)
        result = rig.store.get(key)
        assert isinstance(result, ProbeResult)
        durations[event.scheduled_run_time.timestamp()] = result.outcome.duration_s

    script = ModelScript("m:1b", resident=True, first_token_delay=interval / 2)
    with OllamaDouble([script]) as double:
        rig = Rig(
            double,
            clients,
            interval=f"{interval * 1000:.0f}ms",
            probe={"timeout": "250ms", "max_duty_cycle": limit},
        )
        rig.scheduler._scheduler.add_listener(ended, EVENT_JOB_EXECUTED)

        def five_runs() -> tuple[dict[float, float], Samples] | None:
            """The runs so far and an exposition that counted exactly them (the busy counter
            holds their durations summed), once there are five."""
            ran = dict(durations)
            samples = _samples(rig)
            busy = value(samples, BUSY, target="local")
            if len(ran) < 5 or busy != pytest.approx(sum(ran.values()), abs=1e-9):
                return None
            return ran, samples

        with rig:
            ran, samples = wait_until(five_runs, 20, "five runs, counted in the busy seconds")
            planned = rig.runs(job)
    assert rig.runs(job, EVENT_JOB_MAX_INSTANCES) == []

    def stretch(duration: float) -> float:
        return max(1.0, duration / interval / limit)

    # A gap is planned when the run before it is submitted, from the stretch as the run before
    # that one left it; the first gap comes before any probe ended: unstretched.
    assert interval - GAP_ROUNDING <= planned[1] - planned[0]
    assert planned[1] - planned[0] <= interval * (1 + JITTER_RATIO) + GAP_ROUNDING
    checked = 0
    for before, (at, nxt) in zip(planned, itertools.pairwise(planned[1:]), strict=False):
        if before not in ran:
            continue
        expected = interval * stretch(ran[before])
        assert expected > interval * (1 + JITTER_RATIO)  # a real stretch, beyond the jitter
        assert expected - GAP_ROUNDING <= nxt - at <= expected * (1 + JITTER_RATIO) + 1e-5
        checked += 1
    assert checked >= 3
    # What the exporter shows with them: the stretch the last probe left.
    shown = value(samples, "ollama_exporter_probe_interval_stretch_ratio", target="local")
    assert shown == pytest.approx(stretch(ran[max(ran)]))


def test_a_run_still_going_when_the_next_is_due_skips_it_as_overrun(
    clients: Any, slow_ps_client: httpx.Client
) -> None:
    """Runs of 0.4 s look-up plus 0.2 s probe against a 0.5 s interval: each next plan falls
    inside the run before it, is skipped and counted as an overrun skip, never run twice."""
    interval = 0.5
    job = "probe:local:m:1b:p0"
    labels = {"target": "local", "model": "m:1b", "prompt": "p0"}
    script = ModelScript("m:1b", resident=True, first_token_delay=0.2)
    assert PS_DELAY + script.first_token_delay > interval * (1 + JITTER_RATIO)
    with OllamaDouble([script]) as double:
        rig = Rig(
            double,
            clients,
            interval=f"{interval * 1000:.0f}ms",
            probe={"timeout": "400ms"},
            api_client=slow_ps_client,
        )
        with rig:
            wait_until(
                lambda: len(rig.runs(job, EVENT_JOB_MAX_INSTANCES)) >= 2, 20, "two overrun skips"
            )
        # Stopped (its thread joined): no run is submitted or skipped any more.
        with rig._lock:
            events = [(code, t) for code, j, t in rig.events if j == job]
        samples = _samples(rig)
        chats = double.requests("/api/chat")
    skips = [t for code, t in events if code == EVENT_JOB_MAX_INSTANCES]
    shown = value(samples, "ollama_probe_skips_total", reason="overrun", **labels)
    assert shown == len(skips)
    # Each skip came while the run submitted before it had not ended.
    running = False
    for code, _ in events:
        if code == EVENT_JOB_SUBMITTED:
            assert not running, "a run submitted while the previous one was still going"
            running = True
        elif code == EVENT_JOB_EXECUTED:
            running = False
        else:
            assert running, "an overrun skip with no run in progress"
    # One probe per run, never two at once at Ollama.
    for a, b in itertools.pairwise(chats):
        assert a.last_byte_at is not None and a.last_byte_at <= b.received_at
