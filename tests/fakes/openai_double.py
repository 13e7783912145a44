"""An in-process fake OpenAI-compatible server (`/v1`) that speaks the real SSE protocol.

It follows the project's OpenAI-compatible fact sheet (shared/reference/openai-compatible.md):
`data: {json}` events separated by blank lines and ended by `data: [DONE]`, a role-only first
chat chunk that is not a token, `reasoning_content` before content, a separate finish chunk,
and with `stream_options.include_usage` one `choices: []` usage chunk just before `[DONE]`
(every other chunk then carries `usage: null`). Variants reproduce servers that differ:
Ollama's legacy completions (a zeroed usage on every chunk), servers that never send usage,
and llama.cpp's `timings` object measured on the double's own clock.

The machinery (threads, records, release/stop, waiting) is the Ollama double's: this module
only swaps the dialect, so both doubles behave alike under faults and shutdown.

    with OpenAIDouble([OpenAIModelScript("gemma3:12b", first_token_delay=0.2)]) as double:
        openai.OpenAI(base_url=double.url, api_key="x").chat.completions.create(...)

Timing choice: a stream's headers go out as soon as the request is parsed, and a chat stream's
role-only chunk with them (Starlette-based servers such as vLLM send headers before the first
token; OpenAI sends the role chunk early). So the role chunk arrives `first_token_delay` before
any content, and a TTFT measured on it is visibly wrong. `role_chunk="with_first_token"`
instead holds headers and the role chunk back until the first content piece is ready (Ollama
and llama.cpp write nothing before the first token).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from tests.fakes.ollama_double import (
    HUGE_PIECE_BYTES,
    OllamaDouble,
    RequestRecord,
    _encode,
    split_pieces,
)
from tests.fakes.ollama_double import _Handler as _OllamaHandler
from tests.fakes.ollama_double import _Server as _OllamaServer

__all__ = [
    "ERROR_EVENT_MESSAGE",
    "GARBAGE_EVENT_DATA",
    "Fault",
    "OpenAIDouble",
    "OpenAIModelScript",
    "RequestRecord",
    "RoleChunk",
    "UsageVariant",
    "split_pieces",
]

JSON = dict[str, Any]
UsageVariant = Literal["present", "absent", "zeroed_every_chunk"]
RoleChunk = Literal["early", "with_first_token"]
ERROR_EVENT_MESSAGE = "an error was encountered while running the model: unexpected EOF"
GARBAGE_EVENT_DATA = b"<html>upstream sent garbage</html>"
SYSTEM_FINGERPRINT = "fp_double"


class Fault(enum.Enum):
    """What goes wrong on a model's completion requests (/v1/models is unaffected)."""

    NONE = "none"
    HANG_BEFORE_HEADERS = "hang_before_headers"  # not a byte until release()/stop(), then close
    DROP_MID_STREAM = "drop_mid_stream"  # half the pieces, then close: no finish, no [DONE]
    NO_DONE = "no_done"  # finish and usage chunks, then a clean end without [DONE]
    ERROR_EVENT = "error_event"  # 200, two pieces, a `data: {"error": {...}}` event, [DONE]
    GARBAGE_EVENT = "garbage_event"  # a non-JSON `data:` event after the first piece; rest follows
    NOT_FOUND = "not_found"  # 404 model_not_found naming the model, though it is listed
    STATUS_500 = "status_500"  # 500 server_error
    STATUS_503 = "status_503"  # 503 server_error: overloaded
    HUGE_RESPONSE = "huge_response"  # an answer of huge_bytes in 16 KiB pieces, then finish


# Faults that happen after a 200 went out; they always answer as a stream, even for stream:false
# (as in the Ollama double), so a non-streaming client sees a body it cannot parse.
_STREAM_FAULTS = frozenset(
    {Fault.DROP_MID_STREAM, Fault.NO_DONE, Fault.ERROR_EVENT, Fault.GARBAGE_EVENT}
)
_STATUS_FAULTS = {
    Fault.STATUS_500: (500, "The server had an error while processing your request."),
    Fault.STATUS_503: (503, "The server is overloaded or not ready yet."),
}


