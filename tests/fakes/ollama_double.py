"""An in-process fake Ollama server that speaks the real wire protocol and injects faults.

It follows the project's Ollama API fact sheet: NDJSON streams over chunked encoding, headers
only once scheduling is done, integer-nanosecond metrics measured from its own real delays with
zero values omitted, and Ollama's error bodies. Stdlib only; one daemon thread per connection.

    with OllamaDouble([ModelScript("gemma3:12b", load_delay=0.2)]) as double:
        ollama.Client(host=double.url).generate("gemma3:12b", "Why avocados?")
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

JSON = dict[str, Any]
ERROR_LINE_TEXT = "an error was encountered while running the model: unexpected EOF"
HUGE_PIECE_BYTES = 16 * 1024  # one "token" of a HUGE_RESPONSE answer
_REMOTE_HOST = "https://ollama.com:443"


class Fault(enum.Enum):
    """What goes wrong on a model's generate/chat requests (other endpoints are unaffected)."""

    NONE = "none"
    HANG_BEFORE_HEADERS = "hang_before_headers"  # not a byte until release()/stop(), then close
    TRICKLE = "trickle"  # 200, half a line, then "." per trickle_interval until release/stop
    DROP_MID_STREAM = "drop_mid_stream"  # half the chunks, then close: no done, no last chunk
    NO_DONE = "no_done"  # every token chunk, then a clean end without a done:true chunk
    ERROR_LINE = "error_line"  # 200, two chunks, one {"error": ERROR_LINE_TEXT} line, clean end
    GARBAGE_LINE = "garbage_line"  # a non-JSON line after the first chunk; the rest follows
    INVALID_UTF8 = "invalid_utf8"  # a chunk line with invalid UTF-8 after the first; rest follows
    NOT_FOUND = "not_found"  # 404 {"error": "model 'NAME' not found"}
    STATUS_500 = "status_500"  # 500, a runner crash
    STATUS_503 = "status_503"  # 503, the scheduler queue is full
    OTHER_404 = "other_404"  # 404 "404 page not found" text, as from a proxy or old server
    HUGE_RESPONSE = "huge_response"  # an answer of huge_bytes (8 MiB) in 16 KiB tokens, then done


# Faults that happen after a 200 went out; they always answer as a stream, even for stream:false.
_STREAM_FAULTS = frozenset(
    {
        Fault.TRICKLE,
        Fault.DROP_MID_STREAM,
        Fault.NO_DONE,
        Fault.ERROR_LINE,
        Fault.GARBAGE_LINE,
        Fault.INVALID_UTF8,
    }
)
_STATUS_FAULTS = {
    Fault.STATUS_500: (500, "llama-server process has terminated: exit status 2"),
    # Two spaces, exactly as Ollama's scheduler writes it.
    Fault.STATUS_503: (503, "server busy, please try again.  maximum pending requests exceeded"),
}


@dataclass
class ModelScript:
    """How one model looks in the listings and behaves when asked to generate."""

    name: str
    answer: str = "Avocado is rich in potassium and fibre."
    thinking: str = ""
    family: str = "gemma3"
    parameter_size: str = "12.2B"
    quantization_level: str = "Q4_K_M"
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    remote: bool = False
    size: int = 8_000_000_000
    size_vram: int = 7_500_000_000
    context_length: int = 4096
    resident: bool = False
    load_delay: float = 0.0
    first_token_delay: float = 0.0
    # Extra delays before the first token, the n-th generation taking the n-th (cycling): a
    # spread that two models can share exactly, so a comparison of them has a known answer.
    extra_delays: tuple[float, ...] = ()
    token_interval: float = 0.0
    prompt_eval_count: int = 11
    fault: Fault = Fault.NONE
    digest: str = ""

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = hashlib.sha256(self.name.encode()).hexdigest()


