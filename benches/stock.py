"""The probe series as stock prometheus_client objects: the baseline and the reference.

This is how exporter/metrics.py held the probe series before it kept plain per-job state (see
benches/findings.md): one prometheus_client child per series, rendered by generate_latest. The
scrape-cost benchmark renders it as its baseline, and tests/test_metrics_reference.py checks
that the exporter's own rendering gives the same lines for the same writes.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import metrics as m
from exporter.probe import BackendTimings, Reason
from exporter.results import JobKey, ProbeResult, ProbeSkip

JOB = ("target", "model", "prompt")
GPU = (*JOB, "gpu", "uuid")


class StockProbeMetrics:
    """Series about probes, one set per (target, model, prompt) job, in prometheus_client."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Names and help texts come from the exporter's families: the reference checks the
        # rendering, not the wording.
        def counter(family: m.Family, extra: tuple[str, ...] = ()) -> Counter:
            name = family.name.removesuffix("_total")
            return Counter(name, family.help, (*JOB, *extra), registry=registry)

        def gauge(family: m.Family, labels: tuple[str, ...] = JOB) -> Gauge:
            return Gauge(family.name, family.help, labels, registry=registry)

        def histogram(family: m.Family, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(family.name, family.help, JOB, registry=registry, buckets=buckets)

        self.probes = counter(m.PROBES)
        self.failures = counter(m.FAILURES, ("reason",))
        self.skips = counter(m.SKIPS, ("reason",))
        self.tokens = counter(m.TOKENS)
        self.eval_seconds = counter(m.EVAL_SECONDS)
        self.cold_starts = counter(m.COLD_STARTS)
        self.check_failures = counter(m.CHECK_FAILURES, ("check",))
        self.duration = histogram(m.DURATION, m.DURATION_BUCKETS)
        self.ttft = histogram(m.TTFT, m.TTFT_BUCKETS)
        self.success = gauge(m.SUCCESS)
        self.consecutive_failures = gauge(m.CONSECUTIVE_FAILURES)
        self.last_duration = gauge(m.LAST_DURATION)
        self.last_ttft = gauge(m.LAST_TTFT)
        self.answer = {name: gauge(family) for name, family in m.ANSWER.items()}
        self.cold_start = gauge(m.COLD_START)
        self.interval = gauge(m.INTERVAL)
        self.last_run = gauge(m.LAST_RUN)
        self.last_success = gauge(m.LAST_SUCCESS)
        self.check_passed = gauge(m.CHECK_PASSED, (*JOB, "check"))
        self.gpu_util = gauge(m.GPU_UTIL, GPU)
        self.gpu_peak = gauge(m.GPU_PEAK, GPU)

    def register(self, key: JobKey, checks: Iterable[str]) -> None:
        """Create a job's counters and histograms at zero so rate() works from the start."""
        labels = key.labels()
        for metric in (self.probes, self.tokens, self.eval_seconds, self.cold_starts):
            metric.labels(*labels)
        self.duration.labels(*labels)
        self.ttft.labels(*labels)
        for reason in Reason:
            self.failures.labels(*labels, reason.value)
        for skip in m.SKIP_REASONS:
            self.skips.labels(*labels, skip)
        for check in checks:
            self.check_failures.labels(*labels, check)

    def remove(self, key: JobKey) -> None:
        """Drop every series of a job that no longer exists."""
        match = dict(zip(JOB, key.labels(), strict=True))
        for metric in self._all():
            metric.remove_by_labels(match)

    def observe(self, result: ProbeResult) -> None:
        """Apply one finished probe to every series it touches."""
        labels = result.key.labels()
        outcome = result.outcome
        self.probes.labels(*labels).inc()
        self.last_duration.labels(*labels).set(outcome.duration_s)
        self.last_run.labels(*labels).set(result.finished_at)
        self.interval.labels(*labels).set(result.interval_s)
        self.success.labels(*labels).set(1 if outcome.success else 0)
        # The rule written out again rather than imported, so the reference checks it.
        if outcome.success:
            self.consecutive_failures.labels(*labels).set(0)
        else:
            self.consecutive_failures.labels(*labels).inc()
        if result.cold_start is not None:
            self.cold_start.labels(*labels).set(1 if result.cold_start else 0)
            if result.cold_start:
                self.cold_starts.labels(*labels).inc()
        if outcome.reason is not None:
            self.failures.labels(*labels, outcome.reason.value).inc()
            return
        self._observe_success(result)

    def skip(self, item: ProbeSkip) -> None:
        labels = item.key.labels()
        self.skips.labels(*labels, item.reason).inc()
        if item.reason == "overrun":
            return  # the job did not run: staleness must stay visible
        self.last_run.labels(*labels).set(item.finished_at)
        self.interval.labels(*labels).set(item.interval_s)

    def _observe_success(self, result: ProbeResult) -> None:
        labels = result.key.labels()
        outcome = result.outcome
        server = outcome.reported
        self.duration.labels(*labels).observe(outcome.duration_s)
        self.last_success.labels(*labels).set(result.finished_at)
        if outcome.ttft_s is not None:
            self.ttft.labels(*labels).observe(outcome.ttft_s)
            self.last_ttft.labels(*labels).set(outcome.ttft_s)
        self.answer["response_characters"].labels(*labels).set(result.response_characters)
        self.answer["response_words"].labels(*labels).set(result.response_words)
        if server is not None:
            self._observe_server(labels, server)
        for check, passed in result.checks.items():
            self.check_passed.labels(*labels, check).set(1 if passed else 0)
            if not passed:
                self.check_failures.labels(*labels, check).inc()
        for usage in result.gpu:
            gpu_labels = (*labels, str(usage.index), usage.uuid)
            if usage.mean_utilization_ratio is not None:
                self.gpu_util.labels(*gpu_labels).set(usage.mean_utilization_ratio)
            if usage.peak_memory_used_bytes is not None:
                self.gpu_peak.labels(*gpu_labels).set(usage.peak_memory_used_bytes)

    def _observe_server(self, labels: tuple[str, str, str], server: BackendTimings) -> None:
        for name, value in m.server_figures(server).items():
            # Ollama omits zero values (omitempty): a missing figure is 0, not unknown.
            self.answer[name].labels(*labels).set(value or 0)
        if server.eval_count and server.eval_s:
            self.tokens.labels(*labels).inc(server.eval_count)
            self.eval_seconds.labels(*labels).inc(server.eval_s)
            self.answer["tokens_per_second"].labels(*labels).set(server.eval_count / server.eval_s)

    def _all(self) -> list[Counter | Gauge | Histogram]:
        return [
            metric
            for metric in vars(self).values()
            if isinstance(metric, Counter | Gauge | Histogram)
        ] + list(self.answer.values())
