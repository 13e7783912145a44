"""Live rounds: every selected model visited once per round, in a seeded order of its own.

A visit runs `per_visit` probes of each prompt back to back with the exporter's own runner, so
timing, checks, failure reasons and GPU sampling are the exporter's. Shuffling the visits per
round spreads slow drift (heat, other load) over every model instead of charging it to the one
probed last; probing a model several times in a row keeps warm figures possible where models do
not fit in memory together. Models are listed once, before the first round: a model pulled
half-way would otherwise join with fewer rounds than the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.compare.observations import Observation, from_result
from exporter.config import Config
from exporter.gpu import GpuReader
from exporter.probe_command import TargetState, job_spec, list_targets
from exporter.probing.jobs import ProbeResult, ProbeSkip
from exporter.probing.runner import ProbeRunner
from exporter.probing.targets import Target


@dataclass(frozen=True)
class Plan:
    rounds: int
    per_visit: int
    seed: int


@dataclass(frozen=True)
class Progress:
    """Where a run stands, after each visit."""

    round: int  # 1-based
    rounds: int
    visit: str  # "model on target"
    done: int  # probes run so far
    total: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        if self.done == 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


@dataclass
class Run:
    targets: list[TargetState]
    observations: list[Observation] = field(default_factory=list)
    skips: dict[str, int] = field(default_factory=dict)  # reason -> count

    def add(self, item: ProbeResult | ProbeSkip | None) -> None:
        if isinstance(item, ProbeResult):
            self.observations.append(from_result(item))
        elif isinstance(item, ProbeSkip):
            self.skips[item.reason] = self.skips.get(item.reason, 0) + 1


Visit = tuple[Target, str]  # a target and one of its models


def run_rounds(
    config: Config,
    gpu: GpuReader,
    plan: Plan,
    on_progress: Callable[[Progress], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
) -> Run:
    """Probe `config`'s targets and prompts as `plan` says; the order depends on the seed only."""
    runner = ProbeRunner(config, gpu)
    states, listed = list_targets(config)
    run = Run(states)
    visits = [(t, m) for t in listed for m in (t.inventory.models if t.inventory else {})]
    total = plan.rounds * len(visits) * len(config.prompts) * plan.per_visit
    order = random.Random(plan.seed)
    started, done = clock(), 0
    for round_number in range(1, plan.rounds + 1):
        for target, model in order.sample(visits, len(visits)):
            for prompt in config.prompts:
                spec = job_spec(config, target, model, prompt)
                for _ in range(plan.per_visit):
                    run.add(runner.run(spec, spec.interval_s))
            done += len(config.prompts) * plan.per_visit
            visit = f"{model} on {target.name}"
            on_progress(Progress(round_number, plan.rounds, visit, done, total, clock() - started))
    return run
