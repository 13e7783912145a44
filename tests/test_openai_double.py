"""The OpenAI-compatible test double, checked against the official `openai` client and raw HTTP.

If the real client parses what the double sends, code tested against the double is tested
against the wire format the exporter will meet on vLLM, llama.cpp, LM Studio or Ollama's /v1.
The raw-HTTP tests cover what the client hides: SSE framing, the usage variants' chunks,
llama.cpp's timings and how a broken stream ends.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionStreamOptionsParam

from tests.fakes.openai_double import (
    ERROR_EVENT_MESSAGE,
    GARBAGE_EVENT_DATA,
    Fault,
    OpenAIDouble,
    OpenAIModelScript,
    RequestRecord,
    UsageVariant,
    split_pieces,
)

GEMMA = "gemma3:12b"
QWEN = "qwen3:8b"
ANSWER = "Avocado is rich in potassium and fibre."
ANSWER_TOKENS = len(split_pieces(ANSWER))  # 7
THINKING = "The user asks about avocados."
THINKING_TOKENS = len(split_pieces(THINKING))  # 5
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
USAGE_ON: ChatCompletionStreamOptionsParam = {"include_usage": True}


def _models() -> list[OpenAIModelScript]:
    return [
        OpenAIModelScript(GEMMA),
        OpenAIModelScript(QWEN, thinking=THINKING, prompt_tokens=23),
        OpenAIModelScript("llama3.2:latest", owned_by="meta"),
    ]


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(_models(), huge_bytes=1 << 20) as d:
        yield d


@pytest.fixture
def client(double: OpenAIDouble) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=double.url, api_key="x", max_retries=0, timeout=5.0) as c:
        yield c


@pytest.fixture
def http(double: OpenAIDouble) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=double.url, timeout=5.0) as c:
        yield c


def _finished(double: OpenAIDouble, path: str) -> RequestRecord:
    """The last request to `path`, once its handler is done writing."""
    return double.wait_for_requests(len(double.requests(path)), path, completed=True)[-1]


def _events(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, checking the framing on the way."""
    assert raw.endswith(b"\n\n"), raw[-40:]
    blocks = raw[:-2].split(b"\n\n")
    assert all(block.startswith(b"data: ") and b"\n" not in block for block in blocks), blocks
    return [block.removeprefix(b"data: ") for block in blocks]


def _sse(http: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with http.stream("POST", path, json=body | {"stream": True}) as response:
        return response, response.read()


# --- the official client ---------------------------------------------------------------------


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [GEMMA, QWEN, "llama3.2:latest"]
    assert {(m.object, m.owned_by) for m in models} == {("model", "library"), ("model", "meta")}
    assert client.models.retrieve(QWEN).id == QWEN
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_chat_stream_role_content_finish_usage(double: OpenAIDouble, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=GEMMA, messages=HI, stream=True, stream_options=USAGE_ON
    )
    role, *tokens, finish, usage = list(stream)
    assert role.choices[0].delta.role == "assistant" and role.choices[0].delta.content is None
    assert "".join(c.choices[0].delta.content or "" for c in tokens) == ANSWER
    assert len(tokens) == ANSWER_TOKENS
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in tokens)
    assert finish.choices[0].finish_reason == "stop" and finish.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (11, ANSWER_TOKENS)
    assert usage.usage.total_tokens == 11 + ANSWER_TOKENS
    assert len({c.id for c in [role, *tokens, finish, usage]}) == 1
    assert double.requests("/v1/chat/completions")[-1].headers["authorization"] == "Bearer x"


def test_chat_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=GEMMA, messages=HI, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in chunks)


def test_chat_stream_reasoning_before_content(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=QWEN, messages=HI, stream=True, stream_options=USAGE_ON
    )
    _role, *tokens, _finish, usage = list(stream)
    extras = [c.choices[0].delta.model_extra or {} for c in tokens]
    reasoning = [e["reasoning_content"] for e in extras if "reasoning_content" in e]
    assert "".join(reasoning) == THINKING and len(reasoning) == THINKING_TOKENS
    assert all(c.choices[0].delta.content is None for c in tokens[:THINKING_TOKENS])
    assert "".join(c.choices[0].delta.content or "" for c in tokens) == ANSWER
    assert usage.usage is not None and usage.usage.prompt_tokens == 23
    assert usage.usage.completion_tokens == THINKING_TOKENS + ANSWER_TOKENS


