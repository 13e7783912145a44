"""The openai backend (exporter.backends.openai) on its own, then against the OpenAI double.

The request a probe sends, the server-sent events it reads (content, reasoning, tool calls,
[DONE], usage, llama.cpp's timings), the table of event and status faults and the reason each
maps to, model rules, the read endpoints' bodies, and the configuration rules of openai targets.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.backends import BACKENDS, ApiClient, BackendApiError, Chunk
from exporter.backends.openai import OPENAI, SseStream
from exporter.config import ProbeConfig, TargetConfig, load_config
from exporter.probing.probe import (
    BackendTimings,
    ProbeFailure,
    ProbeOutcome,
    ProbeRequest,
    Reason,
    run_probe,
)
from exporter.probing.targets import http_clients
from exporter.results import stream_rate
from exporter.validation import ConfigError
from tests.fakes.openai_double import (
    ERROR_EVENT_MESSAGE,
    Fault,
    OpenAIDouble,
    OpenAIModelScript,
    RequestRecord,
    split_pieces,
)

MODEL = "Qwen/Qwen2.5-7B-Instruct"


def event(obj: Any) -> bytes:
    """One `data:` line as a server sends it (without the newline the probe splits on)."""
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


DONE = b"data: [DONE]"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> Any:
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL} | {
        "choices": [choice],
        "usage": None,
        **extra,
    }


def text_chunk(text: str, **extra: Any) -> Any:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": None}
    return {"id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": [choice]} | (
        extra
    )


def usage(prompt: int, completion: int, **extra: Any) -> Any:
    return {"id": "chatcmpl-1", "choices": [], "usage": {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }} | extra  # fmt: skip


def request(api: str = "chat", **kw: Any) -> ProbeRequest:
    fields: dict[str, Any] = {
        "base_url": "http://vllm.test:8000/v1",
        "api": api,
        "model": MODEL,
        "text": "Why avocados?",
        "timeout": 30.0,
        "max_response_bytes": 4 * 1024 * 1024,
    }
    return ProbeRequest(**(fields | kw))


def parse(api: str, *lines: bytes) -> list[Chunk | None]:
    stream = OPENAI.stream_parser(request(api))
    return [stream.feed(raw) for raw in lines]


def done_of(api: str, *lines: bytes) -> BackendTimings:
    last = parse(api, *lines, DONE)[-1]
    assert last is not None and last.done and last.reported is not None
    return last.reported


# --- registration and the request ---------------------------------------------------------


def test_the_openai_backend_is_registered_under_its_name() -> None:
    assert BACKENDS["openai"] is OPENAI and OPENAI.name == "openai"
    assert not OPENAI.residency and not OPENAI.digests


def test_chat_streams_to_chat_completions_and_asks_for_usage() -> None:
    call = OPENAI.stream_request(request("chat", headers={"Authorization": "Bearer s3cret"}))
    assert (call.method, call.url) == ("POST", "http://vllm.test:8000/v1/chat/completions")
    assert call.body == {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Why avocados?"}],
    }
    assert call.headers == {"Authorization": "Bearer s3cret"}


def test_generate_streams_to_the_legacy_completions() -> None:
    call = OPENAI.stream_request(request("generate"))
    assert call.url == "http://vllm.test:8000/v1/completions"
    assert call.body["prompt"] == "Why avocados?" and "messages" not in call.body


def test_options_are_mapped_and_ollama_only_ones_think_and_keep_alive_are_not_sent() -> None:
    options = {"temperature": 0, "seed": 42, "num_predict": 16, "top_p": 0.9, "stop": ["\n"]}
    req = request(options=options | {"top_k": 40, "num_ctx": 8192}, think=True, keep_alive="5m")
    body = OPENAI.stream_request(req).body
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == {
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "seed": 42,
        "max_tokens": 16,
        "top_p": 0.9,
        "stop": ["\n"],
    }


# --- the stream: what counts as the first token -------------------------------------------


def test_a_role_only_first_chunk_is_not_a_token() -> None:
    role, empty, answer = parse(
        "chat",
        event(chunk({"role": "assistant"})),
        event(chunk({"role": "assistant", "content": ""})),
        event(chunk({"content": "Fibre"})),
    )
    assert role == Chunk() and not role.produced
    assert empty == Chunk() and not empty.produced
    assert answer == Chunk(text="Fibre") and answer.produced


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_reasoning_is_a_token_but_not_answer_text(key: str) -> None:
    [thought] = parse("chat", event(chunk({"role": "assistant", "content": None, key: "Hmm"})))
    assert thought == Chunk(thinking="Hmm") and thought.produced


def test_a_tool_call_delta_is_a_token() -> None:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    [tool] = parse("chat", event(chunk({"tool_calls": [call]})))
    assert tool == Chunk(tool_calls=1) and tool.produced


def test_completions_read_the_choice_text() -> None:
    first, second = parse("generate", event(text_chunk("")), event(text_chunk("Avocado")))
    assert first == Chunk() and second == Chunk(text="Avocado")


@pytest.mark.parametrize(
    "raw", [b"", b"\r", b": keep-alive comment", b"event: message", b"id: 7", b"retry: 1000"]
)
def test_blank_comment_and_other_field_lines_carry_nothing(raw: bytes) -> None:
    [parsed] = parse("chat", raw)
    assert parsed is None


def test_crlf_line_endings_are_read() -> None:
    [answer, done] = parse("chat", event(chunk({"content": "x"})) + b"\r", DONE + b"\r")
    assert answer == Chunk(text="x") and done is not None and done.done


# --- the end, usage and timings -----------------------------------------------------------


def test_done_ends_the_stream_with_the_usage_tokens_and_finish_reason() -> None:
    reported = done_of(
        "chat", event(chunk({"content": "Hi"})), event(chunk(finish="stop")), event(usage(11, 18))
    )
    assert reported == BackendTimings(
        prompt_tokens=11, eval_count=18, done_reason="stop", missing_means_zero=False
    )


def test_without_usage_the_token_figures_are_unknown_not_zero() -> None:
    reported = done_of("chat", event(chunk({"content": "Hi"}, finish="length")))
    assert reported == BackendTimings(done_reason="length", missing_means_zero=False)


def test_the_last_usage_wins_over_zeroed_ones_on_every_chunk() -> None:
    # Ollama's legacy /v1/completions with include_usage: a zeroed usage on every chunk.
    zero = {"usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    reported = done_of(
        "generate",
        event(text_chunk("A", **zero)),
        event(text_chunk("B", **zero)),
        event(usage(9, 2)),
    )
    assert (reported.prompt_tokens, reported.eval_count) == (9, 2)


def test_zeroed_usage_alone_is_reported_as_zero() -> None:
    zero = {"usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    reported = done_of("generate", event(text_chunk("A", **zero)))
    assert (reported.prompt_tokens, reported.eval_count) == (0, 0)


def test_llama_cpp_timings_are_the_server_side_prefill_and_decode() -> None:
    timings = {"prompt_n": 11, "prompt_ms": 12.5, "prompt_per_token_ms": 1.1,
               "predicted_n": 18, "predicted_ms": 450.0, "predicted_per_second": 40.0,
               "cache_n": 0}  # fmt: skip
    reported = done_of("chat", event(chunk({"content": "Hi"})), event(usage(11, 18) | {
        "timings": timings}))  # fmt: skip
    assert reported.prompt_eval_s == pytest.approx(0.0125)
    assert reported.eval_s == pytest.approx(0.45)
    assert (reported.prompt_tokens, reported.eval_count) == (11, 18)
    assert reported.total_s is None and reported.load_s is None


def test_a_chunk_after_content_without_done_is_not_the_end() -> None:
    chunks = parse("chat", event(chunk({"content": "Hi"}, finish="stop")), event(usage(1, 1)))
    assert all(c is not None and not c.done for c in chunks)


# --- event faults: the parser-level table -------------------------------------------------


@pytest.mark.parametrize(
    ("api", "raw", "reason", "detail"),
    [
        pytest.param("chat", b"data: {'error': oops}", Reason.INVALID_RESPONSE, "not JSON",
                     id="non-json-event"),
        pytest.param("chat", b"<html>bad gateway</html>", Reason.INVALID_RESPONSE,
                     "not a server-sent event", id="html-line"),
        pytest.param("chat", b'{"choices":[]}', Reason.INVALID_RESPONSE,
                     "not a server-sent event", id="ndjson-line"),
        pytest.param("chat", b'data: {"x":"caf\xc3\x28"}', Reason.INVALID_RESPONSE, "UTF-8",
                     id="invalid-utf8"),
        pytest.param("chat", b"data: [1,2]", Reason.INVALID_RESPONSE, "not a JSON object",
                     id="array-event"),
        pytest.param("chat", b"data: " + b"[" * 100_000, Reason.INVALID_RESPONSE, "not JSON",
                     id="deeply-nested"),
        pytest.param("chat", event({"choices": "x"}), Reason.INVALID_RESPONSE, "choices",
                     id="choices-string"),
        pytest.param("chat", event(chunk() | {"choices": [{"delta": "x"}]}),
                     Reason.INVALID_RESPONSE, "delta", id="delta-string"),
        pytest.param("chat", event(chunk({"content": 5})), Reason.INVALID_RESPONSE,
                     "'content'", id="content-number"),
        pytest.param("generate", event(text_chunk("a") | {"choices": [{"text": ["a"]}]}),
                     Reason.INVALID_RESPONSE, "'text'", id="text-list"),
        pytest.param("chat", event(usage(1, 1) | {"usage": {"completion_tokens": "18"}}),
                     Reason.INVALID_RESPONSE, "'completion_tokens'", id="usage-string"),
        pytest.param("chat", event(usage(1, 1) | {"timings": {"predicted_ms": "x"}}),
                     Reason.INVALID_RESPONSE, "'predicted_ms'", id="timings-string"),
        pytest.param("chat", event({"error": {"message": "out of memory", "type": "server"}}),
                     Reason.STREAM_ERROR, "out of memory", id="error-object"),
        pytest.param("chat", event({"error": "boom"}), Reason.STREAM_ERROR, "boom",
                     id="error-string"),
    ],
)  # fmt: skip
def test_event_faults(api: str, raw: bytes, reason: Reason, detail: str) -> None:
    # Usage and timings are read at [DONE], from the last ones seen.
    with pytest.raises(ProbeFailure) as caught:
        parse(api, raw, DONE)
    assert caught.value.reason is reason
    assert detail in caught.value.detail


def test_last_fragment_cut_inside_an_event_is_incomplete_but_a_whole_one_is_read() -> None:
    stream = SseStream("chat")
    with pytest.raises(ProbeFailure) as caught:
        stream.feed(event(chunk({"content": "Hi"}))[:20], final=True)
    assert caught.value.reason is Reason.INCOMPLETE
    assert stream.feed(event(chunk({"content": "Hi"})), final=True) == Chunk(text="Hi")
    last = stream.feed(DONE, final=True)
    assert last is not None and last.done


# --- status faults ------------------------------------------------------------------------


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def error(message: str, code: Any = None, kind: str = "invalid_request_error") -> bytes:
    return body({"error": {"message": message, "type": kind, "param": None, "code": code}})


@pytest.mark.parametrize(
    ("status", "raw", "reason", "detail"),
    [
        pytest.param(404, error("The model `llama9` does not exist.", 404), Reason.MODEL_NOT_FOUND,
                     "The model `llama9` does not exist.", id="404-vllm"),
        pytest.param(404, error('model "llama9" not found, try pulling it first', None,
                                "api_error"),
                     Reason.MODEL_NOT_FOUND, "try pulling it first", id="404-ollama-v1"),
        pytest.param(404, error("Not there", "model_not_found"), Reason.MODEL_NOT_FOUND,
                     "Not there", id="404-openai-code"),
        pytest.param(404, b"404 page not found", Reason.HTTP_STATUS,
                     "HTTP 404: 404 page not found", id="404-other"),
        pytest.param(404, error("File Not Found", 404, "not_found_error"), Reason.HTTP_STATUS,
                     "HTTP 404: File Not Found", id="404-route"),
        pytest.param(500, error("The model `llama9` does not exist."), Reason.HTTP_STATUS,
                     "HTTP 500", id="500-mentions-model"),
        pytest.param(401, error("Incorrect API key provided", "invalid_api_key"),
                     Reason.HTTP_STATUS, "HTTP 401: Incorrect API key", id="401"),
        pytest.param(503, error("Loading model", 503, "unavailable_error"), Reason.HTTP_STATUS,
                     "HTTP 503: Loading model", id="503-llama-cpp-loading"),
        pytest.param(400, body({"error": "bad request"}), Reason.HTTP_STATUS,
                     "HTTP 400: bad request", id="400-string-error"),
        pytest.param(403, b"", Reason.HTTP_STATUS, "HTTP 403", id="403-empty"),
        pytest.param(500, b"[" * 10_000, Reason.HTTP_STATUS, "HTTP 500", id="deeply-nested"),
    ],
)  # fmt: skip
def test_status_faults(status: int, raw: bytes, reason: Reason, detail: str) -> None:
    failure = OPENAI.status_failure(status, raw)
    assert failure.reason is reason
    assert detail in failure.detail


# --- model rules --------------------------------------------------------------------------


def test_ids_are_compared_as_they_are() -> None:
    assert OPENAI.model_key("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"
    assert OPENAI.model_key("qwen/qwen2.5-7b") != OPENAI.model_key("Qwen/Qwen2.5-7B")


def test_no_keep_alive_and_no_cold_start_verdict() -> None:
    probe = ProbeConfig(keep_alive="10m", preserve_residency=True)
    assert OPENAI.keep_alive(probe, None) is None
    assert OPENAI.cold_start(None, None, None) is None
    assert OPENAI.cold_start(Reason.MODEL_NOT_FOUND, {}, None) is None


# --- config ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


OPENAI_TARGETS = """
targets:
  - {name: box, url: "http://127.0.0.1:11434"}
  - {name: vllm, url: "http://127.0.0.1:8000/v1", protocol: openai, discover: true}
  - {name: llamacpp, url: "http://127.0.0.1:8080/v1", protocol: openai, discover: true}
