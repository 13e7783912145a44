"""ProbeRunner with a real Target against the Ollama double: what a probe job sends and returns.

Covers the residency look-up (cold start, only_loaded skips, preserve_residency keep_alive), the
prompt as sent (cache_bust, options), checks, GPU sampling, and the way one result, recorded in
the ResultStore as the scheduler records it, shows in the /metrics text: counters, failure
reasons, histograms of successes only, answer gauges that keep the last good values,
last_duration that takes the failed probe's, and the failure streak, which the gauge, the store
and the status page must tell alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exporter.config import Config, PromptConfig, parse_config
from exporter.exposition.scrape import Exposition
from exporter.gpu import DisabledGpuReader, GpuDevice, GpuEnergy, GpuReader, GpuSnapshot
from exporter.probing.health import TargetHealth
from exporter.probing.jobs import JobKey, ProbeResult, ProbeSkip
from exporter.probing.probe import Reason
from exporter.probing.runner import ANSWER_EXCERPT_CHARS, JobSpec, ProbeRunner
from exporter.probing.targets import Target
from exporter.results import ResultStore
from exporter.web.status import StatusSnapshot, render_status
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.test_status import Page

WARM = "gemma3:12b"  # resident from the start
COLD = "llama3.2"  # listed, not resident
ANSWER = "Avocado is rich in potassium and fibre."
ANSWER_TOKENS = 7
WALL = 1_790_000_000.0
UUID = "GPU-00000000-1111-2222-3333-444444444444"
AVOCADO = {
    "id": "avocado",
    "text": "Why are avocados healthy?",
    "checks": {"min_words": 3, "contains_any": ["POTASSIUM"], "language": "en"},
}


class FakeGpu:
    """A GPU reader that reports one busy GPU and counts how often it was read."""

    def __init__(self, utilization: float = 0.6, memory: int = 5_000_000_000) -> None:
        self.reads = 0
        self.utilization = utilization
        self.memory = memory

    def read(self) -> GpuSnapshot:
        self.reads += 1
        return GpuSnapshot(
            up=True,
            devices=(
                GpuDevice(
                    index=0,
                    uuid=UUID,
                    name="NVIDIA H100",
                    driver_version="550.54.14",
                    memory_used_bytes=self.memory,
                    memory_total_bytes=80_000_000_000,
                    utilization_ratio=self.utilization,
                    memory_utilization_ratio=0.1,
                    temperature_celsius=50.0,
                    power_watts=200.0,
                    processes=(),
                ),
            ),
        )

    def read_energy(self) -> tuple[GpuEnergy, ...]:
        return ()

    def close(self) -> None:
        pass


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    models = [
        ModelScript(WARM, answer=ANSWER, resident=True, size_vram=7_500_000_000),
        ModelScript(COLD, answer=ANSWER, family="llama", load_delay=0.05),
    ]
    with OllamaDouble(models) as d:
        yield d


class Rig:
    """One target, one runner, one store and the exposition reading it: a scheduler-less
    exporter whose run() records what the runner returns, as the scheduler does."""

    def __init__(
        self,
        double: OllamaDouble,
        clients: tuple[httpx.Client, httpx.Client],
        *,
        probe: dict[str, Any] | None = None,
        prompts: list[dict[str, Any]] | None = None,
        target: dict[str, Any] | None = None,
        gpu: GpuReader | None = None,
        gpu_enabled: bool | str = "auto",
        environ: dict[str, str] | None = None,
        api_client: httpx.Client | None = None,
    ) -> None:
        data = {
            "targets": [{"name": "local", "url": double.url, **(target or {})}],
            "prompts": prompts or [AVOCADO],
            "probe": {"timeout": "10s", **(probe or {})},
            "gpu": {"enabled": gpu_enabled},
        }
        self.double = double
        self.config: Config = parse_config(data, "test.yaml", environ or {})
        self.store = ResultStore()
        self.now = WALL
        self._parsed: tuple[str, list[Sample]] = ("", [])
        self.target = Target(self.config.targets[0], api_client or clients[0], clients[1])
        self.exposition = Exposition(self.store, lambda: [self.target], live_collectors=())
        self.runner = ProbeRunner(self.config, gpu or DisabledGpuReader(), wall=lambda: self.now)

    def prompt(self, prompt_id: str | None = None) -> PromptConfig:
        prompts = self.config.prompts
        return next(p for p in prompts if p.id == prompt_id) if prompt_id else prompts[0]

    def spec(self, model: str, prompt_id: str | None = None) -> JobSpec:
        prompt = self.prompt(prompt_id)
        key = JobKey("local", model, prompt.id)
        self.store.open(key, prompt.checks.names())
        return JobSpec(key, self.target, prompt, self.config.interval_of(prompt))

    def run(self, model: str, prompt_id: str | None = None) -> ProbeResult | ProbeSkip | None:
        spec = self.spec(model, prompt_id)
        result = self.runner.run(spec, spec.interval_s)
        if result is not None:
            assert self.store.record(result)
        return result

    def probe(self, model: str, prompt_id: str | None = None) -> ProbeResult:
        result = self.run(model, prompt_id)
        assert isinstance(result, ProbeResult)
        return result

    def sent(self, api: str = "chat") -> list[dict[str, Any]]:
        bodies = [r.body for r in self.double.requests(f"/api/{api}")]
        assert all(b is not None for b in bodies)
        return bodies  # type: ignore[return-value]

    def samples(self) -> list[Sample]:
        """The parsed /metrics text; parsed again only when the text changed."""
        text = self.exposition.render().decode()
        if text != self._parsed[0]:
            families = text_string_to_metric_families(text)
            self._parsed = (text, [s for family in families for s in family.samples])
        return self._parsed[1]

    def metric(self, name: str, **labels: str) -> float | None:
        """The one sample `name` whose labels include `labels`; None when there is none."""
        found = [
            s.value for s in self.samples() if s.name == name and labels.items() <= s.labels.items()
        ]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
        return found[0] if found else None

    def job(self, name: str, model: str = WARM, prompt: str = "avocado", **labels: str) -> float:
        value = self.metric(name, target="local", model=model, prompt=prompt, **labels)
        assert value is not None, f"no sample {name} for {model}/{prompt} {labels}"
        return value


# --- residency and cold starts ------------------------------------------------------------


def test_resident_model_is_a_warm_start(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients)
    result = rig.probe(WARM)
    assert result.outcome.success, result.outcome.detail
    assert result.cold_start is False
    assert result.vram_bytes == 7_500_000_000
    assert rig.job("ollama_probe_cold_start") == 0
    assert rig.job("ollama_probe_cold_starts_total") == 0


def test_non_resident_model_is_a_cold_start_and_then_warm(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients)
    first = rig.probe(COLD)
    assert first.outcome.success, first.outcome.detail
    assert first.cold_start is True
    assert first.vram_bytes is None
    assert rig.job("ollama_probe_cold_start", COLD) == 1
    assert rig.job("ollama_probe_cold_starts_total", COLD) == 1
    # The probe loaded it: the next one finds it resident.
    second = rig.probe(COLD)
    assert second.cold_start is False
    assert rig.job("ollama_probe_cold_start", COLD) == 0
    assert rig.job("ollama_probe_cold_starts_total", COLD) == 1
    # The look-up happens before each probe, not once.
    assert len(double.requests("/api/ps")) == 2


def test_cold_start_is_unknown_when_ps_fails(double: OllamaDouble, clients: Any) -> None:
    double.fail_endpoint("/api/ps", 500)
    rig = Rig(double, clients)
    result = rig.probe(COLD)
    assert result.outcome.success, result.outcome.detail
    assert result.cold_start is None
    assert rig.metric("ollama_probe_cold_start", model=COLD) is None
    assert rig.job("ollama_probe_cold_starts_total", COLD) == 0
    assert rig.job("ollama_probes_total", COLD) == 1


def test_residency_look_up_happens_before_the_clock_starts(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients)
    rig.probe(WARM)
    [ps] = double.requests("/api/ps")
    [chat] = double.requests("/api/chat")
    assert ps.completed_at is not None and ps.completed_at <= chat.received_at


# --- only_loaded --------------------------------------------------------------------------


def test_only_loaded_skips_a_model_that_is_not_resident(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients, probe={"only_loaded": True})
    skip = rig.run(COLD)
    assert isinstance(skip, ProbeSkip)
    assert skip.reason == "not_loaded"
    assert double.requests("/api/chat") == []  # never causes a load
    assert rig.store.latest()[JobKey("local", COLD, "avocado")] is skip
    assert rig.job("ollama_probe_skips_total", COLD, reason="not_loaded") == 1
    assert rig.job("ollama_probe_skips_total", COLD, reason="residency_unknown") == 0
    assert rig.job("ollama_probes_total", COLD) == 0
    assert rig.job("ollama_probe_last_run_timestamp_seconds", COLD) == WALL
    assert rig.metric("ollama_probe_success", model=COLD) is None


def test_only_loaded_probes_a_resident_model(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients, probe={"only_loaded": True})
    result = rig.run(WARM)
    assert isinstance(result, ProbeResult) and result.outcome.success
    assert result.cold_start is False
    assert rig.job("ollama_probe_skips_total", reason="not_loaded") == 0


def test_only_loaded_skips_with_residency_unknown_when_ps_fails(
    double: OllamaDouble, clients: Any
) -> None:
    double.fail_endpoint("/api/ps", 500)
    rig = Rig(double, clients, probe={"only_loaded": True})
    skip = rig.run(WARM)
    assert isinstance(skip, ProbeSkip)
    assert skip.reason == "residency_unknown"
    assert double.requests("/api/chat") == []
    assert rig.job("ollama_probe_skips_total", reason="residency_unknown") == 1


# --- keep_alive ---------------------------------------------------------------------------


def test_preserve_residency_sends_the_remaining_lifetime(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients, probe={"preserve_residency": True, "keep_alive": "30m"})
    rig.probe(WARM)
    [body] = rig.sent()
    # The double's /api/ps says the model expires 300 s from now.
    assert isinstance(body["keep_alive"], int | float)
    assert 290 <= body["keep_alive"] <= 300


def test_preserve_residency_sends_config_keep_alive_for_a_model_not_resident(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients, probe={"preserve_residency": True, "keep_alive": "30m"})
    rig.probe(COLD)
    [body] = rig.sent()
    assert body["keep_alive"] == "30m"


def test_preserve_residency_omits_keep_alive_when_unset_and_not_resident(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients, probe={"preserve_residency": True})
    rig.probe(COLD)
    [body] = rig.sent()
    assert "keep_alive" not in body


@pytest.mark.parametrize(("keep_alive", "sent"), [(None, None), (120, 120), ("-1", "-1")])
def test_without_preserve_residency_the_config_value_is_sent(
    double: OllamaDouble, clients: Any, keep_alive: Any, sent: Any
) -> None:
    rig = Rig(double, clients, probe={"keep_alive": keep_alive})
    rig.probe(WARM)  # resident, but preserve_residency is off
    [body] = rig.sent()
    assert body.get("keep_alive", None) == sent
    assert ("keep_alive" in body) == (sent is not None)


def ps_reply(expires_at: datetime | None) -> httpx.Client:
    """An API client whose /api/ps lists WARM with the given expiry (an Ollama stand-in)."""
    entry: dict[str, Any] = {"name": f"{WARM}", "model": WARM, "size": 10, "size_vram": 10}
    if expires_at is not None:
        entry["expires_at"] = expires_at.isoformat().replace("+00:00", "Z")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/ps"
        return httpx.Response(200, json={"models": [entry]})

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_preserve_residency_sends_at_least_one_second(double: OllamaDouble, clients: Any) -> None:
    # While a request is in flight, /api/ps may show an expiry in the past.
    stale = datetime.now(UTC) - timedelta(seconds=30)
    rig = Rig(double, clients, probe={"preserve_residency": True}, api_client=ps_reply(stale))
    rig.probe(WARM)
    [body] = rig.sent()
    assert body["keep_alive"] == 1


def test_preserve_residency_rounds_a_fraction_up(double: OllamaDouble, clients: Any) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=42.3)
    rig = Rig(double, clients, probe={"preserve_residency": True}, api_client=ps_reply(soon))
    rig.probe(WARM)
    [body] = rig.sent()
    assert body["keep_alive"] in (42, 43)


def test_preserve_residency_without_an_expiry_uses_the_config_value(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(
        double,
        clients,
        probe={"preserve_residency": True, "keep_alive": "5m"},
        api_client=ps_reply(None),
    )
    result = rig.probe(WARM)
    assert result.cold_start is False
    [body] = rig.sent()
    assert body["keep_alive"] == "5m"


# --- the prompt as sent -------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_cache_bust_makes_every_prompt_unique(double: OllamaDouble, clients: Any, api: str) -> None:
    prompt = {"id": "p", "text": "Jakie są korzyści zdrowotne jedzenia awokado?", "api": api}
    rig = Rig(double, clients, prompts=[prompt | {"cache_bust": True}])
    for _ in range(3):
        assert rig.probe(WARM).outcome.success
    texts = [_text(body, api) for body in rig.sent(api)]
    assert len(set(texts)) == 3
    assert all(prompt["text"] in t and t != prompt["text"] for t in texts)


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_without_cache_bust_the_prompt_is_sent_verbatim(
    double: OllamaDouble, clients: Any, api: str
) -> None:
    prompt = {"id": "p", "text": "Jakie są korzyści zdrowotne jedzenia awokado?", "api": api}
    rig = Rig(double, clients, prompts=[prompt | {"cache_bust": False}])
    rig.probe(WARM)
    rig.probe(WARM)
    assert [_text(body, api) for body in rig.sent(api)] == [prompt["text"]] * 2


def _text(body: dict[str, Any], api: str) -> str:
    if api == "chat":
        [message] = body["messages"]
        assert message["role"] == "user"
        return str(message["content"])
    return str(body["prompt"])


def rig_with_token(double: OllamaDouble, clients: Any, prompt: dict[str, Any]) -> Rig:
    """A rig whose target sends a bearer token (s3cret), which must never be shown."""
    return Rig(
        double,
        clients,
        prompts=[prompt],
        target={"headers": {"Authorization": "Bearer ${OLLAMA_TOKEN}"}},
        environ={"OLLAMA_TOKEN": "s3cret"},
    )


def test_prompt_options_think_and_target_headers_are_sent(
    double: OllamaDouble, clients: Any
) -> None:
    prompt = {
        "id": "short",
        "text": "Say hi",
        "think": False,
        "options": {"temperature": 0, "seed": 42, "num_predict": 3},
    }
    rig = rig_with_token(double, clients, prompt)
    result = rig.probe(WARM, "short")
    [record] = double.requests("/api/chat")
    assert record.body is not None
    assert record.body["options"] == prompt["options"]
    assert record.body["think"] is False
    assert record.headers["authorization"] == "Bearer s3cret"
    # num_predict reached Ollama: it stopped after 3 tokens.
    assert result.outcome.reported is not None
    assert result.outcome.reported.eval_count == 3
    assert result.outcome.reported.done_reason == "length"


# --- checks -------------------------------------------------------------------------------


def test_checks_run_on_a_successful_answer(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients)
    result = rig.probe(WARM)
    assert result.checks == {"min_words": True, "contains_any": True, "language": True}
    for check in ("min_words", "contains_any", "language"):
        assert rig.job("ollama_probe_check_passed", check=check) == 1
        assert rig.job("ollama_probe_check_failures_total", check=check) == 0


def test_a_failed_check_is_exported_but_the_probe_still_succeeds(
    double: OllamaDouble, clients: Any
) -> None:
    prompt = AVOCADO | {"checks": {"contains_any": ["błonnik"], "language": "pl"}}
    rig = Rig(double, clients, prompts=[prompt])
    result = rig.probe(WARM)
    assert result.outcome.success
    assert result.checks == {"contains_any": False, "language": False}
    assert rig.job("ollama_probe_success") == 1
    assert rig.job("ollama_probe_check_passed", check="contains_any") == 0
    assert rig.job("ollama_probe_check_failures_total", check="contains_any") == 1
    assert rig.job("ollama_probe_check_failures_total", check="language") == 1
    assert rig.metric("ollama_probe_check_failures_total", check="min_words") is None


def test_a_failed_check_is_logged_with_its_names_and_an_excerpt_of_the_answer(
    double: OllamaDouble, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A line break to escape, the target's token to redact, and a tail past the excerpt.
    answer = "Avocados are green.\nBearer s3cret leaked. " + "x" * 300 + " TAIL"
    double.set_models([ModelScript(WARM, answer=answer, resident=True)])
    prompt = AVOCADO | {"checks": {"min_words": 2, "contains_any": ["durian"], "regex": "^Z"}}
    rig = rig_with_token(double, clients, prompt)
    with caplog.at_level(logging.WARNING, logger="exporter.probing.runner"):
        result = rig.probe(WARM)
    assert result.checks == {"min_words": True, "contains_any": False, "regex": False}
    [record] = [r for r in caplog.records if "answer check failed" in r.getMessage()]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "\n" not in message
    for part in ("target=local", f"model={WARM}", "prompt=avocado", "checks=contains_any,regex"):
        assert part in message
    excerpt = message.split("answer=", 1)[1]
    assert excerpt.startswith("Avocados are green.\\n<redacted> leaked. xxx")
    assert "s3cret" not in message
    assert "TAIL" not in excerpt
    assert len(excerpt) <= ANSWER_EXCERPT_CHARS + 1  # the escaped line break takes two


def test_passing_checks_log_nothing(
    double: OllamaDouble, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(double, clients)
    with caplog.at_level(logging.WARNING, logger="exporter.probing.runner"):
        assert all(rig.probe(WARM).checks.values())
    assert [r.getMessage() for r in caplog.records] == []


def test_checks_do_not_run_on_a_failed_probe(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients)
    assert rig.probe(WARM).outcome.success
    double.set_fault(WARM, Fault.STATUS_500)
    failed = rig.probe(WARM)
    assert failed.outcome.reason is Reason.HTTP_STATUS
    assert failed.checks == {}
    # The last good answer's check results stay; a failed probe is not a failed check.
    assert rig.job("ollama_probe_check_passed", check="min_words") == 1
    assert rig.job("ollama_probe_check_failures_total", check="min_words") == 0


def test_checks_are_not_run_on_a_failed_probe_with_a_partial_answer(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients)
    double.set_fault(WARM, Fault.DROP_MID_STREAM)
    failed = rig.probe(WARM)
    assert failed.outcome.reason is Reason.INCOMPLETE
    assert failed.checks == {}
    assert rig.metric("ollama_probe_check_passed", model=WARM) is None
    assert rig.job("ollama_probe_check_failures_total", check="min_words") == 0


# --- publishing ---------------------------------------------------------------------------


def test_success_reaches_the_store_and_every_series(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients)
    result = rig.probe(WARM)
    outcome = result.outcome
    assert outcome.success and outcome.reported is not None and outcome.ttft_s is not None
    assert rig.store.latest() == {JobKey("local", WARM, "avocado"): result}
    assert result.finished_at == WALL
    assert result.interval_s == 300.0
    assert rig.job("ollama_probes_total") == 1
    for reason in Reason:
        assert rig.job("ollama_probe_failures_total", reason=reason.value) == 0
    assert rig.job("ollama_probe_success") == 1
    assert rig.job("ollama_probe_duration_seconds_count") == 1
    assert rig.job("ollama_probe_duration_seconds_sum") == pytest.approx(outcome.duration_s)
    assert rig.job("ollama_probe_time_to_first_token_seconds_count") == 1
    assert rig.job("ollama_probe_last_duration_seconds") == pytest.approx(outcome.duration_s)
    assert rig.job("ollama_probe_last_time_to_first_token_seconds") == pytest.approx(outcome.ttft_s)
    assert rig.job("ollama_probe_response_characters") == len(ANSWER)
    assert rig.job("ollama_probe_response_words") == len(ANSWER.split())
    assert rig.job("ollama_probe_response_tokens") == ANSWER_TOKENS
    assert rig.job("ollama_probe_prompt_tokens") == 11
    assert rig.job("ollama_probe_generated_tokens_total") == ANSWER_TOKENS
    assert outcome.reported.eval_s is not None
    assert rig.job("ollama_probe_eval_seconds_total") == pytest.approx(outcome.reported.eval_s)
    assert rig.job("ollama_probe_tokens_per_second") == pytest.approx(
        ANSWER_TOKENS / outcome.reported.eval_s
    )
    assert rig.job("ollama_probe_last_run_timestamp_seconds") == WALL
    assert rig.job("ollama_probe_last_success_timestamp_seconds") == WALL
    assert rig.job("ollama_probe_interval_seconds") == 300.0


def test_failure_counts_its_reason_and_keeps_the_last_answer_gauges(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients)
    good = rig.probe(WARM)
    answer_gauges = {
        name: rig.job(name)
        for name in (
            "ollama_probe_response_characters",
            "ollama_probe_response_words",
            "ollama_probe_response_tokens",
            "ollama_probe_prompt_tokens",
            "ollama_probe_tokens_per_second",
            "ollama_probe_eval_duration_seconds",
            "ollama_probe_server_total_duration_seconds",
            "ollama_probe_last_time_to_first_token_seconds",
            "ollama_probe_last_success_timestamp_seconds",
        )
    }
    double.set_fault(WARM, Fault.ERROR_LINE)  # two tokens, then an error line
    rig.now = WALL + 60  # the failure ends a minute later
    bad = rig.probe(WARM)
    assert bad.outcome.reason is Reason.STREAM_ERROR
    assert rig.store.latest()[JobKey("local", WARM, "avocado")] is bad
    assert rig.job("ollama_probes_total") == 2
    assert rig.job("ollama_probe_failures_total", reason="stream_error") == 1
    assert rig.job("ollama_probe_failures_total", reason="timeout") == 0
    assert rig.job("ollama_probe_success") == 0
    assert rig.job("ollama_probe_last_duration_seconds") == pytest.approx(bad.outcome.duration_s)
    assert rig.job("ollama_probe_last_run_timestamp_seconds") == WALL + 60
    # Histograms and token counters saw only the success.
    assert rig.job("ollama_probe_duration_seconds_count") == 1
    assert rig.job("ollama_probe_duration_seconds_sum") == pytest.approx(good.outcome.duration_s)
    assert rig.job("ollama_probe_time_to_first_token_seconds_count") == 1
    assert rig.job("ollama_probe_generated_tokens_total") == ANSWER_TOKENS
    # What describes an answer still describes the last good one.
    assert {name: rig.job(name) for name in answer_gauges} == answer_gauges


def test_timeout_shows_as_the_timeout(double: OllamaDouble, clients: Any) -> None:
    rig = Rig(double, clients, probe={"timeout": "400ms"})
    double.set_fault(WARM, Fault.HANG_BEFORE_HEADERS)
    result = rig.probe(WARM)
    assert result.outcome.reason is Reason.TIMEOUT
    assert rig.job("ollama_probe_failures_total", reason="timeout") == 1
    assert 0.4 <= rig.job("ollama_probe_last_duration_seconds") < 0.9
    assert rig.job("ollama_probe_duration_seconds_count") == 0
    assert rig.metric("ollama_probe_response_words", model=WARM) is None  # no answer yet


def test_model_not_found_is_published_and_is_no_cold_start(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients)
    result = rig.probe("deleted:7b")
    assert result.outcome.reason is Reason.MODEL_NOT_FOUND
    assert rig.job("ollama_probe_failures_total", "deleted:7b", reason="model_not_found") == 1
    # /api/ps did not list it, but a model Ollama does not have was not loaded either.
    assert result.cold_start is None
    assert rig.job("ollama_probe_cold_starts_total", "deleted:7b") == 0
    assert rig.metric("ollama_probe_cold_start", model="deleted:7b") is None


def test_a_failed_probe_is_logged_with_its_labels_and_reason(
    double: OllamaDouble, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(double, clients)
    double.set_fault(WARM, Fault.STATUS_503)
    with caplog.at_level(logging.WARNING, logger="exporter.probing.runner"):
        rig.probe(WARM)
    [record] = [r for r in caplog.records if "probe failed" in r.getMessage()]
    message = record.getMessage()
    for part in ("target=local", f"model={WARM}", "prompt=avocado", "reason=http_status"):
        assert part in message


def test_cancel_all_ends_a_probe_in_flight_and_publishes_nothing(
    double: OllamaDouble, clients: Any
) -> None:
    rig = Rig(double, clients, probe={"timeout": "60s"})
    double.set_fault(WARM, Fault.HANG_BEFORE_HEADERS)
    spec = rig.spec(WARM)
    results: list[object] = []
    finished = threading.Event()

    def work() -> None:
        results.append(rig.runner.run(spec, spec.interval_s))
        finished.set()

    threading.Thread(target=work, daemon=True).start()
    double.wait_for_requests(1, "/api/chat")
    rig.runner.cancel_all()
    assert finished.wait(2.0)
    assert results == [None]
    assert rig.store.latest() == {}
    assert rig.job("ollama_probes_total") == 0
    assert rig.metric("ollama_probe_success", model=WARM) is None


# --- GPU sampling -------------------------------------------------------------------------


def test_gpu_usage_during_a_probe_of_a_local_target_is_published(
    double: OllamaDouble, clients: Any
) -> None:
    gpu = FakeGpu(utilization=0.6, memory=5_000_000_000)
    rig = Rig(double, clients, gpu=gpu)
    result = rig.probe(WARM)
    assert gpu.reads >= 2  # one sample on entry, one on exit
    [usage] = result.gpu
    assert (usage.index, usage.uuid) == (0, UUID)
    assert usage.mean_utilization_ratio == pytest.approx(0.6)
    assert usage.peak_memory_used_bytes == 5_000_000_000
    labels = {"gpu": "0", "uuid": UUID}
    assert rig.job("ollama_probe_gpu_utilization_ratio", **labels) == pytest.approx(0.6)
    assert rig.job("ollama_probe_gpu_memory_peak_bytes", **labels) == 5_000_000_000


@pytest.mark.parametrize(
    ("target", "enabled"), [({"gpu": False}, "auto"), ({}, False)], ids=["target", "global"]
)
def test_gpu_is_not_sampled_when_it_does_not_belong_to_the_target(
    double: OllamaDouble, clients: Any, target: dict[str, Any], enabled: bool | str
) -> None:
    gpu = FakeGpu()
    rig = Rig(double, clients, gpu=gpu, target=target, gpu_enabled=enabled)
    result = rig.probe(WARM)
    assert result.outcome.success
    assert result.gpu == ()
    assert gpu.reads == 0
    assert rig.metric("ollama_probe_gpu_utilization_ratio") is None


def test_gpu_series_keep_the_last_successful_probe(double: OllamaDouble, clients: Any) -> None:
    gpu = FakeGpu(utilization=0.25)
    rig = Rig(double, clients, gpu=gpu)
    rig.probe(WARM)
    double.set_fault(WARM, Fault.STATUS_500)
    gpu.utilization = 0.9
    assert rig.probe(WARM).outcome.reason is Reason.HTTP_STATUS
    assert rig.job("ollama_probe_gpu_utilization_ratio", gpu="0") == pytest.approx(0.25)


# --- the failure streak -------------------------------------------------------------------


def streak_on_status_page(rig: Rig, key: JobKey) -> int:
    """The failure streak the status page shows for `key` (its "failing" cell)."""
    snapshot = StatusSnapshot(rig.now, [("local", TargetHealth(up=True))], rig.store.states())
    _, row = Page(render_status(snapshot)).row_of("jobs", model=key.model, prompt=key.prompt)
    failing = row["failing"]
    return 0 if failing == "—" else int(failing.split()[0])


def test_consecutive_failures_follow_the_probes_and_agree_with_the_status_page(
    double: OllamaDouble, clients: Any
) -> None:
    # A check that fails on the double's English answer: such a probe still succeeded.
    prompt = AVOCADO | {"checks": {"contains_any": ["błonnik"]}}
    rig = Rig(double, clients, probe={"only_loaded": True}, prompts=[prompt])
    key = JobKey("local", WARM, "avocado")
    rig.spec(WARM)
    assert rig.metric("ollama_probe_consecutive_failures", model=WARM) is None  # no probe yet

    def step(action: str) -> int:
        double.set_resident(WARM, action != "skip")  # only_loaded skips a model not resident
        double.set_fault(WARM, Fault.STATUS_500 if action == "fail" else Fault.NONE)
        rig.now += 300
        item = rig.run(WARM)
        assert isinstance(item, ProbeSkip if action == "skip" else ProbeResult), item
        gauge = rig.job("ollama_probe_consecutive_failures")
        assert gauge == rig.store.consecutive_failures(key) == streak_on_status_page(rig, key)
        return int(gauge)

    actions = ["ok", "fail", "fail", "skip", "fail", "ok", "skip", "fail"]
    assert [step(action) for action in actions] == [0, 1, 2, 2, 3, 0, 0, 1]
    assert rig.job("ollama_probe_check_failures_total", check="contains_any") == 2
