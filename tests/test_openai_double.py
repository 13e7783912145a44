"""The OpenAI-compatible test double, checked against the official `openai` client and raw HTTP.

If the real client parses what the double sends, code tested against the double is tested
against the wire format the exporter will meet on vLLM, llama.cpp, LM Studio or Ollama's /v1.
The raw-HTTP tests cover what the client hides: SSE framing, the usage variants' chunks,
llama.cpp's timings and how a broken stream ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_double import (
    ERROR_EVENT_MESSAGE,
    Fault,
    OpenAIDouble,
    OpenAIModelScript,
    RequestRecord,
    split_pieces,
)

GEMMA = "gemma3:12b"
QWEN = "qwen3:8b"
ANSWER = "Avocado is rich in potassium and fibre."
ANSWER_TOKENS = len(split_pieces(ANSWER))  # 7
THINKING = "The user asks about avocados."
THINKING_TOKENS = len(split_pieces(THINKING))  # 5
HI = [{"role": "user", "content": "Hi"}]
USAGE_ON = {"include_usage": True}


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