"""


def test_an_openai_target_needs_models_or_discover(tmp_path: Path) -> None:
    text = "targets:\n  - {name: vllm, url: 'http://h:8000/v1', protocol: openai}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert [p.split(":")[0] for p in caught.value.problems] == ["targets[0].discover"]
    assert load_config(write(tmp_path, text + "models: [m]\n"), environ={}).models == ["m"]
    discovering = text.replace("openai}", "openai, discover: true}")
    [target] = load_config(write(tmp_path, discovering), environ={}).targets
    assert target.discovers()


def test_an_ollama_target_discovers_unless_switched_off(tmp_path: Path) -> None:
    text = "targets:\n  - {name: box, url: 'http://h:11434'}\n"
    assert load_config(write(tmp_path, text), environ={}).targets[0].discovers()
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text.replace("}", ", discover: false}")), environ={})
    assert caught.value.problems[0].startswith("targets[0].discover: target 'box' (ollama)")


def test_residency_settings_warn_once_naming_the_openai_targets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = OPENAI_TARGETS + "probe: {only_loaded: true, keep_alive: 10m}\n"
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        load_config(write(tmp_path, text), environ={})
    [warning] = [r.getMessage() for r in caplog.records if "residency" in r.getMessage()]
    assert "probe.only_loaded, probe.keep_alive" in warning
    assert "(vllm, llamacpp)" in warning and "box" not in warning
    assert "preserve_residency" not in warning


def test_ollama_only_options_warn_once_per_prompt_naming_options_and_targets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        OPENAI_TARGETS
        + """
