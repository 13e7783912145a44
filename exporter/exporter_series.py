"""The exporter's own series: its build, its configuration loads, the pacing of each live
target's probes, and the models max_models left out.

Built at scrape time from state (the load state of the running configuration, the live targets'
inventories), except the pacing series (lag, queue wait, duty, stretch), which the scheduler
still pushes as each run ends. Those are kept only for live targets: a push for a target that is
not live is dropped, and a target replaced under the same name starts afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.targets import Target

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
T = ("target",)


@dataclass(frozen=True)
class LoadState:
    """How loading the configuration went: the last load, and the last one that succeeded."""

    ok: bool = True  # False: the last load failed and the running configuration is older
    succeeded_at: float = 0.0  # Unix time of the last load that succeeded (start-up included)


class ExporterSeries(Collector):
    """Build info, configuration loads, per-target pacing and dropped models."""

    def __init__(
        self,
        targets: Callable[[], Sequence[Target]],
        loads: Callable[[], LoadState] = LoadState,
    ) -> None:
        self._targets = targets
        self._loads = loads
        self.pacing = Pacing()

    def collect(self) -> Iterator[Metric]:
        return self.families(self._targets(), self._loads())

    def families(self, targets: Sequence[Target], loads: LoadState) -> Iterator[Metric]:
        """The families, in exposition order."""
        build = GaugeMetricFamily(
            "ollama_exporter_build_info", "The exporter's version (value 1).", labels=("version",)
        )
        build.add_metric([__version__], 1)
        yield build
        yield GaugeMetricFamily(
            "ollama_exporter_config_last_reload_successful",
            "1 if the last configuration load succeeded, 0 if the running config is older.",
            value=1 if loads.ok else 0,
        )
        yield GaugeMetricFamily(
            "ollama_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load that succeeded (start-up included).",
            value=loads.succeeded_at,
        )
        self.pacing.follow(targets)
        yield from self.pacing.families()
        dropped = GaugeMetricFamily(
            "ollama_exporter_models_dropped",
            "Models the target listed beyond max_models, not probed.",
            labels=T,
        )
        for target in targets:
            inventory = target.inventory
            dropped.add_metric([target.name], inventory.dropped if inventory else 0)
        yield dropped


class Pacing:
    """Per live target: how late its probes start, how long they wait for a slot, its duty
    cycle and interval stretch. Not thread-safe: the exposition serialises its calls."""

    def __init__(self) -> None:
        self.version = 0  # bumped at every change
        self.duty = Gauge(
            "ollama_exporter_probe_duty_cycle_ratio",
            "Share of wall time the target spent serving probes over the last hour, per "
            "concurrency slot.",
            T,
            registry=None,
        )
        self.stretch = Gauge(
            "ollama_exporter_probe_interval_stretch_ratio",
            "Factor applied to the target's probe intervals to respect max_duty_cycle.",
            T,
            registry=None,
        )
        self.lag = Histogram(
            "ollama_exporter_probe_schedule_lag_seconds",
            "When the probe's request went out minus the planned start (jitter included), less "
            "any wait for a concurrency slot.",
            T,
            buckets=LAG_BUCKETS,
            registry=None,
        )
        self.queue_wait = Histogram(
            "ollama_exporter_probe_queue_wait_seconds",
            "Time a due probe waited for one of the target's concurrency slots.",
            T,
            buckets=LAG_BUCKETS,
            registry=None,
        )
        self._owners: dict[str, Target] = {}  # the live target each name's series belong to

    def follow(self, targets: Sequence[Target]) -> None:
        """Keep the series of exactly `targets`; a new or replaced target starts afresh."""
        live = {t.name: t for t in targets}
        for name, owner in list(self._owners.items()):
            if live.get(name) is not owner:
                del self._owners[name]
                for metric in (self.duty, self.stretch, self.lag, self.queue_wait):
                    metric.remove(name)
                self.version += 1
        for name, target in live.items():
            if name not in self._owners:
                self._owners[name] = target
                self.duty.labels(name).set(0)
                self.stretch.labels(name).set(1)
                self.lag.labels(name)
                self.queue_wait.labels(name)
                self.version += 1

    def scheduling_lag(self, target: str, lag_s: float, queue_wait_s: float) -> None:
        """One run's lag and queue wait; call follow() first, a target not live is ignored."""
        if target in self._owners:
            self.lag.labels(target).observe(max(lag_s, 0.0))
            self.queue_wait.labels(target).observe(queue_wait_s)
            self.version += 1

    def set_duty(self, target: str, duty: float, stretch: float) -> None:
        """The target's duty cycle and stretch after a run; call follow() first."""
        if target in self._owners:
            self.duty.labels(target).set(duty)
            self.stretch.labels(target).set(stretch)
            self.version += 1

    def families(self) -> Iterator[Metric]:
        for metric in (self.duty, self.stretch, self.lag, self.queue_wait):
            yield from metric.collect()
