"""Series about the Ollama servers (health, inventory, residency) and about the exporter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__
from exporter.ollama import ListedModel, RunningModel

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
T = ("target",)
TM = ("target", "model")


class ServerMetrics:
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
        for label, m in models.items():
            self.model_info.labels(
                target, label, m.family, m.parameter_size, m.quantization_level
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


class ExporterMetrics:
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
        self.busy.labels(target)
        self.stretch.labels(target).set(1)
        self.models_dropped.labels(target).set(0)
        self.lag.labels(target)
        self.queue_wait.labels(target)

    def remove(self, target: str) -> None:
        self._targets.discard(target)
        for metric in (
            self.busy,
            self.slots,
            self.stretch,
            self.lag,
            self.queue_wait,
            self.models_dropped,
        ):
            metric.remove_by_labels({"target": target})