prompts:
  - {id: a, text: hi, options: {temperature: 0, top_k: 40, num_ctx: 4096}}
  - {id: b, text: hi, think: true}
  - {id: c, text: hi, options: {seed: 1, num_predict: 5, top_p: 0.5, stop: [x]}}
"""
    )
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        load_config(write(tmp_path, text), environ={})
    messages = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert len(messages) == 2
    assert "prompt a sets num_ctx, top_k, which openai targets (vllm, llamacpp)" in messages[0]
    assert "prompt b sets think," in messages[1]


def test_no_openai_warnings_without_openai_targets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "targets: [{name: box, url: 'http://h:11434'}]\nprobe: {only_loaded: true}\n"
    text += "prompts: [{id: a, text: hi, options: {top_k: 4}}]\n"
    with caplog.at_level(logging.WARNING, logger="exporter.config"):
        load_config(write(tmp_path, text), environ={})
    assert caplog.records == []


# --- the read endpoint --------------------------------------------------------------------


def test_a_listing_that_is_not_a_list_of_objects_is_an_api_error() -> None:
    def answer(payload: Any) -> ApiClient:
        transport = httpx.MockTransport(lambda _: httpx.Response(200, json=payload))
        return ApiClient(httpx.Client(transport=transport), "http://h/v1")

    assert OPENAI.list_models(answer({"object": "list", "data": []}), 1.0) == []
    [listed] = OPENAI.list_models(answer({"data": [{"id": "m", "object": "model"}]}), 1.0)
    assert (listed.name, listed.capabilities, listed.digest, listed.remote) == (
        "m", None, "", False
    )  # fmt: skip
    for bad in ({"data": "m"}, {"data": [{"object": "model"}]}, {"data": ["m"]}):
        with pytest.raises(BackendApiError):
            OPENAI.list_models(answer(bad), 1.0)
    assert OPENAI.version(answer({"data": []}), 1.0) == ""


# --- against the OpenAI double, over loopback sockets ---------------------------------------

ANSWER = "Avocado is rich in potassium and fibre."
DOUBLE_MODEL = "gemma3:12b"
# Loose agreement between the probe's clock and the double's records (as test_probe_loopback).
CLOCK_SLACK = 0.05


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    models = [OpenAIModelScript(DOUBLE_MODEL, answer=ANSWER, prompt_tokens=13)]
    with OpenAIDouble(models, huge_bytes=256 * 1024) as d:
        yield d


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    _, probes = http_clients(TargetConfig(name="t", url="http://127.0.0.1:8000/v1"))
    with probes:
        yield probes


def loopback(base_url: str, **kw: Any) -> ProbeRequest:
    fields: dict[str, Any] = {"base_url": base_url, "model": DOUBLE_MODEL, "timeout": 5.0}
    return request(**(fields | kw))


def probe_with_start(
    client: httpx.Client, req: ProbeRequest, double: OpenAIDouble
) -> tuple[ProbeOutcome, float, RequestRecord]:
    """One probe, the instant its clock started, and the double's record of it (one clock)."""
    starts: list[float] = []

    def clock() -> float:
        now = time.perf_counter()
        if not starts:
            starts.append(now)
        return now

    gc.collect()
    gc.disable()  # no collector pause inside a compared timing
    try:
        outcome = run_probe(client, OPENAI, req, clock=clock)
    finally:
        gc.enable()
    assert outcome.success, outcome.detail
    path = "/v1/chat/completions" if req.api == "chat" else "/v1/completions"
    [record] = double.requests(path)
    return outcome, starts[0], record


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_durations_lie_within_the_doubles_records_and_tokens_are_exact(
    double: OpenAIDouble, client: httpx.Client, api: str
) -> None:
    # The role-only chunk goes out with the headers, 0.2 s before the first token: a TTFT
    # measured on it would be ~0.
    script = OpenAIModelScript(
        DOUBLE_MODEL, answer=ANSWER, first_token_delay=0.2, token_interval=0.02, prompt_tokens=13
    )
    double.set_models([script])
    outcome, start, record = probe_with_start(client, loopback(double.url, api=api), double)
    assert record.first_token_at is not None and record.last_byte_at is not None
    assert outcome.ttft_s is not None
    assert start <= record.received_at
    assert abs(start + outcome.ttft_s - record.first_token_at) < CLOCK_SLACK
    assert abs(start + outcome.duration_s - record.last_byte_at) < CLOCK_SLACK
    assert outcome.ttft_s >= 0.2
    assert outcome.answer == ANSWER
    reported = outcome.reported
    assert reported is not None
    assert (reported.prompt_tokens, reported.eval_count) == (13, len(split_pieces(ANSWER)))
    assert (reported.prompt_eval_s, reported.eval_s, reported.load_s) == (None, None, None)
    assert record.body is not None and record.body["stream_options"] == {"include_usage": True}


