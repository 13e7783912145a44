"""The exporter's series as stock prometheus_client objects: the baseline and the reference.

This is how the exporter held its series before it built them from state (see
benches/findings.md): one prometheus_client child per series, written to as things happened
and rendered by generate_latest. The scrape-cost benchmark renders it as its baseline, and
tests/test_metrics_reference.py checks that the exporter's own rendering gives the same lines
for the same history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__
from exporter.backends import ListedModel, RunningModel
from exporter.exposition import probe_series as m
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.pacing import LAG_BUCKETS
from exporter.probing.probe import BackendTimings, Reason

JOB = ("target", "model", "prompt")
T = ("target",)
TM = ("target", "model")
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
        self.stream_rate = gauge(m.STREAM_RATE)
        self.cold_start = gauge(m.COLD_START)
        self.interval = gauge(m.INTERVAL)
        self.last_run = gauge(m.LAST_RUN)
        self.last_success = gauge(m.LAST_SUCCESS)
        self.check_passed = gauge(m.CHECK_PASSED, (*JOB, "check"))
        self.gpu_util = gauge(m.GPU_UTIL, GPU)
        self.gpu_peak = gauge(m.GPU_PEAK, GPU)
        self.gpu_energy = gauge(m.GPU_ENERGY, GPU)
        self.gpu_energy_total = counter(m.GPU_ENERGY_TOTAL)

    def register(self, key: JobKey, checks: Iterable[str], *, energy: bool = False) -> None:
        """Create a job's counters and histograms at zero so rate() works from the start."""
        labels = key.labels()
        if energy:
            self.gpu_energy_total.labels(*labels)
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
            self._observe_reported(labels, server)
        # Client-side: completion tokens over first token to end; kept when either is unknown.
        streaming = None if outcome.ttft_s is None else outcome.duration_s - outcome.ttft_s
        if server is not None and server.eval_count and streaming is not None and streaming > 0:
            self.stream_rate.labels(*labels).set(server.eval_count / streaming)
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
            if usage.energy_joules is not None:
                self.gpu_energy.labels(*gpu_labels).set(usage.energy_joules)
                self.gpu_energy_total.labels(*labels).inc(usage.energy_joules)

    def _observe_reported(self, labels: tuple[str, str, str], server: BackendTimings) -> None:
        for name, value in m.reported_figures(server).items():
            # Ollama omits zero values (omitempty): a missing figure is 0, not unknown. Other
            # protocols' missing figures are unknown: no sample.
            if server.missing_means_zero or value is not None:
                self.answer[name].labels(*labels).set(value or 0)
            else:
                self.answer[name].remove(*labels)
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


class StockTargetMetrics:
    """One set per target: is Ollama up, what it runs, what is resident."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "ollama_up", "1 if /api/version answered 200 with a version.", T, registry=registry
        )
        self.build = Gauge(
            "ollama_build_info",
            "The Ollama server's version (value 1).",
            (*T, "version"),
            registry=registry,
        )
        self.checks = Counter(
            "ollama_health_checks", "Health checks of /api/version made.", T, registry=registry
        )
        self.check_failures = Counter(
            "ollama_health_check_failures",
            "Health checks of /api/version that failed.",
            T,
            registry=registry,
        )
        self.model_info = Gauge(
            "ollama_model_info",
            "A model the target lists and the exporter knows (value 1).",
            (*TM, "family", "parameter_size", "quantization_level"),
            registry=registry,
        )
        self.loaded = Gauge(
            "ollama_model_loaded",
            "1 if /api/ps lists the model as resident.",
            TM,
            registry=registry,
        )
        self.vram = Gauge(
            "ollama_model_vram_bytes",
            "GPU memory of a resident model as Ollama reports it (size_vram).",
            TM,
            registry=registry,
        )
        self.memory = Gauge(
            "ollama_model_memory_bytes",
            "Total memory of a resident model as Ollama reports it (size).",
            TM,
            registry=registry,
        )

    def register(self, target: str) -> None:
        self.checks.labels(target)
        self.check_failures.labels(target)

    def health(self, target: str, version: str | None) -> None:
        """Record one /api/version check; None means it failed."""
        self.checks.labels(target).inc()
        self.up.labels(target).set(0 if version is None else 1)
        if version is None:
            self.check_failures.labels(target).inc()
            return
        self.build.remove_by_labels({"target": target})
        self.build.labels(target, version).set(1)

    def inventory(self, target: str, models: Mapping[str, ListedModel]) -> None:
        """Replace a target's model info; keys are the label values used for the model."""
        self.model_info.remove_by_labels({"target": target})
        for label, listed in models.items():
            self.model_info.labels(
                target, label, listed.family, listed.parameter_size, listed.quantization_level
            ).set(1)

    def residency(
        self, target: str, known: Sequence[str], resident: Mapping[str, RunningModel]
    ) -> None:
        """0/1 for every known model, memory figures for resident ones only."""
        for metric in (self.loaded, self.vram, self.memory):
            metric.remove_by_labels({"target": target})
        for label in sorted({*known, *resident}):
            running = resident.get(label)
            self.loaded.labels(target, label).set(0 if running is None else 1)
            if running is not None:
                self.vram.labels(target, label).set(running.vram_bytes)
                self.memory.labels(target, label).set(running.size_bytes)

    def remove(self, target: str) -> None:
        for metric in (
            self.up,
            self.build,
            self.checks,
            self.check_failures,
            self.model_info,
            self.loaded,
            self.vram,
            self.memory,
        ):
            metric.remove_by_labels({"target": target})