@dataclass
class RequestRecord:
    """One request as the double saw it; timestamps are time.perf_counter() values."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: JSON | None
    received_at: float  # when the request line arrived, before headers and body are parsed
    first_token_at: float | None = None
    last_byte_at: float | None = None
    status: int = 0  # 0 until a status line is written (a hang or drop before headers keeps it)
    completed_at: float | None = None  # when the handler let go of the request


def listed_name(name: str) -> str:
    """Ollama shows an untagged name with the default ':latest' tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def split_pieces(text: str) -> list[str]:
    """Word-ish tokens that keep their leading spaces, so they join back to `text`."""
    return re.findall(r"\s*\S+|\s+$", text)


def _timestamp(ns: int | None = None) -> str:
    secs, frac = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _encode(obj: Any) -> bytes:
    # Compact and raw UTF-8, like Go's encoding/json.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _is_zero_keep_alive(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, str) and re.fullmatch(r"(0+(\.0*)?[a-zµ]*)+", value) is not None


def _parameter_count(size: str) -> int:
    match = re.fullmatch(r"([\d.]+)([KMBT])", size.strip().upper())
    if not match:
        return 0
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[match[2]]
    return round(float(match[1]) * scale)


def _decode_error(text: str, pos: int) -> str:
    """Go's decoder wording, e.g. "invalid character 'x' looking for beginning of value"."""
    if pos >= len(text):
        return "unexpected EOF"
    return f"invalid character {text[pos]!r} looking for beginning of value"


def _details(script: ModelScript) -> JSON:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": script.family,
        "families": [script.family],
        "parameter_size": script.parameter_size,
        "quantization_level": script.quantization_level,
    }