@dataclass
class OpenAIModelScript:
    """How one model is listed and how it answers; None variants follow the double's."""

    name: str  # the id, matched exactly (OpenAI ids are case-sensitive)
    answer: str = "Avocado is rich in potassium and fibre."
    thinking: str = ""  # streamed as reasoning pieces before the answer
    first_token_delay: float = 0.0  # receipt -> first content piece (prefill)
    # Extra delays before the first piece, the n-th generation taking the n-th (cycling).
    extra_delays: tuple[float, ...] = ()
    token_interval: float = 0.0  # between pieces; one piece is one completion token
    prompt_tokens: int = 11
    fault: Fault = Fault.NONE
    owned_by: str = "library"
    created: int = 1_764_000_000
    reasoning_field: str = "reasoning_content"  # some servers say "reasoning"
    usage: UsageVariant | None = None
    timings: bool | None = None


def _usage(prompt: int, completion: int) -> JSON:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _rate(n: int, ms: float) -> float:
    return n * 1000.0 / ms if ms > 0 else 0.0


def _per_token(ms: float, n: int) -> float:
    return ms / n if n else 0.0


@dataclass
class _Generation:
    """What one completion call produces, and its phase boundaries (perf_counter)."""

    chat: bool
    model: str  # as sent: responses echo it
    script: OpenAIModelScript
    fault: Fault
    pieces: list[tuple[bool, str]]  # (is_reasoning, text)
    finish_reason: str
    usage: UsageVariant
    include_usage: bool
    timings: bool
    id: str
    created: int
    started_at: float
    prompt_done_at: float = 0.0
    eval_end: float = 0.0

    def _envelope(self, choices: list[JSON]) -> JSON:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        out: JSON = {"id": self.id, "object": kind, "created": self.created, "model": self.model}
        out |= {"system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices}
        if self.include_usage and self.usage == "present":
            out["usage"] = None
        elif self.include_usage and self.usage == "zeroed_every_chunk":
            out["usage"] = _usage(0, 0)  # Ollama's legacy completions: zeros, not null
        return out

    def chunk(self, delta: JSON | None = None, text: str = "", finish: str | None = None) -> JSON:
        if self.chat:
            choice: JSON = {"index": 0, "delta": delta or {}, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        return self._envelope([choice | {"finish_reason": finish}])

    def role(self) -> JSON:
        return self.chunk({"role": "assistant"})

    def piece(self, is_reasoning: bool, text: str) -> JSON:
        if not self.chat:
            return self.chunk(text=text)
        return self.chunk({self.script.reasoning_field if is_reasoning else "content": text})

    def finish(self) -> JSON:
        return self.chunk(finish=self.finish_reason)

    def usage_chunk(self) -> JSON | None:
        if not self.include_usage or self.usage == "absent":
            return None
        return self._envelope([]) | {"usage": self.real_usage()}

    def real_usage(self) -> JSON:
        return _usage(self.script.prompt_tokens, len(self.pieces))

    def timings_object(self) -> JSON:
        """llama.cpp's figures: prefill = receipt -> first piece, decode = first -> last."""
        prompt_ms = (self.prompt_done_at - self.started_at) * 1000.0
        predicted_ms = (self.eval_end - self.prompt_done_at) * 1000.0
        prompt_n, predicted_n = self.script.prompt_tokens, len(self.pieces)
        return {
            "cache_n": 0,
            "prompt_n": prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": _per_token(prompt_ms, prompt_n),
            "prompt_per_second": _rate(prompt_n, prompt_ms),
            "predicted_n": predicted_n,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": _per_token(predicted_ms, predicted_n),
            "predicted_per_second": _rate(predicted_n, predicted_ms),
        }

    def whole(self) -> JSON:
        reasoning = "".join(text for is_reasoning, text in self.pieces if is_reasoning)
        answer = "".join(text for is_reasoning, text in self.pieces if not is_reasoning)
        if self.chat:
            message: JSON = {"role": "assistant", "content": answer}
            if reasoning:
                message[self.script.reasoning_field] = reasoning
            choice: JSON = {"index": 0, "message": message}
        else:
            choice = {"index": 0, "text": answer}
        choice |= {"logprobs": None, "finish_reason": self.finish_reason}
        kind = "chat.completion" if self.chat else "text_completion"
        out: JSON = {"id": self.id, "object": kind, "created": self.created, "model": self.model}
        out |= {"system_fingerprint": SYSTEM_FINGERPRINT, "choices": [choice]}
        if self.usage != "absent":
            out["usage"] = self.real_usage()
        if self.timings:
            out["timings"] = self.timings_object()
        return out


def _error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> JSON:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Server(_OllamaServer):
    double: OpenAIDouble

    def __init__(self, address: tuple[str, int], double: OpenAIDouble) -> None:
        super().__init__(address, double)
        self.RequestHandlerClass = _Handler  # the Ollama server binds its own handler


class _Handler(_OllamaHandler):
    """The Ollama double's handler (records, writing, hang-ups) speaking OpenAI's dialect."""

    server: _Server
    opened: bool  # a stream's headers (and role chunk) went out

    def _route(self, path: str) -> None:
        double = self.server.double
        failure = double._failure(path)
        route = _ROUTES.get(path)
        if failure is not None:
            self._error(failure, HTTPStatus(failure).phrase, "server_error")
        elif not self._authorized():
            return  # _authorized() has answered 401
        elif path.startswith("/v1/models/") and self.command == "GET":
            self.model(path.removeprefix("/v1/models/"))
        elif route is None:
            self._error(404, f"Invalid URL ({self.command} {path})")
        elif self.command not in route[1]:
            self._error(405, f"Method Not Allowed ({self.command} {path})")
        else:
            route[0](self)

    def _authorized(self) -> bool:
        """With an api_key set, answer 401 as OpenAI does unless the bearer token matches."""
        key = self.server.double.api_key
        sent = self.headers.get("Authorization")
        if key is None or sent == f"Bearer {key}":
            return True
        if not sent:
            self._error(401, "You didn't provide an API key.")
        else:
            self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        return False

    # --- writing -------------------------------------------------------------------------
    def _error(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self._json(status, _error_body(message, type_, code, param))

    def _event(self, obj: JSON, token: bool = False) -> None:
        self._chunk(b"data: " + _encode(obj) + b"\n\n")
        if token and self.record.first_token_at is None:
            self.record.first_token_at = self.record.last_byte_at

    def _open(self, gen: _Generation) -> None:
        """Send the headers (and a chat's role-only chunk) once."""
        if self.opened:
            return
        self.opened = True
        if gen.chat:
            self._event(gen.role())
        else:
            self._write(b"")

    # --- endpoints -----------------------------------------------------------------------
    def models(self) -> None:
        data = [self._entry(s) for s in self.server.double._inventory()]
        self._json(200, {"object": "list", "data": data})

    def model(self, name: str) -> None:
        script = self.server.double._lookup(name)
        if script is None:
            return self._not_found(name)
        self._json(200, self._entry(script))

    def _entry(self, script: OpenAIModelScript) -> JSON:
        return {
            "id": script.name,
            "object": "model",
            "created": script.created,
            "owned_by": script.owned_by,
        }

    def _not_found(self, model: str) -> None:
        message = f"The model `{model}` does not exist or you do not have access to it."
        self._error(404, message, code="model_not_found")

    def _request_body(self, required: str) -> JSON | None:
        """The JSON object body with a model and `required`, or a 400 and None."""
        try:
            body = json.loads(self.raw_body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(400, "We could not parse the JSON body of your request.")
            return None
        if not isinstance(body.get("model"), str) or not body["model"]:
            self._error(400, "you must provide a model parameter", param="model")
            return None
        if body.get(required) in (None, "", []):
            self._error(400, f"'{required}' is a required property", param=required)
            return None
        return body

    def _completion(self, chat: bool) -> None:
        double = self.server.double
        body = self._request_body("messages" if chat else "prompt")
        if body is None:
            return
        model: str = body["model"]
        script = double._lookup(model)
        if script is None:
            return self._not_found(model)
        fault = script.fault  # read once: set_fault() may race with this request
        if self._fail_before_headers(fault, model):
            return
        gen = self._plan(body, chat, model, script, fault)
        if body.get("stream") is True or fault in _STREAM_FAULTS:
            self._stream_events(gen)
        else:
            self._whole_object(gen)

    def _fail_before_headers(self, fault: Fault, model: str) -> bool:  # type: ignore[override]
        if fault is Fault.HANG_BEFORE_HEADERS:
            self.server.double._wait_release(self.release_gen, None)
            self.close_connection = True  # released: hang up without a single byte
        elif fault is Fault.NOT_FOUND:
            self._not_found(model)
        elif fault in _STATUS_FAULTS:
            self._error(*_STATUS_FAULTS[fault], "server_error")
        else:
            return False
        return True

    def _plan(  # type: ignore[override]
        self, body: JSON, chat: bool, model: str, script: OpenAIModelScript, fault: Fault
    ) -> _Generation:
        double = self.server.double
        if fault is Fault.HUGE_RESPONSE:
            size, filler = double.huge_bytes, (script.answer or "x") + " "
            answer = (filler * (size // len(filler) + 1))[:size]
            texts = [answer[i : i + HUGE_PIECE_BYTES] for i in range(0, size, HUGE_PIECE_BYTES)]
        else:
            texts = split_pieces(script.answer)
        reasoning = split_pieces(script.thinking) if chat else []
        pieces = [(True, t) for t in reasoning] + [(False, t) for t in texts]
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        truncated = isinstance(limit, int) and 0 <= limit < len(pieces)
        if truncated:
            pieces = pieces[:limit]
        options = body.get("stream_options")
        include = isinstance(options, dict) and options.get("include_usage") is True
        return _Generation(
            chat,
            model,
            script,
            fault,
            pieces,
            "length" if truncated else "stop",
            usage=script.usage or double.usage,
            include_usage=include and body.get("stream") is True,
            timings=double.timings if script.timings is None else script.timings,
            id=double._next_id("chatcmpl" if chat else "cmpl"),
            created=int(time.time()),
            started_at=self.record.received_at,
        )

    def _stream_events(self, gen: _Generation) -> None:
        double, script = self.server.double, gen.script
        self.opened = False
        headers = {"Content-Type": "text/event-stream; charset=utf-8"}
        headers |= {"Cache-Control": "no-cache", "Transfer-Encoding": "chunked"}
        self.pending = self._head(200, headers)
        if double.role_chunk == "early":
            self._open(gen)
        if not double._sleep(double._prefill(script)):
            return self._abandon()
        gen.prompt_done_at = time.perf_counter()
        self._open(gen)
        cut = {Fault.DROP_MID_STREAM: max(1, len(gen.pieces) // 2), Fault.ERROR_EVENT: 2}
        for i, (is_reasoning, text) in enumerate(gen.pieces[: cut.get(gen.fault)]):
            if i and not double._sleep(script.token_interval):
                return self._abandon()
            self._event(gen.piece(is_reasoning, text), token=True)
            if i == 0 and gen.fault is Fault.GARBAGE_EVENT:
                self._chunk(b"data: " + GARBAGE_EVENT_DATA + b"\n\n")
        gen.eval_end = time.perf_counter()
        if gen.fault is Fault.DROP_MID_STREAM:
            return self._abandon()  # no terminating chunk: the socket just closes
        if gen.fault is Fault.ERROR_EVENT:
            self._event(_error_body(ERROR_EVENT_MESSAGE, "server_error"))
        else:
            self._finish(gen)
        if gen.fault is not Fault.NO_DONE:
            self._chunk(b"data: [DONE]\n\n")
        self._write(b"0\r\n\r\n")

    def _finish(self, gen: _Generation) -> None:
        """The finish chunk, then the usage chunk; `timings` ride on the last of them."""
        finish, usage = gen.finish(), gen.usage_chunk()
        last = usage if usage is not None else finish
        if gen.timings:
            last["timings"] = gen.timings_object()
        self._event(finish)
        if usage is not None:
            self._event(usage)

    def _whole_object(self, gen: _Generation) -> None:
        double, script = self.server.double, gen.script
        if not double._sleep(double._prefill(script)):
            return self._abandon()
        gen.prompt_done_at = time.perf_counter()
        if not double._sleep(script.token_interval * max(0, len(gen.pieces) - 1)):
            return self._abandon()
        gen.eval_end = time.perf_counter()
        self._json(200, gen.whole())
        if gen.pieces:
            self.record.first_token_at = self.record.last_byte_at


_GET, _POST = frozenset({"GET"}), frozenset({"POST"})
_ROUTES: dict[str, tuple[Callable[[_Handler], None], frozenset[str]]] = {
    "/v1/models": (_Handler.models, _GET),
    "/v1/chat/completions": (lambda handler: handler._completion(chat=True), _POST),
    "/v1/completions": (lambda handler: handler._completion(chat=False), _POST),
}


class OpenAIDouble(OllamaDouble):
    """A loopback OpenAI-compatible server whose models, variants and faults tests script live.

    Records, release(), wait_for_requests(), fail_endpoint() and stop() are the Ollama
    double's; a record's first_token_at is the first content or reasoning byte, never the
    role-only chunk.
    """

    def __init__(
        self,
        models: list[OpenAIModelScript],
        *,
        usage: UsageVariant = "present",
        timings: bool = False,
        role_chunk: RoleChunk = "early",
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        huge_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.usage, self.timings, self.role_chunk = usage, timings, role_chunk
        self.api_key = api_key  # None: any or no Authorization header is accepted
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        super().__init__(models, host=host, port=port, huge_bytes=huge_bytes)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        """The base URL an OpenAI client takes, /v1 included."""
        return f"http://{self.host}:{self.port}/v1"

    _thread_name = "openai-double"

    def _make_server(self) -> _Server:
        return _Server((self.host, self._port), self)

    def set_models(self, models: list[OpenAIModelScript]) -> None:  # type: ignore[override]
        """Replace the inventory (copies are kept, so callers' scripts stay untouched)."""
        with self._cond:
            self._models = {m.name: dataclasses.replace(m) for m in models}  # type: ignore[misc]

    def set_fault(self, model: str, fault: Fault) -> None:  # type: ignore[override]
        with self._cond:
            self._script(model).fault = fault  # type: ignore[assignment]

    def _lookup(self, model: str) -> OpenAIModelScript | None:  # type: ignore[override]
        with self._cond:
            return self._models.get(model)  # type: ignore[return-value]

    def _inventory(self) -> list[OpenAIModelScript]:  # type: ignore[override]
        with self._cond:
            return list(self._models.values())  # type: ignore[arg-type]

    def _prefill(self, script: OpenAIModelScript) -> float:
        """Receipt to first piece: first_token_delay plus this generation's extra delay."""
        # The base only reads the script's name and extra_delays, which ours share.
        return script.first_token_delay + self._extra_delay(script)  # type: ignore[arg-type]

    def _next_id(self, prefix: str) -> str:
        with self._id_lock:
            return f"{prefix}-double{next(self._ids)}"
