"""DutyCycle: busy seconds in one-minute buckets, the hour's window, projection and stretch.

Times are made up Unix seconds; T0 starts a minute, so bucket edges fall on T0 + k * 60.
"""

from __future__ import annotations

import random
import tracemalloc

import pytest

from exporter.duty import BUCKET_S, WINDOW_S, DutyCycle

T0 = 1_790_000_040.0  # a multiple of 60
assert T0 % BUCKET_S == 0


def exact_ratio(spans: list[tuple[float, float]], now: float, since: float) -> float:
    """The ratio as per-span accounting computes it (the exporter before buckets)."""
    horizon = now - WINDOW_S
    busy = sum(end - max(start, horizon) for start, end in spans if end >= horizon)
    return busy / max(min(WINDOW_S, now - since), 1e-9)


def test_span_crossing_a_minute_boundary_is_split_between_its_buckets() -> None:
    duty = DutyCycle(0.25, start=T0)
    duty.record("a", T0 + 50, T0 + 70, 300)  # 10 s in the first minute, 10 s in the second
    assert duty.buckets == 2
    duty.update(T0 + 120)
    assert duty.ratio == pytest.approx(20 / 120)
    # An hour later the first minute is the window's oldest, 3/4 inside it: its 10 s count as
    # 7.5 s (spread evenly over the minute); the second minute's 10 s count whole.
    now = T0 + WINDOW_S + 15
    duty.update(now)
    assert duty.buckets == 2
    assert duty.ratio == pytest.approx((7.5 + 10) / WINDOW_S)
    # A minute later the first bucket is gone and the second is the partial one.
    duty.update(now + 60)
    assert duty.buckets == 1
    assert duty.ratio == pytest.approx(7.5 / WINDOW_S)


def test_window_slides_past_old_buckets() -> None:
    duty = DutyCycle(0.25, start=T0)
    for minute in range(0, 61, 10):  # 6 s of probing every ten minutes
        duty.record("a", T0 + minute * 60, T0 + minute * 60 + 6, 600)
    duty.update(T0 + 60 * 60)
    assert duty.ratio == pytest.approx(7 * 6 / WINDOW_S)  # minutes 0, 10, ..., 60
    assert duty.buckets == 7
    for minute in range(70, 120, 10):
        duty.record("a", T0 + minute * 60, T0 + minute * 60 + 6, 600)
    duty.update(T0 + 120 * 60)
    assert duty.ratio == pytest.approx(6 * 6 / WINDOW_S)  # minutes 60 (whole, at the edge) ... 110
    assert duty.buckets == 6
    duty.update(T0 + 240 * 60)  # nothing in the last hour
    assert duty.ratio == 0
    assert duty.buckets == 0


def test_ratio_since_start_when_shorter_than_the_window() -> None:
    duty = DutyCycle(0.25, start=T0)
    duty.record("a", T0 + 10, T0 + 40, 300)
    duty.update(T0 + 600)
    assert duty.ratio == pytest.approx(30 / 600)


