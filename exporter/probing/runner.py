"""One run of a probe job: residency look-up, the probe itself, checks, GPU sampling, logging.

The runner turns configuration and a target's state into a ProbeRequest, runs it, logs it and
returns the result; the caller records it (the scheduler, or the `probe` command, into their
ResultStore). It never raises for target faults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from exporter.backends import RunningModel
from exporter.config import Config, PromptConfig
from exporter.gpu import GpuReader, ProbeGpuSampler, ProbeGpuUsage
from exporter.probing.checks import run_checks
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.probe import ProbeOutcome, ProbeRequest, Watchdog, run_probe
from exporter.probing.targets import Target
from exporter.redact import printable

log = logging.getLogger(__name__)
ANSWER_EXCERPT_CHARS = 200  # enough to see what the model said, short enough for one log line


@dataclass(frozen=True)
class JobSpec:
    """A probe job: which prompt goes to which model of which target."""

    key: JobKey
    target: Target
    prompt: PromptConfig
    interval_s: float  # as configured, before stretching

    @property
    def model(self) -> str:
        return self.key.model


class ProbeRunner:
    """Runs probe jobs and returns what they measured."""

    def __init__(
        self, config: Config, gpu: GpuReader, wall: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self._gpu = gpu
        self._wall = wall
        self._lock = threading.Lock()
        self._in_flight: set[Watchdog] = set()

    def run(self, spec: JobSpec, interval_s: float) -> ProbeResult | ProbeSkip | None:
        """Probe once; None when the probe was cancelled by shutdown (nothing published)."""
        probe = self.config.probe
        resident = spec.target.resident(min(5.0, probe.timeout))
        backend = spec.target.backend
        running = None if resident is None else resident.get(backend.model_key(spec.model))
        # only_loaded needs residency; a backend without any probes regardless (config warns).
        if probe.only_loaded and backend.residency and running is None:
            reason = "residency_unknown" if resident is None else "not_loaded"
            return self._publish_skip(spec, reason, interval_s)
        request = self._request(spec, running)
        outcome, gpu = self._measure(spec, request)
        if outcome.cancelled:
            return None
        # Error texts can quote a request header back; they go to logs and the status page.
        outcome = dataclasses.replace(outcome, detail=spec.target.redact(outcome.detail))
        result = ProbeResult(
            key=spec.key,
            outcome=outcome,
            finished_at=self._wall(),
            interval_s=interval_s,
            cold_start=backend.cold_start(outcome.reason, resident, running),
            checks=run_checks(spec.prompt.checks, outcome.answer) if outcome.success else {},
            gpu=gpu,
            vram_bytes=running.vram_bytes if running is not None else None,
        )
        self._publish(result)
        self._log_failed_checks(spec, result)
        return result

    def cancel_all(self) -> None:
        """Abort every probe in flight (shutdown); their results are not published."""
        with self._lock:
            dogs = list(self._in_flight)
        for dog in dogs:
            dog.cancel()

    def _request(self, spec: JobSpec, running: RunningModel | None) -> ProbeRequest:
        prompt = spec.prompt
        text = prompt.text
        if prompt.cache_bust:
            # A unique prefix defeats Ollama's KV prefix cache, which would flatter prefill.
            text = f"[probe {uuid.uuid4().hex[:12]}] {text}"
        target = spec.target.config
        return ProbeRequest(
            base_url=target.url.rstrip("/"),
            api=prompt.api,
            model=spec.model,
            text=text,
            timeout=self.config.probe.timeout,
            max_response_bytes=self.config.probe.max_response_bytes,
            options=prompt.options,
            think=prompt.think,
            keep_alive=spec.target.backend.keep_alive(self.config.probe, running),
            headers=target.headers,
        )

    def _measure(
        self, spec: JobSpec, request: ProbeRequest
    ) -> tuple[ProbeOutcome, tuple[ProbeGpuUsage, ...]]:
        dog = Watchdog(request.timeout)
        client, backend = spec.target.probe_client, spec.target.backend
        with self._tracked(dog):
            if not self._samples_gpu(spec):
                return run_probe(client, backend, request, watchdog=dog), ()
            with ProbeGpuSampler(self._gpu) as sampler:
                outcome = run_probe(client, backend, request, watchdog=dog)
            return outcome, sampler.usage()

    def measures_energy(self, spec: JobSpec) -> bool:
        """Whether the job's probes will measure GPU energy: they sample the local GPUs, and
        at least one of them has an energy counter."""
        return self._samples_gpu(spec) and bool(self._gpu.read_energy())

    def _samples_gpu(self, spec: JobSpec) -> bool:
        return self.config.gpu.enabled is not False and spec.target.config.owns_local_gpu()

    @contextlib.contextmanager
    def _tracked(self, dog: Watchdog) -> Iterator[None]:
        with self._lock:
            self._in_flight.add(dog)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.discard(dog)

    def _publish(self, result: ProbeResult) -> None:
        """Log the result (the caller records it)."""
        key, outcome = result.key, result.outcome
        if outcome.reason is not None:
            log.warning(
                "probe failed: target=%s model=%s prompt=%s reason=%s duration=%.3fs detail=%s",
                *_loggable(key),
                outcome.reason.value,
                outcome.duration_s,
                printable(outcome.detail),
            )
        else:
            log.debug(
                "probe ok: target=%s model=%s prompt=%s duration=%.3fs",
                *_loggable(key),
                outcome.duration_s,
            )

    def _log_failed_checks(self, spec: JobSpec, result: ProbeResult) -> None:
        failed = [name for name, passed in result.checks.items() if not passed]
        if not failed:
            return
        # Redact the whole answer before cutting it, so a secret across the cut is still found.
        excerpt = spec.target.redact(result.outcome.answer)[:ANSWER_EXCERPT_CHARS]
        log.warning(
            "answer check failed: target=%s model=%s prompt=%s checks=%s answer=%s",
            *_loggable(result.key),
            ",".join(failed),
            printable(excerpt),
        )

    def _publish_skip(self, spec: JobSpec, reason: str, interval_s: float) -> ProbeSkip:
        """The skip, logged (the caller records it)."""
        skip = ProbeSkip(spec.key, reason, f"skipped: {reason}", self._wall(), interval_s)
        log.info(
            "probe skipped: target=%s model=%s prompt=%s reason=%s",
            *_loggable(spec.key),
            reason,
        )
        return skip


def _loggable(key: JobKey) -> tuple[str, str, str]:
    return printable(key.target), printable(key.model), printable(key.prompt)