def test_reasoning_field_can_be_reasoning(double: OpenAIDouble, http: httpx.Client) -> None:
    double.set_models([OpenAIModelScript(QWEN, thinking=THINKING, reasoning_field="reasoning")])
    events = _events(_sse(http, "/chat/completions", {"model": QWEN, "messages": HI})[1])
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[1 : 1 + THINKING_TOKENS]]
    assert "".join(d["reasoning"] for d in deltas) == THINKING
    assert all(set(d) == {"reasoning"} for d in deltas)


def test_chat_non_streaming(double: OpenAIDouble, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=HI)
    assert reply.object == "chat.completion" and reply.model == QWEN
    message = reply.choices[0].message
    assert (message.role, message.content) == ("assistant", ANSWER)
    assert (message.model_extra or {})["reasoning_content"] == THINKING
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 12
    record = _finished(double, "/v1/chat/completions")
    assert record.headers["content-type"] == "application/json"
    assert record.body is not None and "stream" not in record.body


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=GEMMA, messages=HI, max_tokens=3, stream=True, stream_options=USAGE_ON
    )
    _role, *tokens, finish, usage = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in tokens) == "Avocado is rich"
    assert finish.choices[0].finish_reason == "length"
    assert usage.usage is not None and usage.usage.completion_tokens == 3
    reply = client.completions.create(model=GEMMA, prompt="Hi", max_tokens=2)
    assert (reply.choices[0].text, reply.choices[0].finish_reason) == ("Avocado is", "length")


def test_completions_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=GEMMA, prompt="Hi", stream=True, stream_options=USAGE_ON
    )
    *tokens, finish, usage = list(stream)  # no role chunk on the legacy endpoint
    assert all(c.object == "text_completion" for c in tokens)
    assert "".join(c.choices[0].text for c in tokens) == ANSWER and len(tokens) == ANSWER_TOKENS
    assert (finish.choices[0].text, finish.choices[0].finish_reason) == ("", "stop")
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == ANSWER_TOKENS


def test_unknown_and_not_found_models_are_404(double: OpenAIDouble, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=HI)
    assert missing.value.code == "model_not_found" and "`nope`" in missing.value.message
    double.set_fault(GEMMA, Fault.NOT_FOUND)
    with pytest.raises(openai.NotFoundError) as faulted:
        client.completions.create(model=GEMMA, prompt="Hi", stream=True)
    assert faulted.value.body == {
        "message": f"The model `{GEMMA}` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


@pytest.mark.parametrize(("fault", "status"), [(Fault.STATUS_500, 500), (Fault.STATUS_503, 503)])
def test_status_faults(
    double: OpenAIDouble, client: openai.OpenAI, fault: Fault, status: int
) -> None:
    double.set_fault(GEMMA, fault)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model=GEMMA, messages=HI, stream=True)
    assert failed.value.status_code == status
    assert isinstance(failed.value.body, dict) and failed.value.body["type"] == "server_error"
    assert len(double.requests("/v1/chat/completions")) == 1  # max_retries=0: no retry


