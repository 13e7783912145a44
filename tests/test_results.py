"""ResultStore: the latest result per job and its failure streak (consecutive failed probes).

The streak is what the status page shows as "failing since" and what a later gauge,
ollama_probe_consecutive_failures, will export: failed probes add one, a successful probe
resets it (also when its answer fails a check: the probe worked), skips leave it alone.
"""

from __future__ import annotations

from exporter.probe import ProbeOutcome, Reason
from exporter.results import FailureStreak, JobKey, ProbeResult, ProbeSkip, ResultStore

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


def test_an_unknown_job_has_no_failures() -> None:
    store = ResultStore()
    assert store.consecutive_failures(KEY) == 0
    assert store.states() == {}


def test_failed_probes_count_up_from_the_first_failure_of_the_streak() -> None:
    store = ResultStore()
    store.put(succeeded(100.0))
    for at in (400.0, 700.0, 1_000.0):
        store.put(failed(at))
    assert store.consecutive_failures(KEY) == 3
    state = store.states()[KEY]
    assert state.streak == FailureStreak(count=3, since=400.0)
    assert state.latest.finished_at == 1_000.0


def test_a_successful_probe_ends_the_streak() -> None:
    store = ResultStore()
    store.put(failed(100.0))
    store.put(failed(200.0))
    store.put(succeeded(300.0))
    assert store.states()[KEY].streak == FailureStreak()
    store.put(failed(400.0))
    assert store.states()[KEY].streak == FailureStreak(count=1, since=400.0)


def test_a_failed_answer_check_is_a_successful_probe() -> None:
    store = ResultStore()
    store.put(failed(100.0))
    store.put(succeeded(200.0, checks={"contains_any": False}))
    assert store.consecutive_failures(KEY) == 0


def test_skips_leave_the_streak_alone() -> None:
    store = ResultStore()
    store.put(failed(100.0))
    store.put(skipped(200.0))
    store.put(failed(300.0))
    store.put(skipped(400.0))
    state = store.states()[KEY]
    assert state.streak == FailureStreak(count=2, since=100.0)
    assert isinstance(state.latest, ProbeSkip)  # the page still shows the latest run


def test_jobs_count_separately_and_forget_drops_the_streak() -> None:
    store = ResultStore()
    store.put(failed(100.0))
    store.put(failed(100.0, key=OTHER))
    store.put(failed(200.0, key=OTHER))
    assert (store.consecutive_failures(KEY), store.consecutive_failures(OTHER)) == (1, 2)
    store.forget({OTHER})
    assert store.consecutive_failures(OTHER) == 0
    assert set(store.states()) == {KEY}
    # A job that comes back starts a new streak, not the old one.
    store.put(failed(500.0, key=OTHER))
    assert store.states()[OTHER].streak == FailureStreak(count=1, since=500.0)
