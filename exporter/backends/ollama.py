"""Ollama's native API: everything the exporter knows about talking to an Ollama server.

Read endpoints: /api/version (health), /api/tags (models), /api/ps (residency), /api/show
(capabilities). Probes: a streamed /api/chat or /api/generate whose NDJSON lines carry the
answer, thinking and tool calls, and whose final (`done`) line carries Ollama's own timings in
nanoseconds. Plus Ollama's rules: how it compares model names, what keep_alive a probe sends,
and when a probe paid a cold load. The facts come from Ollama's API documentation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
from exporter.config import ProbeConfig
from exporter.probing.probe import BackendTimings, ProbeFailure, ProbeRequest, Reason

_MODEL_NOT_FOUND = re.compile(r"model ['\"].*['\"] not found", re.IGNORECASE | re.DOTALL)


class OllamaBackend:
    """Ollama's native API (the `ollama` backend)."""

    name = "ollama"
    residency = True
    digests = True

    # --- read endpoints ---------------------------------------------------------------------

    def version(self, api: ApiClient, timeout: float) -> str:
        """GET /api/version."""
        version = api.get("/api/version", timeout).get("version")
        if not isinstance(version, str) or not version:
            raise BackendApiError("/api/version answered without a version")
        return version

    def list_models(self, api: ApiClient, timeout: float) -> list[ListedModel]:
        """GET /api/tags."""
        return [_listed(entry) for entry in _models(api.get("/api/tags", timeout))]

    def running(self, api: ApiClient, timeout: float) -> list[RunningModel]:
        """GET /api/ps."""
        return [_running(entry) for entry in _models(api.get("/api/ps", timeout))]

    def capabilities(self, api: ApiClient, model: str, timeout: float) -> tuple[str, ...]:
        """POST /api/show: the model's capabilities (completion, embedding, ...)."""
        body = api.request("POST", "/api/show", timeout, json={"model": model})
        caps = body.get("capabilities") or []
        if not isinstance(caps, list):
            raise BackendApiError("/api/show capabilities is not a list")
        return tuple(str(c) for c in caps)

    # --- model rules ------------------------------------------------------------------------

    def model_key(self, name: str) -> str:
        """Ollama's matching: case-insensitive, a missing tag means `latest`."""
        return model_key(name)

    def keep_alive(self, probe: ProbeConfig, running: RunningModel | None) -> KeepAlive:
        """The configured keep_alive, or with preserve_residency what is left of a resident
        model's lifetime, so that the probe does not extend it (a request's keep_alive sticks)."""
        if probe.preserve_residency and running is not None and running.expires_at is not None:
            left = (running.expires_at - datetime.now(UTC)).total_seconds()
            return max(1, math.ceil(left))
        value: KeepAlive = probe.keep_alive
        return value

    def cold_start(
        self,
        reason: Reason | None,
        resident: Mapping[str, RunningModel] | None,
        running: RunningModel | None,
    ) -> bool | None:
        """A model absent from /api/ps just before the probe was loaded by it. One Ollama does
        not have was not loaded: absent from /api/ps, it is still no cold start."""
        if resident is None or reason is Reason.MODEL_NOT_FOUND:
            return None
        return running is None

    # --- probes -----------------------------------------------------------------------------

    def stream_request(self, request: ProbeRequest) -> StreamRequest:
        """POST /api/chat or /api/generate, streaming; unset fields are omitted so Ollama's
        own defaults apply (think false and keep_alive 0 are set, and sent)."""
        body: dict[str, Any] = {"model": request.model, "stream": True}
        if request.api == "chat":
            body["messages"] = [{"role": "user", "content": request.text}]
        else:
            body["prompt"] = request.text
        if request.options:
            body["options"] = dict(request.options)
        if request.think is not None:
            body["think"] = request.think
        if request.keep_alive is not None:
            body["keep_alive"] = request.keep_alive
        url = f"{request.base_url}/api/{request.api}"
        return StreamRequest("POST", url, body, dict(request.headers))

    def stream_parser(self, request: ProbeRequest) -> NdjsonStream:
        return NdjsonStream(request.api)

    def status_failure(self, status: int, body: bytes) -> ProbeFailure:
        """404 naming the model is `model_not_found`; any other status is `http_status`."""
        text = _error_text(body)
        if status == 404 and _MODEL_NOT_FOUND.search(text):
            return ProbeFailure(Reason.MODEL_NOT_FOUND, text)
        return ProbeFailure(Reason.HTTP_STATUS, f"HTTP {status}: {text}".rstrip(": "))


OLLAMA = OllamaBackend()


