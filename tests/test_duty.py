"""DutyCycle: the projection from each job's last duration, the stretch, and its log hysteresis.

The measured duty is Prometheus's (the ollama_exporter_probe_duty_cycle_ratio recording rule
over ollama_exporter_probe_busy_seconds_total, tested in prometheus/tests/exporter_rules_test.yml).
"""

from __future__ import annotations

import pytest

from exporter.probing.duty import CHANGE, START, DutyCycle


def test_projection_uses_each_jobs_last_duration_and_stretches_past_the_limit() -> None:
    duty = DutyCycle(0.25)
    duty.record("a", 10, 60)
    duty.record("a", 30, 60)  # the last duration counts: 30 s every 60 s
    duty.record("b", 6, 60)
    duty.update()
    assert duty.projected == pytest.approx(30 / 60 + 6 / 60)
    assert duty.stretch == pytest.approx((30 / 60 + 6 / 60) / 0.25)
    duty.forget("a")
    duty.update()
    assert duty.projected == pytest.approx(6 / 60)
    assert duty.stretch == 1.0


def test_nothing_recorded_projects_nothing() -> None:
    duty = DutyCycle(0.25, slots=4)
    assert duty.update() is None
    assert (duty.projected, duty.stretch) == (0.0, 1.0)


def test_the_limit_applies_per_concurrency_slot() -> None:
    """Two jobs each busy 40 % of their interval: 80 % of one slot, 40 % of each of two."""
    one, two = DutyCycle(0.5), DutyCycle(0.5, slots=2)
    for duty in (one, two):
        duty.record("a", 40, 100)
        duty.record("b", 40, 100)
        duty.update()
    assert one.projected == pytest.approx(0.8) and one.stretch == pytest.approx(0.8 / 0.5)
    assert two.projected == pytest.approx(one.projected / 2) and two.stretch == 1.0


def test_a_new_limit_or_slot_count_applies_at_the_next_update() -> None:
    duty = DutyCycle(0.25)
    duty.record("a", 30, 60)
    duty.update()
    assert duty.stretch == pytest.approx(0.5 / 0.25)
    duty.max_duty, duty.slots = 0.5, 2
    duty.update()
    assert duty.projected == pytest.approx(0.5 / 2)
    assert duty.stretch == 1.0


# --- the stretch log's hysteresis -------------------------------------------------------------


def stretch_events(projections: list[float]) -> list[tuple[float, str]]:
    """The log events of a DutyCycle (limit 0.25) whose single job's projection follows
    `projections`, one update each."""
    duty = DutyCycle(0.25)
    events = []
    for projected in projections:
        duty.record("a", projected * 100, 100)
        event = duty.update()
        if event is not None:
            events.append((round(duty.stretch, 2), event))
    return events


def test_the_stretch_log_reports_a_start_large_changes_and_the_end_not_every_wobble() -> None:
    # Hovering just above the limit (1.00x-1.08x) says nothing; a real stretch starts once,
    # wobbles inside a factor of 1.5 stay quiet, a doubling is reported, and so is the end.
    assert (START, CHANGE) == (1.1, 1.5)  # the thresholds the sequences below are chosen for
    wobble = [0.25, 0.251, 0.26, 0.27, 0.2505, 0.26]
    stretched = [0.3, 0.31, 0.29, 0.33, 0.3]
    doubled = [0.6, 0.58, 0.62]
    back = [0.2, 0.26, 0.2]
    events = stretch_events(wobble + stretched + doubled + back)
    assert events == [(1.2, "started"), (2.4, "changed"), (1.0, "ended")]


def test_a_stretch_that_comes_back_after_ending_is_reported_again() -> None:
    events = stretch_events([0.5, 0.1, 0.5])
    assert [e for _, e in events] == ["started", "ended", "started"]