class StockExporterMetrics:
    """The exporter's own state: build, config reloads, scheduling."""

    def __init__(self, registry: CollectorRegistry) -> None:
        Gauge(
            "ollama_exporter_build_info",
            "The exporter's version (value 1).",
            ("version",),
            registry=registry,
        ).labels(__version__).set(1)
        self.reload_ok = Gauge(
            "ollama_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded, 0 if the running config is older.",
            registry=registry,
        )
        self.reload_success_time = Gauge(
            "ollama_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load that succeeded (start-up included).",
            registry=registry,
        )
        shard = ("shard_index", "shard_count")  # unsharded: index 0 of 1
        Gauge(
            "ollama_exporter_shard_info",
            "This replica's shard: its index and the shard count (value 1; unsharded: 0 of 1).",
            shard,
            registry=registry,
        ).labels("0", "1").set(1)
        Gauge(
            "ollama_exporter_shard_expected",
            "One series per shard index the replica's shard count implies (value 1): the shards "
            "some replica should serve.",
            shard,
            registry=registry,
        ).labels("0", "1").set(1)
        self.shard_targets = Gauge(
            "ollama_exporter_shard_targets",
            "Targets this replica probes: those of its shard (unsharded: every configured target).",
            registry=registry,
        )
        self.busy = Counter(
            "ollama_exporter_probe_busy_seconds",
            "Seconds the target's probes ran (each probe's measured duration, counted when it "
            "ends), summed over its concurrency slots.",
            T,
            registry=registry,
        )
        self.slots = Gauge(
            "ollama_exporter_probe_concurrency_slots",
            "The target's concurrency_per_target: probes of it that may run at once.",
            T,
            registry=registry,
        )
        self.stretch = Gauge(
            "ollama_exporter_probe_interval_stretch_ratio",
            "Factor applied to the target's probe intervals to respect max_duty_cycle.",
            T,
            registry=registry,
        )
        self.lag = Histogram(
            "ollama_exporter_probe_schedule_lag_seconds",
            "When the probe's request went out minus the planned start (jitter included), less "
            "any wait for a concurrency slot.",
            T,
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "ollama_exporter_probe_queue_wait_seconds",
            "Time a due probe waited for one of the target's concurrency slots.",
            T,
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.models_dropped = Gauge(
            "ollama_exporter_models_dropped",
            "Models the target listed beyond max_models, not probed.",
            T,
            registry=registry,
        )
        self.reload_ok.set(1)
        self._targets: set[str] = set()

    def register(self, target: str) -> None:
        """Create a target's series; a reload re-registering a known target changes nothing."""
        if target in self._targets:
            return
        self._targets.add(target)
        self.shard_targets.set(len(self._targets))
        self.busy.labels(target)
        self.slots.labels(target).set(1)
        self.stretch.labels(target).set(1)
        self.models_dropped.labels(target).set(0)
        self.lag.labels(target)
        self.queue_wait.labels(target)

    def remove(self, target: str) -> None:
        self._targets.discard(target)
        self.shard_targets.set(len(self._targets))
        for metric in (
            self.busy,
            self.slots,
            self.stretch,
            self.lag,
            self.queue_wait,
            self.models_dropped,
        ):
            metric.remove_by_labels({"target": target})