def test_ratio_matches_per_span_accounting_within_one_bucket() -> None:
    rng = random.Random(4)
    since = T0 + 7.3
    duty = DutyCycle(0.25, start=since)
    spans: list[tuple[float, float]] = []
    t = since
    while t < since + 3 * WINDOW_S:
        start = t + rng.uniform(0, 20)
        end = start + rng.uniform(0.05, 45)  # some spans cross minute edges, one at a time
        duty.record("a", start, end, 60)
        spans.append((start, end))
        t = end
        if rng.random() < 0.2:
            duty.update(end)
            horizon = end - WINDOW_S
            edge = (horizon // BUCKET_S) * BUCKET_S
            # The documented bound: the busy seconds of the window's oldest minute / elapsed.
            oldest = sum(
                max(0.0, min(e, edge + BUCKET_S) - max(s, edge)) for s, e in spans if e > edge
            )
            elapsed = max(min(WINDOW_S, end - since), 1e-9)
            assert oldest / elapsed <= BUCKET_S / WINDOW_S + 1e-12
            assert abs(duty.ratio - exact_ratio(spans, end, since)) <= oldest / elapsed + 1e-9


def test_memory_is_bounded_whatever_the_probe_rate() -> None:
    duty = DutyCycle(0.25, start=T0)
    records = 100_000
    step = 3 * 3600 / records  # 100 000 probes over three hours, ~9 per second
    jobs = [f"job{n}" for n in range(60)]
    tracemalloc.start()
    try:
        duty.record("a", T0, T0 + 0.05, 60)
        duty.update(T0 + 0.05)
        before, _ = tracemalloc.get_traced_memory()
        most = 0
        for n in range(1, records):
            start = T0 + n * step
            duty.record(jobs[n % 60], start, start + 0.05, 60)
            if n % 100 == 0:
                duty.update(start + 0.05)
                most = max(most, duty.buckets)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert most <= 61
    # 60 jobs' projections and 61 buckets; one span per probe would hold ~33 000 (MBs).
    assert after - before < 100_000
    assert duty.ratio == pytest.approx(0.05 / step, rel=0.02)


def test_projection_uses_each_jobs_last_duration_and_stretches_past_the_limit() -> None:
    duty = DutyCycle(0.25, start=T0)
    duty.record("a", T0, T0 + 10, 60)
    duty.record("a", T0 + 60, T0 + 90, 60)  # the last duration counts: 30 s every 60 s
    duty.record("b", T0 + 100, T0 + 106, 60)
    duty.update(T0 + 120)
    assert duty.projected == pytest.approx(0.5 + 0.1)
    assert duty.stretch == pytest.approx(0.6 / 0.25)
    duty.forget("a")
    duty.update(T0 + 121)
    assert duty.projected == pytest.approx(0.1)
    assert duty.stretch == 1.0


# --- per concurrency slot, and the stretch log's hysteresis -----------------------------------


def test_the_limit_applies_per_concurrency_slot() -> None:
    """Two jobs each busy 40 % of their interval: 80 % of one slot, 40 % of each of two."""
    one, two = DutyCycle(0.5, start=T0), DutyCycle(0.5, start=T0, slots=2)
    for duty in (one, two):
        duty.record("a", T0, T0 + 40, 100)
        duty.record("b", T0 + 50, T0 + 90, 100)
        duty.update(T0 + 100)
    assert one.projected == pytest.approx(0.8) and one.stretch == pytest.approx(0.8 / 0.5)
    assert two.projected == pytest.approx(one.projected / 2) and two.stretch == 1.0
    assert two.ratio == pytest.approx(one.ratio / 2)


def stretch_events(projections: list[float]) -> list[tuple[float, str]]:
    """The log events of a DutyCycle (limit 0.25) whose single job's projection follows
    `projections`, one update each."""
    duty = DutyCycle(0.25, start=T0)
    events = []
    for i, projected in enumerate(projections):
        duty.record("a", T0 + i, T0 + i + projected * 100, 100)
        event = duty.update(T0 + i + 100)
        if event is not None:
            events.append((round(duty.stretch, 2), event))
    return events


def test_the_stretch_log_reports_a_start_large_changes_and_the_end_not_every_wobble() -> None:
    # Hovering just above the limit (1.00x-1.08x) says nothing; a real stretch starts once,
    # wobbles inside a factor of 1.5 stay quiet, a doubling is reported, and so is the end.
    wobble = [0.25, 0.251, 0.26, 0.27, 0.2505, 0.26]
    stretched = [0.3, 0.31, 0.29, 0.33, 0.3]
    doubled = [0.6, 0.58, 0.62]
    back = [0.2, 0.26, 0.2]
    events = stretch_events(wobble + stretched + doubled + back)
    assert events == [(1.2, "started"), (2.4, "changed"), (1.0, "ended")]


def test_a_stretch_that_comes_back_after_ending_is_reported_again() -> None:
    events = stretch_events([0.5, 0.1, 0.5])
    assert [e for _, e in events] == ["started", "ended", "started"]