def test_reasoning_starts_the_ttft_and_is_not_the_answer(
    double: OpenAIDouble, client: httpx.Client
) -> None:
    double.set_models([OpenAIModelScript(DOUBLE_MODEL, answer="Yes.", thinking="Let me think.",
                                         first_token_delay=0.1)])  # fmt: skip
    outcome, start, record = probe_with_start(client, loopback(double.url), double)
    assert record.first_token_at is not None and outcome.ttft_s is not None
    assert abs(start + outcome.ttft_s - record.first_token_at) < CLOCK_SLACK
    assert outcome.answer == "Yes."
    assert outcome.reported is not None and outcome.reported.eval_count == 4  # 3 + 1 pieces


def test_llama_cpp_timings_are_the_doubles_own_prefill_and_decode(
    double: OpenAIDouble, client: httpx.Client
) -> None:
    double.timings = True
    double.set_models([OpenAIModelScript(DOUBLE_MODEL, answer=ANSWER, first_token_delay=0.15,
                                         token_interval=0.02)])  # fmt: skip
    outcome, _, _ = probe_with_start(client, loopback(double.url), double)
    reported, ttft = outcome.reported, outcome.ttft_s
    assert reported is not None and ttft is not None
    assert reported.prompt_eval_s is not None and reported.eval_s is not None
    # Prefill is inside the measured TTFT, decode inside first token -> end.
    assert 0.15 <= reported.prompt_eval_s <= ttft + CLOCK_SLACK
    pieces = len(split_pieces(ANSWER))
    assert 0.02 * (pieces - 1) <= reported.eval_s <= outcome.duration_s - ttft + CLOCK_SLACK
    assert reported.eval_count == pieces


