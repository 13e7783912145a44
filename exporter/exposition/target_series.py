"""Series about each live target (is Ollama up, what it lists, what is resident), from its state.

A custom collector in client_python's idiom: at each scrape it builds fresh families from the
targets of the running configuration (a callable, Service.targets in the exporter), so a
target's series exist exactly while it is a live target and nothing has to remove them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.probing.targets import Target, short_digest

T = ("target",)
TM = ("target", "model")


class TargetSeries(Collector):
    """One set per live target: up, version, health checks, model info, residency."""

    def __init__(self, targets: Callable[[], Sequence[Target]]) -> None:
        self._targets = targets

    def collect(self) -> Iterator[Metric]:
        return self.families(self._targets())

    def families(self, targets: Sequence[Target]) -> Iterator[Metric]:
        """The families of `targets`, in exposition order."""
        up = GaugeMetricFamily(
            "ollama_up", "1 if /api/version answered 200 with a version.", labels=T
        )
        build = GaugeMetricFamily(
            "ollama_build_info", "The Ollama server's version (value 1).", labels=(*T, "version")
        )
        checks = CounterMetricFamily(
            "ollama_health_checks", "Health checks of /api/version made.", labels=T
        )
        failures = CounterMetricFamily(
            "ollama_health_check_failures", "Health checks of /api/version that failed.", labels=T
        )
        for target in targets:
            health, name = target.health.snapshot(), target.name
            if health.up is not None:  # checked at least once
                up.add_metric([name], 1 if health.up else 0)
            if health.version:  # of the last check that answered ("": the protocol has none)
                build.add_metric([name, health.version], 1)
            checks.add_metric([name], health.checks_made)
            failures.add_metric([name], health.checks_failed)
        yield from (up, build, checks, failures, _version_changes(targets))
        yield from _models(targets)
        yield from _residency(targets)


def _version_changes(targets: Sequence[Target]) -> Metric:
    changes = CounterMetricFamily(
        "ollama_server_version_changes",
        "Times the version /api/version answered differed from the one before.",
        labels=T,
    )
    for target in targets:
        changes.add_metric([target.name], target.health.snapshot().version_changes)
    return changes


def _models(targets: Sequence[Target]) -> tuple[Metric, Metric]:
    """Model info (with the listed digest) and digest changes, for every model with jobs."""
    info = GaugeMetricFamily(
        "ollama_model_info",
        "A model the target lists and the exporter knows (value 1); digest: its first 12 hex "
        "digits in the listing.",
        labels=(*TM, "family", "parameter_size", "quantization_level", "digest"),
    )
    changes = CounterMetricFamily(
        "ollama_model_changes",
        "Times the model's digest in the listing differed from the one listed before.",
        labels=TM,
    )
    for target in targets:
        inventory = target.inventory
        for label, m in inventory.models.items() if inventory else ():
            info.add_metric(
                [
                    target.name,
                    label,
                    m.family,
                    m.parameter_size,
                    m.quantization_level,
                    short_digest(m.digest),
                ],
                1,
            )
            if target.backend.digests:
                changes.add_metric([target.name, label], target.digest_changes(label))
    return info, changes


def _residency(targets: Sequence[Target]) -> tuple[Metric, ...]:
    """0/1 for every model with a job, memory figures for resident models only, as of the last
    /api/ps reading."""
    loaded = GaugeMetricFamily(
        "ollama_model_loaded", "1 if /api/ps lists the model as resident.", labels=TM
    )
    vram = GaugeMetricFamily(
        "ollama_model_vram_bytes",
        "GPU memory of a resident model as Ollama reports it (size_vram).",
        labels=TM,
    )
    memory = GaugeMetricFamily(
        "ollama_model_memory_bytes",
        "Total memory of a resident model as Ollama reports it (size).",
        labels=TM,
    )
    for target in targets:
        reading = target.residency
        if reading is None:
            continue
        for label in sorted({*reading.known, *reading.resident}):
            running = reading.resident.get(label)
            loaded.add_metric([target.name, label], 0 if running is None else 1)
            if running is not None:
                vram.add_metric([target.name, label], running.vram_bytes)
                memory.add_metric([target.name, label], running.size_bytes)
    return loaded, vram, memory
