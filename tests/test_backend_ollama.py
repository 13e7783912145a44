"""The Ollama backend (exporter.backends.ollama) on its own: no probe loop, mostly no sockets.

The request a probe sends, the NDJSON lines it reads (answer, thinking, tool calls, the final
chunk's timings), the table of line and status faults and the reason each maps to, model names,
keep_alive, cold starts, and the read endpoints' bodies. The probe loop around the parser lives
in test_probe.py (MockTransport) and test_probe_loopback.py (sockets); the same faults seen by a
whole exporter process are in test_hardening_faults.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import httpx
import pytest

from exporter.backends import BACKENDS, ApiClient, BackendApiError, Chunk, RunningModel
from exporter.backends.ollama import OLLAMA, NdjsonStream, model_key
from exporter.config import BackendName, ProbeConfig, load_config
from exporter.probing.probe import BackendTimings, ProbeFailure, ProbeRequest, Reason
from tests.fakes.ollama_double import ModelScript, OllamaDouble

MODEL = "gemma3:12b"
GEMMA = MODEL
FINAL_METRICS: dict[str, Any] = {
    "done_reason": "stop",
    "total_duration": 174_560_334,
    "load_duration": 101_397_084,
    "prompt_eval_count": 11,
    "prompt_eval_duration": 13_074_791,
    "eval_count": 18,
    "eval_duration": 52_479_709,
}


def line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def gen(text: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "created_at": "2026-08-21T10:00:00.1Z", "response": text} | {
        "done": done,
        **extra,
    }


def chat(
    content: str = "",
    done: bool = False,
    *,
    thinking: str | None = None,
    tool_calls: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        msg["thinking"] = thinking
    if tool_calls is not None:
        msg["tool_calls"] = tool_calls
    out = {"model": MODEL, "created_at": "2026-08-21T10:00:00.1Z", "message": msg, "done": done}
    return out | extra


def request(api: str = "generate", **kw: Any) -> ProbeRequest:
    fields: dict[str, Any] = {
        "base_url": "http://ollama.test:11434",
        "api": api,
        "model": MODEL,
        "text": "Why avocados?",
        "timeout": 30.0,
        "max_response_bytes": 4 * 1024 * 1024,
    }
    return ProbeRequest(**(fields | kw))


def parse(api: str, *lines: bytes) -> list[Chunk | None]:
    stream = OLLAMA.stream_parser(request(api))
    return [stream.feed(raw.rstrip(b"\n")) for raw in lines]


# --- registration ------------------------------------------------------------------------


def test_backend_values_are_the_registered_backends() -> None:
    # A config value without an implementation, or one no config can pick, is a half-added one.
    assert set(get_args(BackendName)) == set(BACKENDS)
    assert load_config(None, environ={}).targets[0].protocol == "ollama"


def test_the_ollama_backend_is_registered_under_its_name() -> None:
    assert BACKENDS["ollama"] is OLLAMA and OLLAMA.name == "ollama"


# --- the request --------------------------------------------------------------------------


def test_chat_body_streams_one_user_message_and_omits_unset_fields() -> None:
    call = OLLAMA.stream_request(request("chat"))
    assert (call.method, call.url) == ("POST", "http://ollama.test:11434/api/chat")
    assert call.body == {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "Why avocados?"}],
    }


def test_generate_body_sends_a_prompt_and_omits_unset_fields() -> None:
    call = OLLAMA.stream_request(request("generate"))
    assert call.url == "http://ollama.test:11434/api/generate"
    assert call.body == {"model": MODEL, "stream": True, "prompt": "Why avocados?"}


def test_body_carries_options_think_and_keep_alive_when_set() -> None:
    options = {"temperature": 0, "seed": 42, "num_predict": 512}
    req = request("chat", options=options, think="high", keep_alive="10m")
    body = OLLAMA.stream_request(req).body
    assert body["options"] == options
    assert body["think"] == "high"
    assert body["keep_alive"] == "10m"


@pytest.mark.parametrize(("think", "keep_alive"), [(False, 0), (True, -1), ("low", 1.5)])
def test_falsy_but_set_think_and_keep_alive_are_still_sent(
    think: bool | str, keep_alive: float
) -> None:
    # keep_alive 0 unloads the model and think false disables thinking: both must go out.
    body = OLLAMA.stream_request(request("generate", think=think, keep_alive=keep_alive)).body
    assert body["think"] == think
    assert body["keep_alive"] == keep_alive


def test_target_headers_are_sent() -> None:
    call = OLLAMA.stream_request(request(headers={"Authorization": "Bearer s3cret"}))
    assert call.headers == {"Authorization": "Bearer s3cret"}


# --- parsing good lines -------------------------------------------------------------------


def test_generate_lines_carry_answer_text_and_the_final_one_is_done() -> None:
    first, last = parse("generate", line(gen("Avocado")), line(gen("!", done=True)))
    assert first == Chunk(text="Avocado")
    assert last is not None and last.done and last.text == "!"  # the final text counts too


def test_chat_lines_read_message_content_thinking_and_tool_calls() -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Kraków"}}}
    thinking, answer, tool = parse(
        "chat", line(chat(thinking="Hmm")), line(chat("Fibre.")), line(chat(tool_calls=[call]))
    )
    assert thinking == Chunk(thinking="Hmm") and thinking.produced
    assert answer == Chunk(text="Fibre.")
    assert tool == Chunk(tool_calls=1) and tool.produced


def test_generate_thinking_is_not_answer_text() -> None:
    [chunk] = parse("generate", line(gen("", thinking="The user asks")))
    assert chunk == Chunk(thinking="The user asks")


@pytest.mark.parametrize(
    "raw", [line(gen("")), line(gen("", thinking="")), line(chat()), b"", b"  \r"]
)
def test_empty_lines_and_chunks_produce_nothing(raw: bytes) -> None:
    [chunk] = parse("chat" if b"message" in raw else "generate", raw)
    assert chunk is None or not chunk.produced


def test_final_chunk_figures_are_converted_from_nanoseconds() -> None:
    [chunk] = parse("generate", line(gen("x", done=True, **FINAL_METRICS)))
    reported = chunk.reported if chunk else None
    assert reported is not None
    assert reported.total_s == pytest.approx(0.174560334)
    assert reported.load_s == pytest.approx(0.101397084)
    assert reported.prompt_eval_s == pytest.approx(0.013074791)
    assert reported.eval_s == pytest.approx(0.052479709)
    assert (reported.prompt_tokens, reported.eval_count, reported.done_reason) == (11, 18, "stop")


def test_omitted_final_fields_are_none_not_zero() -> None:
    # Ollama tags every figure omitempty: a warm model's zero load_duration is simply absent.
    final = gen(done=True, total_duration=2_000_000_000, eval_count=3)
    [chunk] = parse("generate", line(final))
    assert chunk is not None and chunk.reported == BackendTimings(total_s=2.0, eval_count=3)
    [bare] = parse("generate", line({"done": True}))
    assert bare is not None and bare.reported == BackendTimings()


def test_only_the_done_chunk_reports_timings() -> None:
    [chunk] = parse("generate", line(gen("x", eval_count=3)))
    assert chunk is not None and chunk.reported is None and not chunk.done


# --- line faults: the parser-level table --------------------------------------------------


@pytest.mark.parametrize(
    ("api", "raw", "reason", "detail"),
    [
        pytest.param("generate", b"{'error': oops}", Reason.INVALID_RESPONSE, "not JSON",
                     id="non-json-line"),
        pytest.param("generate", b"<html>bad gateway</html>", Reason.INVALID_RESPONSE,
                     "not JSON", id="html-line"),
        pytest.param("generate", b'{"response":"caf\xc3\x28 \xff","done":false}',
                     Reason.INVALID_RESPONSE, "UTF-8", id="invalid-utf8"),
        pytest.param("generate", b"[1,2,3]", Reason.INVALID_RESPONSE, "not a JSON object",
                     id="array-line"),
        pytest.param("generate", b'"hello"', Reason.INVALID_RESPONSE, "not a JSON object",
                     id="string-line"),
        pytest.param("generate", b"null", Reason.INVALID_RESPONSE, "not a JSON object",
                     id="null-line"),
        pytest.param("generate", b"[" * 100_000, Reason.INVALID_RESPONSE, "not JSON",
                     id="deeply-nested"),
        pytest.param("generate", line(gen() | {"response": 5}), Reason.INVALID_RESPONSE,
                     "'response'", id="response-not-string"),
        pytest.param("generate", line(gen("a", thinking=["x"])), Reason.INVALID_RESPONSE,
                     "'thinking'", id="thinking-not-string"),
        pytest.param("generate", line(gen(done=True, eval_count="18")),
                     Reason.INVALID_RESPONSE, "'eval_count'", id="eval-count-string"),
        pytest.param("generate", line(gen(done=True, total_duration=True)),
                     Reason.INVALID_RESPONSE, "'total_duration'", id="duration-bool"),
        pytest.param("generate", line(gen(done=True, eval_duration=1.5)),
                     Reason.INVALID_RESPONSE, "'eval_duration'", id="duration-float"),
        pytest.param("chat", line({"message": "hello", "done": False}),
                     Reason.INVALID_RESPONSE, "message", id="message-string"),
        pytest.param("chat", line({"message": ["hello"], "done": False}),
                     Reason.INVALID_RESPONSE, "message", id="message-list"),
        pytest.param("chat", line({"message": None, "done": False}), Reason.INVALID_RESPONSE,
                     "message", id="message-null"),
        pytest.param("chat", line(chat() | {"message": {"role": "assistant", "content": {"t": 1}}}),
                     Reason.INVALID_RESPONSE, "'content'", id="content-object"),
        pytest.param("generate", line({"error": "unexpected EOF"}), Reason.STREAM_ERROR,
                     "unexpected EOF", id="error-line"),
        pytest.param("chat", line({"error": "out of memory"}), Reason.STREAM_ERROR,
                     "out of memory", id="error-line-chat"),
    ],
)  # fmt: skip
def test_line_faults(api: str, raw: bytes, reason: Reason, detail: str) -> None:
    with pytest.raises(ProbeFailure) as caught:
        parse(api, raw)
    assert caught.value.reason is reason
    assert detail in caught.value.detail


def test_stream_error_detail_carries_ollama_text() -> None:
    text = "an error was encountered while running the model: unexpected EOF"
    with pytest.raises(ProbeFailure) as caught:
        parse("generate", line({"error": text}))
    assert caught.value.detail == text


def test_last_fragment_cut_inside_a_line_is_incomplete_but_a_whole_one_is_read() -> None:
    # A body that ends (connection closed) halfway through a line was cut: the stream ended
    # before done, so it is `incomplete`, not a server that sent a malformed line.
    stream = NdjsonStream("generate")
    with pytest.raises(ProbeFailure) as caught:
        stream.feed(line(gen(" world"))[:12], final=True)
    assert caught.value.reason is Reason.INCOMPLETE
    chunk = stream.feed(line(gen("b", done=True)).rstrip(b"\n"), final=True)
    assert chunk is not None and chunk.done


# --- status faults ------------------------------------------------------------------------


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("status", "raw", "reason", "detail"),
    [
        pytest.param(404, body({"error": "model 'llama9' not found"}), Reason.MODEL_NOT_FOUND,
                     "model 'llama9' not found", id="404-model"),
        pytest.param(404, body({"error": 'model "llama9" not found, try pulling it first'}),
                     Reason.MODEL_NOT_FOUND, "try pulling it first", id="404-model-pull"),
        pytest.param(404, b"404 page not found", Reason.HTTP_STATUS,
                     "HTTP 404: 404 page not found", id="404-other"),
        pytest.param(404, body({"error": "route not found"}), Reason.HTTP_STATUS, "HTTP 404",
                     id="404-other-json"),
        pytest.param(500, body({"error": "llama-server process has terminated: exit 2"}),
                     Reason.HTTP_STATUS, "HTTP 500: llama-server process has terminated",
                     id="500"),
        pytest.param(500, body({"error": "model 'llama9' not found"}), Reason.HTTP_STATUS,
                     "HTTP 500", id="500-mentions-not-found"),
        pytest.param(503, body({"error": "server busy, please try again.  maximum pending"}),
                     Reason.HTTP_STATUS, "HTTP 503: server busy", id="503"),
        pytest.param(400, body({"error": '"bert" does not support chat'}), Reason.HTTP_STATUS,
                     "does not support chat", id="400"),
        pytest.param(403, b"", Reason.HTTP_STATUS, "HTTP 403", id="403-empty"),
        pytest.param(401, body({"error": "unauthorized", "signin_url": "https://x"}),
                     Reason.HTTP_STATUS, "HTTP 401: unauthorized", id="401"),
        pytest.param(204, b"", Reason.HTTP_STATUS, "HTTP 204", id="204"),
        pytest.param(500, b"[" * 10_000, Reason.HTTP_STATUS, "HTTP 500", id="deeply-nested"),
    ],
)  # fmt: skip
def test_status_faults(status: int, raw: bytes, reason: Reason, detail: str) -> None:
    failure = OLLAMA.status_failure(status, raw)
    assert failure.reason is reason
    assert detail in failure.detail


# --- model names, keep_alive, cold starts -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:latest", "llama3.2:latest"),
        ("LLAMA3.2", "llama3.2:latest"),
        ("Llama3.2:Latest", "llama3.2:latest"),
        ("gemma3:12b", "gemma3:12b"),
        (" gemma3:12b ", "gemma3:12b"),
        ("registry.local:5000/library/llama3.2", "registry.local:5000/library/llama3.2:latest"),
        ("hf.co/bartowski/Llama-3.2-1B-GGUF:Q4_K_M", "hf.co/bartowski/llama-3.2-1b-gguf:q4_k_m"),
    ],
)
def test_model_key_matches_the_way_ollama_does(name: str, key: str) -> None:
    assert model_key(name) == key == OLLAMA.model_key(name)


def test_model_key_keeps_different_tags_apart() -> None:
    assert model_key("llama3.2") != model_key("llama3.2:1b")


def resident_for(seconds_left: float) -> RunningModel:
    expires = datetime.now(UTC) + timedelta(seconds=seconds_left)
    return RunningModel(GEMMA, 1, 1, expires, 4096)


@pytest.mark.parametrize(
    ("probe", "left_s", "expected"),
    [
        pytest.param(ProbeConfig(), None, None, id="unset"),
        pytest.param(ProbeConfig(keep_alive="10m"), 60, "10m", id="configured"),
        pytest.param(ProbeConfig(keep_alive="10m", preserve_residency=True), None, "10m",
                     id="preserve-not-resident"),
        pytest.param(ProbeConfig(preserve_residency=True), 99.5, 100, id="preserve-what-is-left"),
        pytest.param(ProbeConfig(preserve_residency=True), -5, 1,
                     id="preserve-expired-is-one-second"),
    ],
)  # fmt: skip
def test_keep_alive(probe: ProbeConfig, left_s: float | None, expected: object) -> None:
    # left_s: how long the resident model has left; None when it is not resident.
    running = None if left_s is None else resident_for(left_s)
    assert OLLAMA.keep_alive(probe, running) == expected


@pytest.mark.parametrize(
    ("reason", "resident", "running", "cold"),
    [
        pytest.param(None, {}, None, True, id="not-resident"),
        pytest.param(None, {GEMMA: resident_for(60)}, resident_for(60), False, id="resident"),
        pytest.param(Reason.TIMEOUT, {}, None, True, id="failed-but-loaded"),
        pytest.param(None, None, None, None, id="residency-unknown"),
        pytest.param(Reason.MODEL_NOT_FOUND, {}, None, None, id="model-not-found"),
    ],
)  # fmt: skip
def test_cold_start(
    reason: Reason | None,
    resident: dict[str, RunningModel] | None,
    running: RunningModel | None,
    cold: bool | None,
) -> None:
    assert OLLAMA.cold_start(reason, resident, running) is cold


# --- the read endpoints -------------------------------------------------------------------


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    models = [ModelScript(GEMMA, resident=True, size=8_000_000_000, size_vram=7_500_000_000)]
    with OllamaDouble(models) as d:
        yield d


def test_running_models_parse_expiry_as_an_aware_instant(
    double: OllamaDouble, clients: Any
) -> None:
    # Ollama writes RFC 3339 with nanoseconds; the double says 5 minutes from now.
    [running] = OLLAMA.running(ApiClient(clients[0], double.url), 5.0)
    assert running.name == GEMMA
    assert (running.size_bytes, running.vram_bytes) == (8_000_000_000, 7_500_000_000)
    assert running.context_length == 4096
    assert running.expires_at is not None
    assert running.expires_at.tzinfo is not None
    left = running.expires_at - datetime.now(UTC)
    assert timedelta(seconds=290) < left <= timedelta(seconds=300)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-21T10:00:00.123456789Z", datetime(2026, 8, 21, 10, 0, 0, 123456, UTC)),
        ("2026-08-21T12:00:00.5+02:00", datetime(2026, 8, 21, 10, 0, 0, 500000, UTC)),
        ("2026-08-21T10:00:00Z", datetime(2026, 8, 21, 10, 0, 0, tzinfo=UTC)),
        ("2318-03-01T09:00:00.000000001-07:00", datetime(2318, 3, 1, 16, 0, 0, tzinfo=UTC)),
    ],
    ids=["nanoseconds-z", "offset", "whole-seconds", "forever"],
)
def test_expires_at_formats(text: str, expected: datetime) -> None:
    entry = {"name": GEMMA, "size": 1, "size_vram": 1, "expires_at": text}
    client = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json={"models": [entry]}))
    )
    [running] = OLLAMA.running(ApiClient(client, "http://ollama.test:11434"), 1.0)
    assert running.expires_at == expected
    assert running.expires_at is not None and running.expires_at.utcoffset() is not None


@pytest.mark.parametrize(
    "body",
    [{"models": "nope"}, {"models": [1, 2]}, {"models": [{"size": 1}]}, ["models"]],
    ids=["not-a-list", "not-objects", "no-name", "array-body"],
)
def test_bad_listing_bodies_are_api_errors(body: Any) -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=body)))
    with pytest.raises(BackendApiError):
        OLLAMA.list_models(ApiClient(client, "http://ollama.test:11434"), 1.0)


def test_listing_without_models_key_is_empty() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, json={})))
    assert OLLAMA.list_models(ApiClient(client, "http://ollama.test:11434"), 1.0) == []


def test_api_sends_target_headers(double: OllamaDouble, clients: Any) -> None:
    api = ApiClient(clients[0], double.url + "/", {"Authorization": "Bearer t0k3n"})
    OLLAMA.version(api, 5.0)
    [record] = double.requests("/api/version")
    assert record.headers["authorization"] == "Bearer t0k3n"
