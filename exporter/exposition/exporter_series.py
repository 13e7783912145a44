"""The exporter's own series: its build, its configuration loads, its shard, the pacing of each
live target's probes, and the models max_models left out.

Built at scrape time from state: the load state of the running configuration, the replica's
shard, the scheduler's pacing tallies (exporter.probing.pacing) and the live targets'
inventories. A target's pacing series exist exactly while the scheduler paces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.probing.pacing import LAG_BUCKETS, Observed, PacingTally
from exporter.probing.targets import Target
from exporter.shard import ShardConfig
from exporter.target_files import TargetFileState

T = ("target",)
Tallies = Mapping[str, PacingTally]


@dataclass(frozen=True)
class LoadState:
    """How loading the configuration went: the last load, and the last one that succeeded."""

    ok: bool = True  # False: the last load failed and the running configuration is older
    succeeded_at: float = 0.0  # Unix time of the last load that succeeded (start-up included)
    target_files: tuple[TargetFileState, ...] = ()  # the files target_files matches now


class ExporterSeries(Collector):
    """Build info, configuration loads, per-target pacing and dropped models."""

    def __init__(
        self,
        targets: Callable[[], Sequence[Target]],
        loads: Callable[[], LoadState] = LoadState,
        pacing: Callable[[], Tallies] = dict,
        shard: Callable[[], ShardConfig] = ShardConfig,
    ) -> None:
        self._targets = targets
        self._loads = loads
        self._pacing = pacing
        self._shard = shard

    def collect(self) -> Iterator[Metric]:
        return self.families(self._targets(), self._loads(), self._pacing(), self._shard())

    def families(
        self,
        targets: Sequence[Target],
        loads: LoadState,
        pacing: Tallies,
        shard: ShardConfig | None = None,
    ) -> Iterator[Metric]:
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
        yield from _target_file_families(loads.target_files)
        yield from _shard_families(shard or ShardConfig(), len(targets))
        yield from _pacing_families(pacing)
        dropped = GaugeMetricFamily(
            "ollama_exporter_models_dropped",
            "Models the target listed beyond max_models, not probed.",
            labels=T,
        )
        for target in targets:
            inventory = target.inventory
            dropped.add_metric([target.name], inventory.dropped if inventory else 0)
        yield dropped


def _target_file_families(files: Sequence[TargetFileState]) -> Iterator[Metric]:
    """Served while target_files matches some file, so a configuration without them is as
    before."""
    if not files:
        return
    success = GaugeMetricFamily(
        "ollama_exporter_target_file_last_read_success",
        "1 if the target file's last read was used, 0 if it failed and its last good content "
        "is kept.",
        labels=("file",),
    )
    count = GaugeMetricFamily(
        "ollama_exporter_target_file_targets",
        "Targets the target file contributes now.",
        labels=("file",),
    )
    for state in files:
        success.add_metric([state.file], 1 if state.ok else 0)
        count.add_metric([state.file], state.targets)
    yield from (success, count)


def _shard_families(shard: ShardConfig, targets: int) -> Iterator[Metric]:
    """This replica's place in the fleet. Every replica serves the same names; Prometheus's
    `instance` tells them apart. The expected series let a rule name a shard no replica serves
    (OllamaExporterShardMissing): a replica that is down serves nothing, but any live one
    says which indexes should exist."""
    labels = ("shard_index", "shard_count")
    info = GaugeMetricFamily(
        "ollama_exporter_shard_info",
        "This replica's shard: its index and the shard count (value 1; unsharded: 0 of 1).",
        labels=labels,
    )
    info.add_metric([str(shard.index), str(shard.count)], 1)
    yield info
    expected = GaugeMetricFamily(
        "ollama_exporter_shard_expected",
        "One series per shard index the replica's shard count implies (value 1): the shards "
        "some replica should serve.",
        labels=labels,
    )
    for index in range(shard.count):
        expected.add_metric([str(index), str(shard.count)], 1)
    yield expected
    yield GaugeMetricFamily(
        "ollama_exporter_shard_targets",
        "Targets this replica probes: those of its shard (unsharded: every configured target).",
        value=targets,
    )


def _pacing_families(pacing: Tallies) -> Iterator[Metric]:
    busy = CounterMetricFamily(
        "ollama_exporter_probe_busy_seconds",
        "Seconds the target's probes ran (each probe's measured duration, counted when it "
        "ends), summed over its concurrency slots.",
        labels=T,
    )
    slots = GaugeMetricFamily(
        "ollama_exporter_probe_concurrency_slots",
        "The target's concurrency_per_target: probes of it that may run at once.",
        labels=T,
    )
    stretch = GaugeMetricFamily(
        "ollama_exporter_probe_interval_stretch_ratio",
        "Factor applied to the target's probe intervals to respect max_duty_cycle.",
        labels=T,
    )
    lag = HistogramMetricFamily(
        "ollama_exporter_probe_schedule_lag_seconds",
        "When the probe's request went out minus the planned start (jitter included), less "
        "any wait for a concurrency slot.",
        labels=T,
    )
    wait = HistogramMetricFamily(
        "ollama_exporter_probe_queue_wait_seconds",
        "Time a due probe waited for one of the target's concurrency slots.",
        labels=T,
    )
    for target, tally in pacing.items():
        busy.add_metric([target], tally.busy_s)
        slots.add_metric([target], tally.slots)
        stretch.add_metric([target], tally.stretch)
        lag.add_metric([target], _buckets(tally.lag), tally.lag.total)
        wait.add_metric([target], _buckets(tally.queue_wait), tally.queue_wait.total)
    yield from (busy, slots, stretch, lag, wait)


_BOUNDS = (*map(floatToGoString, LAG_BUCKETS), "+Inf")


def _buckets(observed: Observed) -> list[tuple[str, float]]:
    return list(zip(_BOUNDS, accumulate(observed.counts), strict=True))
