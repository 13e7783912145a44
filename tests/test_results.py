"""ResultStore: the record of open jobs, their latest result and failure streak, and their tallies.

The streak is what the status page shows as "failing since" and what the gauge
ollama_probe_consecutive_failures exports, from the same tally: failed probes add one, a
successful probe resets it (also when its answer fails a check: the probe worked), skips leave
it alone. Only open jobs are recorded: a result for a job that was never opened, or closed since,
changes nothing.
"""

from __future__ import annotations

from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.probe import ProbeOutcome, Reason
from exporter.results import FailureStreak, ResultStore

KEY = JobKey("local", "gemma3:12b", "liveness")
OTHER = JobKey("local", "mistral:7b", "liveness")


def failed(at: float, key: JobKey = KEY) -> ProbeResult:
    outcome = ProbeOutcome(reason=Reason.CONNECT, detail="refused", duration_s=0.01)
    return ProbeResult(key=key, outcome=outcome, finished_at=at, interval_s=300.0)


def succeeded(at: float, checks: dict[str, bool] | None = None) -> ProbeResult:
    outcome = ProbeOutcome(reason=None, detail="ok", duration_s=1.0, answer="Avocado.")
    return ProbeResult(KEY, outcome, finished_at=at, interval_s=300.0, checks=checks or {})


def skipped(at: float) -> ProbeSkip:
    return ProbeSkip(KEY, "not_loaded", "skipped: not_loaded", finished_at=at, interval_s=300.0)


def opened(*keys: JobKey) -> ResultStore:
    store = ResultStore()
    for key in keys or (KEY,):
        store.open(key, ("contains_any",))
    return store


def test_an_unknown_job_has_no_failures() -> None:
    store = ResultStore()
    assert store.consecutive_failures(KEY) == 0
    assert store.states() == {}


def test_an_open_job_has_counters_at_zero_and_no_state_yet() -> None:
    store = opened()
    assert store.states() == {} and store.get(KEY) is None
    tally = store.tallies()[1][KEY]
    assert tally.probes == 0 and set(tally.failures.values()) == {0.0}
    assert dict(tally.check_failures) == {"contains_any": 0.0}
    assert tally.interval_s is None  # shown once the job has run


def test_a_result_for_a_job_that_is_not_open_changes_nothing() -> None:
    store = ResultStore()
    assert store.record(failed(100.0)) is False
    store.open(KEY, ())
    store.close(KEY)
    version = store.version
    assert store.record(failed(200.0)) is False
    assert store.record(skipped(300.0)) is False
    store.set_interval(KEY, 60.0)
    assert (store.version, store.tallies()[1], store.states()) == (version, {}, {})


def test_reopening_a_known_job_keeps_its_values_and_adds_new_checks() -> None:
    store = opened()
    store.record(failed(100.0))
    store.open(KEY, ("contains_any", "regex"))
    tally = store.tallies()[1][KEY]
    assert (tally.probes, store.consecutive_failures(KEY)) == (1.0, 1)
    assert list(tally.check_failures) == ["contains_any", "regex"]


def test_every_change_gives_the_job_a_new_version() -> None:
    store = opened(KEY, OTHER)
    before = store.tallies()[1]
    store.record(failed(100.0))
    after = store.tallies()[1]
    assert after[KEY].version > before[KEY].version
    assert after[OTHER] is before[OTHER]  # the other job did not change
    store.set_interval(KEY, 60.0)  # it has run: the interval shows
    assert store.tallies()[1][KEY].interval_s == 60.0
    assert store.tallies()[1][KEY].version == store.version


def test_an_overrun_only_counts() -> None:
    store = opened()
    store.record(failed(100.0))
    overrun = ProbeSkip(KEY, "overrun", "previous run still in progress", 200.0, 300.0)
    store.record(overrun)
    tally = store.tallies()[1][KEY]
    assert tally.skips["overrun"] == 1.0
    assert (tally.last_run_at, store.get(KEY)) == (100.0, failed(100.0))


def test_failed_probes_count_up_from_the_first_failure_of_the_streak() -> None:
    store = opened()
    store.record(succeeded(100.0))
    for at in (400.0, 700.0, 1_000.0):
        store.record(failed(at))
    assert store.consecutive_failures(KEY) == 3
    state = store.states()[KEY]
    assert state.streak == FailureStreak(count=3, since=400.0)
    assert state.latest.finished_at == 1_000.0


def test_a_successful_probe_ends_the_streak() -> None:
    store = opened()
    store.record(failed(100.0))
    store.record(failed(200.0))
    store.record(succeeded(300.0))
    assert store.states()[KEY].streak == FailureStreak()
    store.record(failed(400.0))
    assert store.states()[KEY].streak == FailureStreak(count=1, since=400.0)


def test_a_failed_answer_check_is_a_successful_probe() -> None:
    store = opened()
    store.record(failed(100.0))
    store.record(succeeded(200.0, checks={"contains_any": False}))
    assert store.consecutive_failures(KEY) == 0


def test_skips_leave_the_streak_alone() -> None:
    store = opened()
    store.record(failed(100.0))
    store.record(skipped(200.0))
    store.record(failed(300.0))
    store.record(skipped(400.0))
    state = store.states()[KEY]
    assert state.streak == FailureStreak(count=2, since=100.0)
    assert isinstance(state.latest, ProbeSkip)  # the page still shows the latest run


def test_jobs_count_separately_and_closing_drops_the_streak() -> None:
    store = opened(KEY, OTHER)
    store.record(failed(100.0))
    store.record(failed(100.0, key=OTHER))
    store.record(failed(200.0, key=OTHER))
    assert (store.consecutive_failures(KEY), store.consecutive_failures(OTHER)) == (1, 2)
    store.close(OTHER)
    assert store.consecutive_failures(OTHER) == 0
    assert set(store.states()) == {KEY}
    # A job that comes back starts a new streak, not the old one.
    store.open(OTHER, ())
    store.record(failed(500.0, key=OTHER))
    assert store.states()[OTHER].streak == FailureStreak(count=1, since=500.0)
