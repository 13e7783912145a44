"""OpenAI-compatible servers (vLLM, llama.cpp's llama-server, Ollama's /v1, LM Studio).

Read endpoint: GET {base}/models, which is both the listing (ids only: no capabilities, sizes,
digests or residency) and the health check. Probes: a streamed POST {base}/chat/completions
(`chat` prompts) or {base}/completions (`generate` prompts) with `stream_options.include_usage`,
answered with server-sent events: `data: {json}` lines ending with `data: [DONE]`. Token counts
come only from a usage object (the last one seen), server-side timings only from llama.cpp's
`timings` object; nothing is estimated. The facts are in docs/configuration.md and
docs/metrics.md, gathered from the servers' documentation and code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.backends.base import (
    ApiClient,
    BackendApiError,
    Chunk,
    KeepAlive,
    ListedModel,
    RunningModel,
    StreamRequest,
)
from exporter.config import OPENAI_OPTIONS, ProbeConfig
from exporter.probing.probe import BackendTimings, ProbeFailure, ProbeRequest, Reason

# How servers word a 404 for an unknown model: vLLM and OpenAI "The model `x` does not exist",
# Ollama's /v1 'model "x" not found'; OpenAI also sets code model_not_found.
_MODEL_NOT_FOUND = re.compile(r"model\b.*\b(not found|does not exist)", re.IGNORECASE | re.DOTALL)


class OpenAIBackend:
    """An OpenAI-compatible HTTP API (the `openai` backend); the target URL ends in /v1."""

    name = "openai"
    residency = False  # nothing in the protocol says which models are loaded
    digests = False  # /models gives no content digest

    # --- read endpoints ---------------------------------------------------------------------

    def version(self, api: ApiClient, timeout: float) -> str:
        """GET /models answering 200 with a JSON object is the health check; the protocol has
        no version, so a healthy target reports "" (and no build_info series)."""
        api.get("/models", timeout)
        return ""

    def list_models(self, api: ApiClient, timeout: float) -> list[ListedModel]:
        """GET /models: ids only."""
        data = api.get("/models", timeout).get("data")
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
            raise BackendApiError("/models `data` is not a list of objects")
        return [_listed(entry) for entry in data]

    def running(self, api: ApiClient, timeout: float) -> list[RunningModel]:
        """The protocol has no residency endpoint; callers check `residency` first."""
        return []

    def capabilities(self, api: ApiClient, model: str, timeout: float) -> tuple[str, ...]:
        """The listing says nothing about capabilities, which is why discovery is opt-in
        (`discover: true`): a listed model is assumed to generate."""
        return ("completion",)

    # --- model rules ------------------------------------------------------------------------

    def model_key(self, name: str) -> str:
        """Ids are compared as they are: vLLM's and llama.cpp's are case-sensitive paths."""
        return name

    def keep_alive(self, probe: ProbeConfig, running: RunningModel | None) -> KeepAlive:
        """The protocol has no keep_alive: nothing is asked of residency."""
        return None

    def cold_start(
        self,
        reason: Reason | None,
        resident: Mapping[str, RunningModel] | None,
        running: RunningModel | None,
    ) -> bool | None:
        """Unknown: without residency a cold load cannot be told from a slow answer."""
        return None

    # --- probes -----------------------------------------------------------------------------

    def stream_request(self, request: ProbeRequest) -> StreamRequest:
        """POST /chat/completions or /completions, streaming, usage asked for; only the
        options in config.OPENAI_OPTIONS are sent (config warns at load about the others)."""
        body: dict[str, Any] = {
            "model": request.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.api == "chat":
            body["messages"] = [{"role": "user", "content": request.text}]
            path = "/chat/completions"
        else:
            body["prompt"] = request.text
            path = "/completions"
        for option, value in request.options.items():
            if option in OPENAI_OPTIONS:
                body[OPENAI_OPTIONS[option]] = value
        return StreamRequest("POST", request.base_url + path, body, dict(request.headers))

    def stream_parser(self, request: ProbeRequest) -> SseStream:
        return SseStream(request.api)

    def status_failure(self, status: int, body: bytes) -> ProbeFailure:
        """404 naming a model is `model_not_found`; any other status is `http_status`."""
        text, code = _error_text(body)
        if status == 404 and (code == "model_not_found" or _MODEL_NOT_FOUND.search(text)):
            return ProbeFailure(Reason.MODEL_NOT_FOUND, text)
        return ProbeFailure(Reason.HTTP_STATUS, f"HTTP {status}: {text}".rstrip(": "))


OPENAI = OpenAIBackend()


# --- the stream -------------------------------------------------------------------------------


# SSE lines that are not data: event names, ids, reconnection times and comments.
_OTHER_FIELDS = (b"event:", b"id:", b"retry:", b":")


@dataclass
class SseStream:
    """Parses the server-sent events of one streamed completion, line by line.

    Every `data:` line of these servers is one whole JSON chunk, so each is parsed on its own;
    `event:`, `id:`, `retry:` and comment lines carry nothing a probe measures. The usage and
    timings kept are the last seen: Ollama's legacy /v1/completions sends a zeroed usage on
    every chunk and the real one last.
    """

    api: str
    usage: Mapping[str, Any] | None = None
    timings: Mapping[str, Any] | None = None
    finish_reason: str | None = None

    def feed(self, line: bytes, *, final: bool = False) -> Chunk | None:
        text = line.rstrip(b"\r")
        if not text.strip():
            return None
        if not text.startswith(b"data:"):
            if text.startswith(_OTHER_FIELDS):
                return None
            raise ProbeFailure(Reason.INVALID_RESPONSE, f"not a server-sent event: {text[:80]!r}")
        payload = text[len(b"data:") :].strip()
        if payload == b"[DONE]":
            return Chunk(done=True, reported=self._reported())
        if final and not _is_json(payload):
            raise ProbeFailure(Reason.INCOMPLETE, "stream ended inside an event")
        chunk = _decode(payload)
        if chunk.get("error") is not None:
            raise ProbeFailure(Reason.STREAM_ERROR, _message(chunk["error"])[:300])
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]
        choice = _first_choice(chunk)
        if choice is None:
            return Chunk()
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reason = reason
        if self.api != "chat":
            return Chunk(text=_optional_str(choice, "text"))
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise ProbeFailure(Reason.INVALID_RESPONSE, "a chat chunk's delta is not an object")
        calls = delta.get("tool_calls")
        return Chunk(
            text=_optional_str(delta, "content"),
            thinking=_optional_str(delta, "reasoning_content") or _optional_str(delta, "reasoning"),
            tool_calls=len(calls) if isinstance(calls, list) else int(bool(calls)),
        )

    def _reported(self) -> BackendTimings:
        """What the server said about the answer; missing figures stay unknown (None)."""
        usage, timings = self.usage or {}, self.timings or {}
        prompt_ms, predicted_ms = _number(timings, "prompt_ms"), _number(timings, "predicted_ms")
        return BackendTimings(
            prompt_eval_s=None if prompt_ms is None else prompt_ms / 1000,
            eval_s=None if predicted_ms is None else predicted_ms / 1000,
            prompt_tokens=_count(usage, "prompt_tokens"),
            eval_count=_count(usage, "completion_tokens"),
            done_reason=self.finish_reason,
            missing_means_zero=False,
        )


def _first_choice(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    choices = chunk.get("choices")
    if choices is None or choices == []:  # the usage chunk has choices: []
        return None
    if not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ProbeFailure(Reason.INVALID_RESPONSE, "`choices` is not a list of objects")
    return choices[0]


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        chunk = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProbeFailure(Reason.INVALID_RESPONSE, "an event is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise ProbeFailure(
            Reason.INVALID_RESPONSE, f"an event is not JSON: {payload[:80]!r}"
        ) from None
    if not isinstance(chunk, dict):
        raise ProbeFailure(Reason.INVALID_RESPONSE, "an event is not a JSON object")
    return chunk


def _optional_str(source: Mapping[str, Any], key: str) -> str:
    value = source.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"field {key!r} is not a string")
    return value


def _count(source: Mapping[str, Any], key: str) -> int | None:
    value = source.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"usage {key!r} is not an integer")
    return value


def _number(source: Mapping[str, Any], key: str) -> float | None:
    value = source.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"timings {key!r} is not a number")
    return float(value)


def _message(error: object) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(error)


def _error_text(raw: bytes) -> tuple[str, str | None]:
    """The error message of a status reply and its code, or its start when it is not JSON."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text[:300], None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return _message(error)[:300], code if isinstance(code, str) else None
    if isinstance(error, str):
        return error[:300], None
    return text[:300], None


# --- read endpoint bodies ---------------------------------------------------------------------


def _listed(entry: Mapping[str, Any]) -> ListedModel:
    name = entry.get("id")
    if not isinstance(name, str) or not name:
        raise BackendApiError("a /models entry has no id")
    return ListedModel(
        name=name,
        family="",
        parameter_size="",
        quantization_level="",
        remote=False,
        capabilities=None,
    )