@pytest.mark.parametrize(
    ("variant", "api", "tokens"),
    [
        ("present", "chat", (13, 7)),
        ("absent", "chat", (None, None)),
        ("zeroed_every_chunk", "generate", (13, 7)),
    ],
)
def test_usage_variants(
    double: OpenAIDouble,
    client: httpx.Client,
    variant: Any,
    api: str,
    tokens: tuple[int | None, int | None],
) -> None:
    double.usage = variant
    outcome, _, _ = probe_with_start(client, loopback(double.url, api=api), double)
    assert outcome.reported is not None
    assert (outcome.reported.prompt_tokens, outcome.reported.eval_count) == tokens


@pytest.mark.parametrize(
    ("fault", "reason", "detail"),
    [
        # One row per way an openai target fails; which event or status is which reason is
        # the parser's table above, the process-level table is test_e2e_openai.py.
        (Fault.HANG_BEFORE_HEADERS, Reason.TIMEOUT, "deadline"),
        (Fault.DROP_MID_STREAM, Reason.INCOMPLETE, ""),
        (Fault.NO_DONE, Reason.INCOMPLETE, "done"),
        (Fault.ERROR_EVENT, Reason.STREAM_ERROR, ERROR_EVENT_MESSAGE),
        (Fault.GARBAGE_EVENT, Reason.INVALID_RESPONSE, "not JSON"),
        (Fault.NOT_FOUND, Reason.MODEL_NOT_FOUND, f"The model `{DOUBLE_MODEL}` does not exist"),
        (Fault.STATUS_500, Reason.HTTP_STATUS, "HTTP 500"),
        (Fault.STATUS_503, Reason.HTTP_STATUS, "HTTP 503: The server is overloaded"),
        (Fault.HUGE_RESPONSE, Reason.INVALID_RESPONSE, "larger than"),
    ],
    ids=lambda v: v.value if isinstance(v, Fault | Reason) else None,
)
def test_wire_faults_end_in_their_reason(
    double: OpenAIDouble, client: httpx.Client, fault: Fault, reason: Reason, detail: str
) -> None:
    double.set_fault(DOUBLE_MODEL, fault)
    req = loopback(double.url, timeout=0.5, max_response_bytes=64 * 1024)
    outcomes: list[ProbeOutcome] = []
    worker = threading.Thread(target=lambda: outcomes.append(run_probe(client, OPENAI, req)))
    worker.start()
    worker.join(3.0)
    double.release()  # lets a hanging request go (after the probe gave up on it)
    worker.join(3.0)
    assert not worker.is_alive(), "the probe outlived its deadline"
    [outcome] = outcomes
    assert outcome.reason is reason, outcome.detail
    assert detail in outcome.detail