def test_error_event_raises_api_error(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.set_fault(GEMMA, Fault.ERROR_EVENT)
    seen: list[str] = []
    stream = client.chat.completions.create(model=GEMMA, messages=HI, stream=True)
    with pytest.raises(openai.APIError) as failed:
        seen.extend(c.choices[0].delta.content or "" for c in stream)
    assert failed.value.message == ERROR_EVENT_MESSAGE
    assert "".join(seen) == "Avocado is"  # role chunk, then two pieces


def test_api_key_required_when_set(double: OpenAIDouble) -> None:
    double.api_key = "sk-right"
    with openai.OpenAI(base_url=double.url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as denied:
            wrong.models.list()
        assert denied.value.code == "invalid_api_key"
    with openai.OpenAI(base_url=double.url, api_key="sk-right", max_retries=0) as right:
        assert len(right.models.list().data) == 3
    missing = httpx.get(f"{double.url}/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None


# --- raw HTTP: what the client hides ---------------------------------------------------------


def test_sse_framing_and_done(http: httpx.Client) -> None:
    body = {"model": GEMMA, "messages": HI, "stream_options": USAGE_ON}
    response, raw = _sse(http, "/chat/completions", body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    *chunks, done = _events(raw)
    assert done == b"[DONE]"
    parsed = [json.loads(c) for c in chunks]
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(p["usage"] is None for p in parsed[:-1]) and parsed[-1]["choices"] == []


# --- variants: usage and timings -------------------------------------------------------------

_ZERO = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _usage_states(chunks: list[dict[str, Any]]) -> list[str]:
    """Each chunk's usage as one word: missing, null, zero or real."""

    def state(chunk: dict[str, Any]) -> str:
        if "usage" not in chunk:
            return "missing"
        if chunk["usage"] is None:
            return "null"
        return "zero" if chunk["usage"] == _ZERO else "real"

    return [state(c) for c in chunks]


# (variant, include_usage) -> usage of (every chunk but the last, the last chunk)
USAGE_CASES: list[tuple[UsageVariant, bool, str, str]] = [
    ("present", True, "null", "real"),
    ("present", False, "missing", "missing"),
    ("absent", True, "missing", "missing"),
    ("zeroed_every_chunk", True, "zero", "real"),
    ("zeroed_every_chunk", False, "missing", "missing"),
]


@pytest.mark.parametrize("timings", [False, True])
@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
@pytest.mark.parametrize(("usage", "include", "before", "last"), USAGE_CASES)
def test_usage_variants_on_the_wire(
    double: OpenAIDouble,
    http: httpx.Client,
    usage: UsageVariant,
    include: bool,
    before: str,
    last: str,
    path: str,
    timings: bool,
) -> None:
    double.usage, double.timings = usage, timings
    body: dict[str, Any] = {"model": GEMMA, "stream_options": {"include_usage": include}}
    body |= {"messages": HI} if path == "/chat/completions" else {"prompt": "Hi"}
    *chunks, done = _events(_sse(http, path, body)[1])
    parsed = [json.loads(c) for c in chunks]
    assert done == b"[DONE]"
    assert _usage_states(parsed) == [before] * (len(parsed) - 1) + [last]
    usage_chunk = last == "real"
    assert (parsed[-1]["choices"] == []) is usage_chunk
    assert len(parsed) == ANSWER_TOKENS + (path == "/chat/completions") + 1 + usage_chunk
    if usage_chunk:
        assert parsed[-1]["usage"] == {
            "prompt_tokens": 11,
            "completion_tokens": ANSWER_TOKENS,
            "total_tokens": 11 + ANSWER_TOKENS,
        }
    # llama.cpp's timings ride on the last chunk only, whichever that is.
    assert ["timings" in c for c in parsed] == [False] * (len(parsed) - 1) + [timings]


@pytest.mark.parametrize(("usage", "expected"), [("present", ANSWER_TOKENS), ("absent", None)])
def test_script_variant_overrides_the_double(
    double: OpenAIDouble, client: openai.OpenAI, usage: UsageVariant, expected: int | None
) -> None:
    double.usage = "zeroed_every_chunk"
    double.set_models([OpenAIModelScript(GEMMA, usage=usage, timings=True)])
    chunks = list(
        client.completions.create(model=GEMMA, prompt="Hi", stream=True, stream_options=USAGE_ON)
    )
    assert all(c.usage is None for c in chunks[:-1])
    final = chunks[-1].usage
    assert (final.completion_tokens if final else None) == expected
    assert "timings" in (chunks[-1].model_extra or {})


@pytest.mark.parametrize("usage", ["present", "absent", "zeroed_every_chunk"])
def test_client_reads_usage_from_the_last_chunk(
    double: OpenAIDouble, client: openai.OpenAI, usage: UsageVariant
) -> None:
    double.usage = usage
    chunks = list(
        client.completions.create(model=GEMMA, prompt="Hi", stream=True, stream_options=USAGE_ON)
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == ANSWER
    final = chunks[-1].usage
    if usage == "absent":
        assert all(c.usage is None for c in chunks)
    else:
        assert final is not None and (final.prompt_tokens, final.completion_tokens) == (11, 7)
    zeroed = [c.usage for c in chunks[:-1] if c.usage is not None]
    assert len(zeroed) == (len(chunks) - 1 if usage == "zeroed_every_chunk" else 0)
    assert all(u.total_tokens == 0 for u in zeroed)


@pytest.mark.parametrize("stream", [True, False])
def test_timings_match_the_records(double: OpenAIDouble, http: httpx.Client, stream: bool) -> None:
    double.timings = True
    script = OpenAIModelScript(GEMMA, first_token_delay=0.05, token_interval=0.005)
    double.set_models([script])
    body = {"model": GEMMA, "messages": HI, "stream_options": USAGE_ON}
    if stream:
        final = json.loads(_events(_sse(http, "/chat/completions", body)[1])[-2])
    else:
        final = http.post("/chat/completions", json=body).json()
    timings = final["timings"]
    record = _finished(double, "/v1/chat/completions")
    assert record.first_token_at is not None and record.last_byte_at is not None
    prompt_s, predicted_s = timings["prompt_ms"] / 1000, timings["predicted_ms"] / 1000
    slack = 1e-6  # float rounding of the millisecond conversion
    assert prompt_s >= 0.05
    assert record.received_at + prompt_s <= record.first_token_at + slack
    assert predicted_s >= (ANSWER_TOKENS - 1) * 0.005
    assert record.received_at + prompt_s + predicted_s <= record.last_byte_at + slack
    assert (timings["prompt_n"], timings["predicted_n"], timings["cache_n"]) == (11, 7, 0)
    assert timings["predicted_per_second"] == pytest.approx(7 / predicted_s)
    assert timings["prompt_per_second"] == pytest.approx(11 / prompt_s)
    assert timings["predicted_per_token_ms"] == pytest.approx(timings["predicted_ms"] / 7)


# --- raw HTTP: faults and endings ------------------------------------------------------------


def test_drop_mid_stream_closes_without_done(double: OpenAIDouble, http: httpx.Client) -> None:
    double.set_fault(GEMMA, Fault.DROP_MID_STREAM)
    received = b""
    body = {"model": GEMMA, "messages": HI, "stream": True}
    # No terminating chunk: httpx calls the body incomplete.
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/chat/completions", json=body) as r,
    ):
        for part in r.iter_raw():
            received += part
    chunks = [json.loads(c) for c in _events(received)]
    assert 2 <= len(chunks) <= ANSWER_TOKENS  # role chunk and half the pieces
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_drop_mid_stream_is_a_connection_error_for_the_client(
    double: OpenAIDouble, client: openai.OpenAI
) -> None:
    double.set_fault(GEMMA, Fault.DROP_MID_STREAM)
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(model=GEMMA, messages=HI, stream=True))


def test_no_done_ends_cleanly(double: OpenAIDouble, http: httpx.Client) -> None:
    double.set_fault(GEMMA, Fault.NO_DONE)
    body = {"model": GEMMA, "prompt": "Hi", "stream_options": USAGE_ON}
    response, raw = _sse(http, "/completions", body)
    chunks = [json.loads(c) for c in _events(raw)]  # every event is JSON: no [DONE]
    assert response.status_code == 200 and chunks[-1]["usage"]["completion_tokens"] == 7
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == ANSWER


def test_error_event_on_the_wire(double: OpenAIDouble, http: httpx.Client) -> None:
    double.set_fault(GEMMA, Fault.ERROR_EVENT)
    response, raw = _sse(http, "/chat/completions", {"model": GEMMA, "messages": HI})
    *chunks, error, done = _events(raw)
    assert response.status_code == 200 and done == b"[DONE]" and len(chunks) == 3
    assert json.loads(error) == {
        "error": {
            "message": ERROR_EVENT_MESSAGE,
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def test_garbage_event(double: OpenAIDouble, http: httpx.Client, client: openai.OpenAI) -> None:
    double.set_fault(GEMMA, Fault.GARBAGE_EVENT)
    events = _events(_sse(http, "/chat/completions", {"model": GEMMA, "messages": HI})[1])
    assert events[2] == GARBAGE_EVENT_DATA and events[-1] == b"[DONE]"
    assert len(events) == 1 + ANSWER_TOKENS + 1 + 1 + 1  # role, pieces, garbage, finish, done
    with pytest.raises(json.JSONDecodeError):
        list(client.chat.completions.create(model=GEMMA, messages=HI, stream=True))


def test_stream_faults_stream_even_for_stream_false(
    double: OpenAIDouble, http: httpx.Client
) -> None:
    double.set_fault(GEMMA, Fault.NO_DONE)
    reply = http.post("/chat/completions", json={"model": GEMMA, "messages": HI})
    assert reply.headers["content-type"].startswith("text/event-stream")


def _request_bytes(model: str) -> bytes:
    body = json.dumps({"model": model, "prompt": "Hi", "stream": True}).encode()
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_hang_before_headers_times_out_then_release_hangs_up(
    double: OpenAIDouble, http: httpx.Client
) -> None:
    double.set_fault(GEMMA, Fault.HANG_BEFORE_HEADERS)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/completions", json={"model": GEMMA, "prompt": "Hi"}, timeout=0.3)
    with socket.create_connection(("127.0.0.1", double.port), timeout=2.0) as sock:
        sock.sendall(_request_bytes(GEMMA))
        double.wait_for_requests(2, "/v1/completions")
        double.release()
        assert sock.recv(1024) == b""  # closed without a status line
    assert [r.status for r in double.wait_for_requests(2, completed=True)] == [0, 0]


def test_huge_response_streams_the_configured_size(
    double: OpenAIDouble, client: openai.OpenAI
) -> None:
    assert OpenAIDouble([]).huge_bytes == 8 * 1024 * 1024
    double.set_fault(GEMMA, Fault.HUGE_RESPONSE)
    stream = client.chat.completions.create(
        model=GEMMA, messages=HI, stream=True, stream_options=USAGE_ON
    )
    _role, *tokens, _finish, usage = list(stream)
    assert sum(len((c.choices[0].delta.content or "").encode()) for c in tokens) == 1 << 20
    assert usage.usage is not None and usage.usage.completion_tokens == len(tokens) == 64


# --- requests the double refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/chat/completions", b"{", 400, "We could not parse the JSON body"),
        ("POST", "/chat/completions", b'{"messages": []}', 400, "you must provide a model"),
        ("POST", "/chat/completions", b'{"model": "gemma3:12b"}', 400, "'messages' is required"),
        ("POST", "/completions", b'{"model": "gemma3:12b"}', 400, "'prompt' is required"),
        ("GET", "/chat/completions", b"", 405, "Method Not Allowed"),
        ("GET", "/nope", b"", 404, "Invalid URL (GET /v1/nope)"),
    ],
)
def test_request_errors(
    http: httpx.Client, method: str, path: str, body: bytes, status: int, message: str
) -> None:
    reply = http.request(method, path, content=body)
    error = reply.json()["error"]
    assert reply.status_code == status and error["type"] == "invalid_request_error"
    assert error["message"].startswith(message.replace(" is required", ""))
    assert set(error) == {"message", "type", "param", "code"}


def test_fail_endpoint_and_clear(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.fail_endpoint("/v1/models", 502)
    with pytest.raises(openai.APIStatusError) as failed:
        client.models.list()
    assert failed.value.status_code == 502
    double.fail_endpoint("/v1/models", None)
    assert len(client.models.list().data) == 3


# --- timing records and lifecycle ------------------------------------------------------------


def test_records_order_the_timestamps(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.set_models([OpenAIModelScript(GEMMA, first_token_delay=0.05, token_interval=0.002)])
    started = time.perf_counter()
    list(client.chat.completions.create(model=GEMMA, messages=HI, stream=True))
    record = _finished(double, "/v1/chat/completions")
    assert record.first_token_at is not None and record.last_byte_at is not None
    assert started < record.received_at < record.first_token_at < record.last_byte_at
    assert record.first_token_at - record.received_at >= 0.05
    assert record.last_byte_at - record.first_token_at >= (ANSWER_TOKENS - 1) * 0.002
    assert (record.method, record.status) == ("POST", 200)
    assert record.body is not None and record.body["model"] == GEMMA


def test_extra_delays_cycle_per_generation(double: OpenAIDouble, http: httpx.Client) -> None:
    double.set_models([OpenAIModelScript(GEMMA, extra_delays=(0.0, 0.1))])
    for _ in range(2):
        http.post("/completions", json={"model": GEMMA, "prompt": "Hi", "stream": True})
    second = double.wait_for_requests(2, "/v1/completions", completed=True)[1]
    assert second.first_token_at is not None
    assert second.first_token_at - second.received_at >= 0.1


def test_early_role_chunk_precedes_the_first_token_delay(
    double: OpenAIDouble, http: httpx.Client
) -> None:
    # Headers and the role-only chunk arrive at once; content only after the delay. A TTFT
    # taken on the first chunk would be far too short.
    double.set_models([OpenAIModelScript(GEMMA, first_token_delay=0.3)])
    body = {"model": GEMMA, "messages": HI, "stream": True}
    with http.stream("POST", "/chat/completions", json=body, timeout=0.2) as r:
        parts = r.iter_raw()
        first = next(parts)
        with pytest.raises(httpx.ReadTimeout):
            next(parts)
    assert r.status_code == 200 and b'"delta":{"role":"assistant"}' in first
    assert b"content" not in first


def test_late_role_chunk_holds_the_headers(double: OpenAIDouble, http: httpx.Client) -> None:
    double.role_chunk = "with_first_token"
    double.set_models([OpenAIModelScript(GEMMA, first_token_delay=0.3)])
    body = {"model": GEMMA, "messages": HI, "stream": True}
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=body, timeout=0.2)
    chunks = [json.loads(c) for c in _events(_sse(http, "/chat/completions", body)[1])[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Avocado"}


def test_wait_for_requests_times_out(double: OpenAIDouble) -> None:
    with pytest.raises(TimeoutError):
        double.wait_for_requests(1, "/v1/chat/completions", timeout=0.05)


def test_restart_rebinds_the_same_port(double: OpenAIDouble, client: openai.OpenAI) -> None:
    port = double.port
    double.stop()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    double.start()
    assert double.port == port and len(client.models.list().data) == 3