def model_key(name: str) -> str:
    """Ollama's matching: case-insensitive, a missing tag means `latest`."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


# --- the stream -------------------------------------------------------------------------------


@dataclass
class NdjsonStream:
    """Parses the NDJSON lines of one /api/chat or /api/generate answer."""

    api: str

    def feed(self, line: bytes, *, final: bool = False) -> Chunk | None:
        if not line.strip():
            return None
        # Ollama ends every line with a newline; a last fragment that is not a whole JSON
        # value means the connection closed mid-line.
        if final and not _is_json(line):
            raise ProbeFailure(Reason.INCOMPLETE, "stream ended inside a line")
        chunk = _decode(line)
        if "error" in chunk:
            raise ProbeFailure(Reason.STREAM_ERROR, str(chunk["error"])[:300])
        source = self._source(chunk)
        text_key = "content" if self.api == "chat" else "response"
        calls = source.get("tool_calls")
        done = chunk.get("done") is True
        return Chunk(
            text=_optional_str(source, text_key),
            thinking=_optional_str(source, "thinking"),
            tool_calls=len(calls) if isinstance(calls, list) else int(bool(calls)),
            done=done,
            reported=_timings(chunk) if done else None,
        )

    def _source(self, chunk: dict[str, Any]) -> Mapping[str, Any]:
        if self.api != "chat":
            return chunk
        message = chunk.get("message", {})
        if not isinstance(message, dict):
            raise ProbeFailure(Reason.INVALID_RESPONSE, "chat chunk without a message object")
        return message


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _decode(line: bytes) -> dict[str, Any]:
    try:
        chunk = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProbeFailure(Reason.INVALID_RESPONSE, "a line is not valid UTF-8") from None
    except (ValueError, RecursionError):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"a line is not JSON: {line[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise ProbeFailure(Reason.INVALID_RESPONSE, "a line is not a JSON object")
    return chunk


def _optional_str(source: Mapping[str, Any], key: str) -> str:
    value = source.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"field {key!r} is not a string")
    return value


def _timings(chunk: Mapping[str, Any]) -> BackendTimings:
    """Read the final chunk's figures; each is optional (omitempty drops zeros)."""

    def seconds(key: str) -> float | None:
        value = _optional_int(chunk, key)
        return None if value is None else value / 1e9

    reason = chunk.get("done_reason")
    return BackendTimings(
        total_s=seconds("total_duration"),
        load_s=seconds("load_duration"),
        prompt_eval_s=seconds("prompt_eval_duration"),
        eval_s=seconds("eval_duration"),
        prompt_tokens=_optional_int(chunk, "prompt_eval_count"),
        eval_count=_optional_int(chunk, "eval_count"),
        done_reason=reason if isinstance(reason, str) else None,
    )


def _optional_int(chunk: Mapping[str, Any], key: str) -> int | None:
    value = chunk.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeFailure(Reason.INVALID_RESPONSE, f"field {key!r} is not an integer")
    return value


def _error_text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text[:300]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        return error[:300]
    return text[:300]


# --- read endpoint bodies ---------------------------------------------------------------------


def _models(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    models = body.get("models")
    if models is None:
        return []
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise BackendApiError("`models` is not a list of objects")
    return models


def _name(entry: Mapping[str, Any]) -> str:
    name = entry.get("name") or entry.get("model")
    if not isinstance(name, str) or not name:
        raise BackendApiError("a model entry has no name")
    return name


def _listed(entry: Mapping[str, Any]) -> ListedModel:
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    assert isinstance(details, dict)
    name = _name(entry)
    caps = entry.get("capabilities")
    tag = name.rsplit(":", 1)[-1] if ":" in name else ""
    remote = bool(entry.get("remote_model") or entry.get("remote_host")) or (
        tag == "cloud" or tag.endswith("-cloud")
    )
    return ListedModel(
        name=name,
        family=str(details.get("family") or ""),
        parameter_size=str(details.get("parameter_size") or ""),
        quantization_level=str(details.get("quantization_level") or ""),
        remote=remote,
        capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else None,
        digest=_digest(entry.get("digest")),
    )


def _digest(value: object) -> str:
    """/api/tags gives the manifest's sha256 as 64 hex digits; tolerate a `sha256:` prefix."""
    if not isinstance(value, str):
        return ""
    return value.strip().lower().removeprefix("sha256:")


def _running(entry: Mapping[str, Any]) -> RunningModel:
    return RunningModel(
        name=_name(entry),
        size_bytes=_int(entry.get("size")),
        vram_bytes=_int(entry.get("size_vram")),
        expires_at=_time(entry.get("expires_at")),
        context_length=_int(entry.get("context_length")) or None,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _time(value: object) -> datetime | None:
    """Parse RFC 3339 with nanoseconds (Python keeps microseconds)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, frac = text.partition(".")
    if dot:
        # Python holds microseconds, Ollama sends nanoseconds; the offset follows the digits.
        digits = len(frac) - len(frac.lstrip("0123456789"))
        text = f"{head}.{frac[: min(digits, 6)]}{frac[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