def test_unlisted_model_refused_connection_and_wrong_key(
    double: OpenAIDouble, client: httpx.Client
) -> None:
    missing = run_probe(client, OPENAI, loopback(double.url, model="llama9"))
    assert missing.reason is Reason.MODEL_NOT_FOUND, missing.detail
    double.api_key = "s3cret"
    unauthorized = run_probe(client, OPENAI, loopback(double.url))
    assert unauthorized.reason is Reason.HTTP_STATUS and "HTTP 401" in unauthorized.detail
    keyed = loopback(double.url, headers={"Authorization": "Bearer s3cret"})
    assert run_probe(client, OPENAI, keyed).success
    port = double.port
    double.stop()
    refused = run_probe(client, OPENAI, loopback(f"http://127.0.0.1:{port}/v1"))
    assert refused.reason is Reason.CONNECT, refused.detail


def test_the_read_endpoint_is_the_listing_and_the_health_check(double: OpenAIDouble) -> None:
    api_client, _ = http_clients(TargetConfig(name="t", url=double.url))
    with api_client:
        api = ApiClient(api_client, double.url)
        assert [m.name for m in OPENAI.list_models(api, 2.0)] == [DOUBLE_MODEL]
        assert OPENAI.version(api, 2.0) == ""
        double.fail_endpoint("/v1/models", 500)
        with pytest.raises(BackendApiError):
            OPENAI.version(api, 2.0)


# --- the client-side decode rate (a series of its own, for every backend) -------------------


def test_the_stream_rate_is_completion_tokens_over_first_token_to_end() -> None:
    def outcome(tokens: int | None, ttft: float | None, duration: float) -> ProbeOutcome:
        reported = BackendTimings(eval_count=tokens, eval_s=9.0, missing_means_zero=False)
        return ProbeOutcome(None, "ok", duration, ttft, "x", reported)

    assert stream_rate(outcome(20, 0.5, 2.5)) == 10.0  # not 20 / eval_s, not 20 / 2.5
    assert stream_rate(outcome(None, 0.5, 2.5)) is None  # no usage: never estimated
    assert stream_rate(outcome(20, None, 2.5)) is None
    assert stream_rate(outcome(20, 2.5, 2.5)) is None  # first token and end in one read