@dataclass
class _Generation:
    """What one generate/chat call produces, and its phase boundaries (perf_counter)."""

    chat: bool
    model: str  # as sent: responses echo it
    script: ModelScript
    fault: Fault
    pieces: list[tuple[bool, str]]  # (is_thinking, text); one piece is one token
    done_reason: str
    raw: bool
    started_at: float
    loaded_at: float = 0.0
    prompt_done_at: float = 0.0

    def chunk(self, thinking: str = "", text: str = "", done: bool = False) -> JSON:
        out: JSON = {"model": self.model, "created_at": _timestamp()}
        if self.chat:
            message = {"role": "assistant", "content": text}
            out["message"] = message | ({"thinking": thinking} if thinking else {})
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        out["done"] = done
        return out

    def final(self, eval_end: float, thinking: str = "", text: str = "") -> JSON:
        out = self.chunk(thinking, text, done=True)
        out["done_reason"] = self.done_reason
        eval_count = len(self.pieces)
        context = list(range(1, self.script.prompt_eval_count + eval_count + 1))
        metrics = {
            "context": [] if self.chat or self.raw else context,
            "total_duration": _ns(time.perf_counter() - self.started_at),
            "load_duration": _ns(self.loaded_at - self.started_at),
            "prompt_eval_count": self.script.prompt_eval_count,
            "prompt_eval_duration": _ns(self.prompt_done_at - self.loaded_at),
            "eval_count": eval_count,
            "eval_duration": _ns(eval_end - self.prompt_done_at),
        }
        # Ollama tags every metric omitempty: a zero is left out, never sent as 0.
        return out | {key: value for key, value in metrics.items() if value}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted double must get the same port back at once

    def __init__(self, address: tuple[str, int], double: OllamaDouble) -> None:
        self.double = double
        self._track = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handler_threads: list[threading.Thread] = []
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        # Ollama's Go server disables Nagle; without this small lines can wait 40 ms for an ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address

    def process_request(self, request: Any, client_address: Any) -> None:
        # Our own bookkeeping, because ThreadingMixIn forgets daemon threads and their sockets.
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._track:
            self._connections.add(request)
            self._handler_threads = [t for t in self._handler_threads if t.is_alive()] + [thread]
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up between requests is normal; only real bugs get a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._track:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self, timeout: float) -> None:
        with self._track:
            live, threads = list(self._connections), list(self._handler_threads)
        for conn in live:  # wakes handlers blocked reading the next keep-alive request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.perf_counter() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.perf_counter()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, like Go's net/http
    server: _Server
    arrived_at: float

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines."""

    def parse_request(self) -> bool:
        # Receipt is the request's arrival: handle_one_request has just read the request line.
        # A stamp taken after the headers, body and JSON were parsed would count the double's
        # own parsing in the times a client under test is compared with. total_duration is
        # timed from the same instant (_plan).
        self.arrived_at = time.perf_counter()
        return super().parse_request()

    def _dispatch(self) -> None:
        double = self.server.double
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length > 0 else b""
        self.pending = b""  # status line and headers wait here for the first body bytes
        path = urlsplit(self.path).path
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.record, self.release_gen = double._receive(
            self.command, path, headers, self.raw_body, self.arrived_at
        )
        try:
            self._route(path)
        except OSError:  # the client went away, or stop() shut the socket
            self.close_connection = True
        finally:
            double._complete(self.record)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _route(self, path: str) -> None:
        failure = self.server.double._failure(path)
        route = _ROUTES.get(path)
        if failure is not None:
            self._error(failure, HTTPStatus(failure).phrase.lower())
        elif route is None:
            self._text(404, "404 page not found")
        elif self.command not in route[1]:
            self._text(405, "405 method not allowed")
        else:
            route[0](self)

    # --- writing -------------------------------------------------------------------------
    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        self.record.status = status
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Date: {formatdate()}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, data: bytes) -> None:
        self.wfile.write(self.pending + data)  # unbuffered: this is one sendall
        self.wfile.flush()
        self.pending = b""
        self.record.last_byte_at = time.perf_counter()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        head = self._head(status, {"Content-Type": content_type, "Content-Length": str(len(body))})
        self._write(head if self.command == "HEAD" else head + body)

    def _json(self, status: int, obj: JSON) -> None:
        self._send(status, _encode(obj), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def _line(self, obj: JSON, token: bool = False) -> None:
        self._chunk(_encode(obj) + b"\n")
        if token and self.record.first_token_at is None:
            self.record.first_token_at = self.record.last_byte_at

    # --- read endpoints ------------------------------------------------------------------
    def root(self) -> None:
        self._text(200, "Ollama is running")

    def version(self) -> None:
        self._json(200, {"version": self.server.double.version})

    def tags(self) -> None:
        self._json(200, {"models": [self._tag(s) for s in self.server.double._inventory()]})

    def _tag(self, script: ModelScript) -> JSON:
        name = listed_name(script.name)
        entry: JSON = {"name": name, "model": name, "modified_at": self.server.double.modified_at}
        entry |= {"size": script.size, "digest": script.digest, "details": _details(script)}
        entry["capabilities"] = list(script.capabilities)
        if script.remote:
            entry |= {"remote_model": re.sub(r"[-:]cloud$", "", name), "remote_host": _REMOTE_HOST}
        return entry

    def ps(self) -> None:
        expires_at = _timestamp(time.time_ns() + 300 * 1_000_000_000)  # default keep_alive 5m
        models = [
            {"name": listed_name(s.name), "model": listed_name(s.name), "size": s.size}
            | {"size_vram": s.size_vram, "digest": s.digest, "details": _details(s)}
            | {"expires_at": expires_at, "context_length": s.context_length}
            for s in self.server.double._inventory()
            if s.resident and not s.remote  # cloud models have no local runner
        ]
        self._json(200, {"models": models})

    def show(self) -> None:
        body = self._body("ShowRequest")
        if body is None:
            return
        model = body.get("model") or body.get("name") or ""
        script = self.server.double._lookup(model)
        if not model:
            return self._error(400, "model is required")
        if script is None:
            return self._error(404, f"model '{model}' not found")
        info = {
            "general.architecture": script.family,
            "general.parameter_count": _parameter_count(script.parameter_size),
            f"{script.family}.context_length": script.context_length,
        }
        self._json(
            200,
            {
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {script.name}\n',
                "parameters": "temperature 1",
                "template": "{{ .Prompt }}",
                "details": _details(script),
                "model_info": info,
                "capabilities": list(script.capabilities),
                "modified_at": self.server.double.modified_at,
            },
        )

    def _body(self, struct: str) -> JSON | None:
        """Decode the JSON object body, or answer 400 with Ollama's wording and return None."""
        text = self.raw_body.decode("utf-8", "replace")
        if not text.strip():
            self._error(400, "missing request body")
            return None
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            self._error(400, _decode_error(text, exc.pos))
            return None
        if not isinstance(body, dict) or not isinstance(body.get("model", ""), str):
            self._error(400, f"json: cannot unmarshal {type(body).__name__} into api.{struct}")
            return None
        return body

    # --- generate and chat ---------------------------------------------------------------
    def _completion(self, chat: bool) -> None:
        double = self.server.double
        body = self._body("ChatRequest" if chat else "GenerateRequest")
        if body is None:
            return
        model: str = body.get("model") or ""
        script = double._lookup(model)
        if chat and not model:
            return self._error(400, "model is required")
        if script is None:
            return self._error(404, f"model '{model}' not found")
        if "completion" not in script.capabilities:
            return self._error(400, f'"{model}" does not support {"chat" if chat else "generate"}')
        fault = script.fault  # read once: set_fault() may race with this request
        if self._fail_before_headers(fault, model):
            return
        gen = self._plan(body, chat, model, script, fault)
        has_input = bool(body.get("messages") if chat else body.get("prompt"))
        unload = "keep_alive" in body and _is_zero_keep_alive(body["keep_alive"])
        if not has_input and unload:
            double._set_resident(script, False)
            return self._json(200, gen.chunk(done=True) | {"done_reason": "unload"})
        if not double._schedule(script):
            return self._abandon()
        gen.loaded_at = time.perf_counter()
        if not has_input:  # "load only": the reply carries no metrics
            return self._json(200, gen.chunk(done=True) | {"done_reason": "load"})
        if body.get("stream") is False and fault not in _STREAM_FAULTS:
            self._whole(gen)
        else:
            self._stream(gen)
        if unload:
            double._set_resident(script, False)

    def _fail_before_headers(self, fault: Fault, model: str) -> bool:
        if fault is Fault.HANG_BEFORE_HEADERS:
            self.server.double._wait_release(self.release_gen, None)
            self.close_connection = True  # released: hang up without a single byte
        elif fault is Fault.NOT_FOUND:
            self._error(404, f"model '{model}' not found")
        elif fault is Fault.OTHER_404:
            self._text(404, "404 page not found")
        elif fault in _STATUS_FAULTS:
            self._error(*_STATUS_FAULTS[fault])
        else:
            return False
        return True

    def _plan(
        self, body: JSON, chat: bool, model: str, script: ModelScript, fault: Fault
    ) -> _Generation:
        answer = script.answer
        if fault is Fault.HUGE_RESPONSE:
            size, filler = self.server.double.huge_bytes, (answer or "x") + " "
            answer = (filler * (size // len(filler) + 1))[:size]
            texts = [answer[i : i + HUGE_PIECE_BYTES] for i in range(0, size, HUGE_PIECE_BYTES)]
        else:
            texts = split_pieces(answer)
        thinking = [] if body.get("think") is False else split_pieces(script.thinking)
        pieces = [(True, t) for t in thinking] + [(False, t) for t in texts]
        options = body.get("options") or {}
        limit = options.get("num_predict") if isinstance(options, dict) else None
        truncated = isinstance(limit, int) and 0 <= limit < len(pieces)
        if truncated:
            pieces = pieces[:limit]
        return _Generation(
            chat,
            model,
            script,
            fault,
            pieces,
            "length" if truncated else "stop",
            raw=body.get("raw") is True,
            started_at=self.record.received_at,
        )

    def _stream(self, gen: _Generation) -> None:
        double = self.server.double
        if not double._sleep(gen.script.first_token_delay + double._extra_delay(gen.script)):
            return self._abandon()
        gen.prompt_done_at = time.perf_counter()
        self.pending = self._head(
            200, {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"}
        )
        if gen.fault is Fault.TRICKLE:
            return self._trickle(gen)
        cut = {Fault.DROP_MID_STREAM: max(1, len(gen.pieces) // 2), Fault.ERROR_LINE: 2}
        for i, (is_thinking, text) in enumerate(gen.pieces[: cut.get(gen.fault)]):
            if i and not double._sleep(gen.script.token_interval):
                return self._abandon()
            self._line(gen.chunk(*((text, "") if is_thinking else ("", text))), token=True)
            if i == 0 and gen.fault is Fault.GARBAGE_LINE:
                self._chunk(b"<html>upstream sent garbage</html>\n")
            if i == 0 and gen.fault is Fault.INVALID_UTF8:
                model = _encode(gen.model)
                self._chunk(
                    b'{"model":%s,"response":"caf\xc3\x28 \xff\xfe","done":false}\n' % model
                )
        eval_end = time.perf_counter()
        if gen.fault is Fault.DROP_MID_STREAM:
            return self._abandon()  # no done, no terminating chunk: the socket just closes
        if gen.fault is Fault.ERROR_LINE:
            self._line({"error": ERROR_LINE_TEXT})
        elif gen.fault is not Fault.NO_DONE:
            self._line(gen.final(eval_end))
        self._write(b"0\r\n\r\n")

    def _trickle(self, gen: _Generation) -> None:
        # Half a line, then a byte per interval: reads never time out yet no line completes,
        # so only the prober's overall deadline can end it.
        self._chunk(
            b'{"model":%s,"created_at":"%s","response":"'
            % (_encode(gen.model), _timestamp().encode())
        )
        double = self.server.double
        while not double._wait_release(self.release_gen, double.trickle_interval):
            self._chunk(b".")
        self._abandon()

    def _whole(self, gen: _Generation) -> None:
        double, script = self.server.double, gen.script
        if not double._sleep(script.first_token_delay + double._extra_delay(script)):
            return self._abandon()
        gen.prompt_done_at = time.perf_counter()
        if not double._sleep(script.token_interval * max(0, len(gen.pieces) - 1)):
            return self._abandon()
        thinking = "".join(text for is_thinking, text in gen.pieces if is_thinking)
        answer = "".join(text for is_thinking, text in gen.pieces if not is_thinking)
        self._json(200, gen.final(time.perf_counter(), thinking, answer))
        if thinking or answer:
            self.record.first_token_at = self.record.last_byte_at

    def _abandon(self) -> None:
        """Hang up once this handler returns, whatever the client asked for."""
        self.close_connection = True


_GET_HEAD, _GET, _POST = frozenset({"GET", "HEAD"}), frozenset({"GET"}), frozenset({"POST"})
_ROUTES: dict[str, tuple[Callable[[_Handler], None], frozenset[str]]] = {
    "/": (_Handler.root, _GET_HEAD),
    "/api/version": (_Handler.version, _GET_HEAD),
    "/api/tags": (_Handler.tags, _GET_HEAD),
    "/api/ps": (_Handler.ps, _GET),
    "/api/show": (_Handler.show, _POST),
    "/api/generate": (lambda handler: handler._completion(chat=False), _POST),
    "/api/chat": (lambda handler: handler._completion(chat=True), _POST),
}


class OllamaDouble:
    """A loopback Ollama server whose models, residency and faults tests script live."""

    def __init__(
        self,
        models: list[ModelScript],
        *,
        version: str = "0.32.15",
        host: str = "127.0.0.1",
        port: int = 0,
        trickle_interval: float = 1.0,
        huge_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.version, self.host, self._port = version, host, port
        self.trickle_interval, self.huge_bytes = trickle_interval, huge_bytes
        self.modified_at = _timestamp()
        self._cond = threading.Condition()  # guards everything below; waiters release it
        self._models: dict[str, ModelScript] = {}
        self._failures: dict[str, int] = {}
        self._generations: dict[str, int] = {}  # generations per model, for extra_delays
        self._records: list[RequestRecord] = []
        self._release_gen = 0
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.set_models(models)

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("OllamaDouble has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind (the same port again after a stop()) and serve on a daemon thread."""
        if self._server is None:
            with self._cond:
                self._stopping = False
            self._server = self._make_server()
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},  # keeps stop() quick
                name=f"{self._thread_name}-{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    _thread_name = "ollama-double"

    def _make_server(self) -> _Server:
        """The listening server; a double of another protocol returns its own subclass."""
        return _Server((self.host, self._port), self)

    def stop(self) -> None:
        """Like a dying Ollama: wake hangs, close the listener and every connection, join."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        server.close_connections(timeout=2.0)
        thread.join(2.0)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_models(self, models: list[ModelScript]) -> None:
        """Replace the inventory (copies are kept, so callers' scripts stay untouched)."""
        with self._cond:
            self._models = {listed_name(m.name).lower(): dataclasses.replace(m) for m in models}

    def set_fault(self, model: str, fault: Fault) -> None:
        with self._cond:
            self._script(model).fault = fault

    def set_resident(self, model: str, resident: bool) -> None:
        with self._cond:
            self._script(model).resident = resident

    def fail_endpoint(self, path: str, status: int | None) -> None:
        """Make every request to `path` answer `status` with an error body; None clears it."""
        with self._cond:
            if status is None:
                self._failures.pop(path, None)
            else:
                self._failures[path] = status

    def release(self) -> None:
        """Unblock every request hanging or trickling now; later ones hang again."""
        with self._cond:
            self._release_gen += 1
            self._cond.notify_all()

    @property
    def records(self) -> list[RequestRecord]:
        return self.requests()

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        with self._cond:
            return [r for r in self._records if path is None or r.path == path]

    def wait_for_requests(
        self, n: int, path: str | None = None, timeout: float = 5.0, *, completed: bool = False
    ) -> list[RequestRecord]:
        """Block until `n` requests (to `path`) arrived, or finished if `completed`; else raise."""

        def matching() -> list[RequestRecord]:
            found = [r for r in self._records if path is None or r.path == path]
            return [r for r in found if r.completed_at is not None] if completed else found

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= n, timeout):
                seen = [(r.method, r.path, r.status) for r in self._records]
                raise TimeoutError(f"wanted {n} requests to {path or 'any path'}, saw {seen}")
            return matching()

    # --- used by the handler threads ---------------------------------------------------------
    def _script(self, model: str) -> ModelScript:
        script = self._lookup(model)
        if script is None:
            raise KeyError(f"no model {model!r} in the double")
        return script

    def _lookup(self, model: str) -> ModelScript | None:
        # Ollama matches names case-insensitively, with ':latest' as the default tag.
        with self._cond:
            return self._models.get(listed_name(model).lower()) if model else None

    def _inventory(self) -> list[ModelScript]:
        with self._cond:
            return list(self._models.values())

    def _failure(self, path: str) -> int | None:
        with self._cond:
            return self._failures.get(path)

    def _receive(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, arrived_at: float
    ) -> tuple[RequestRecord, int]:
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        record = RequestRecord(method, path, headers, body, received_at=arrived_at)
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()
            # Taken with the record, so release() after wait_for_requests() frees this request.
            return record, self._release_gen

    def _complete(self, record: RequestRecord) -> None:
        with self._cond:
            record.completed_at = time.perf_counter()
            self._cond.notify_all()

    def _set_resident(self, script: ModelScript, resident: bool) -> None:
        with self._cond:
            script.resident = resident and not script.remote

    def _schedule(self, script: ModelScript) -> bool:
        """Pay the cold load unless resident; False if stop() cut it short."""
        if script.resident:
            return True
        if not self._sleep(script.load_delay):
            return False
        self._set_resident(script, True)
        return True

    def _extra_delay(self, script: ModelScript) -> float:
        if not script.extra_delays:
            return 0.0
        with self._cond:
            n = self._generations.get(script.name, 0)
            self._generations[script.name] = n + 1
        return script.extra_delays[n % len(script.extra_delays)]

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` (never less); False if the double is stopping."""
        deadline = time.perf_counter() + seconds
        with self._cond:
            while not self._stopping:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return True
                self._cond.wait(left)
        return False

    def _wait_release(self, generation: int, timeout: float | None) -> bool:
        """True once release() or stop() happened after `generation` was taken."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stopping or self._release_gen != generation, timeout
            )
