"""One generation probe, whatever the server's protocol: a streamed request, timed and parsed.

The protocol (the request's path and body, the stream's lines, what an error status means) is
the backend's (exporter.backends); this module owns the transport, the clock and the verdict.
A probe never raises for a failing target. It returns a ProbeOutcome that is either a success
or one failure reason from a fixed set, with a human-readable detail for logs and the status page.
The timeout is a total deadline (connect to last byte), enforced by a watchdog that shuts the
socket down, so a server trickling one byte every few seconds cannot hold a probe open.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from exporter.backends.base import Backend


class Reason(StrEnum):
    """Why a probe failed: the fixed set exported as the `reason` label."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    HTTP_STATUS = "http_status"
    MODEL_NOT_FOUND = "model_not_found"
    STREAM_ERROR = "stream_error"
    INVALID_RESPONSE = "invalid_response"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class ProbeRequest:
    """Everything one probe sends; built by the runner from config and residency.

    The backend turns it into its protocol's request; options, think and keep_alive are left
    out of that request when unset, so the server's own defaults apply.
    """

    base_url: str
    api: str  # "chat" | "generate"
    model: str
    text: str
    timeout: float
    max_response_bytes: int
    options: Mapping[str, Any] = field(default_factory=dict)
    think: bool | str | None = None
    keep_alive: int | float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendTimings:
    """The backend's own report of one generation (seconds, tokens); None where it sent none."""

    total_s: float | None = None
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    prompt_tokens: int | None = None
    eval_count: int | None = None
    done_reason: str | None = None
    # Ollama omits zero figures (omitempty), so there a missing one is 0; other protocols'
    # missing figures are unknown, and their series stay absent.
    missing_means_zero: bool = True


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe measured. `reason` is None exactly when it succeeded."""

    reason: Reason | None
    detail: str
    duration_s: float
    ttft_s: float | None = None
    answer: str = ""
    reported: BackendTimings | None = None
    cancelled: bool = False

    @property
    def success(self) -> bool:
        return self.reason is None


class ProbeFailure(Exception):
    """A probe's verdict found while reading the reply; backends raise it from their parsers."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Watchdog:
    """Shuts a probe's socket down at its deadline or when cancelled from another thread."""

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timeout = timeout
        self.finished = False
        self.fired: str | None = None

    def __enter__(self) -> Watchdog:
        _DEADLINES.add(time.monotonic() + self._timeout, self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finished = True

    def cancel(self) -> None:
        """Abort the probe (exporter shutdown)."""
        self._fire("cancelled")

    def expire(self) -> None:
        """The deadline passed: abort the probe unless it has finished."""
        if not self.finished:
            self._fire("timeout")

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore trace hook: remember the socket once the TCP connection exists."""
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                self._sock = sock
                if self.fired is not None:
                    self._shutdown()

    def _fire(self, why: str) -> None:
        with self._lock:
            if self.fired is None:
                self.fired = why
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            # Already closed means there is nothing left to interrupt.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


class _Deadlines:
    """One thread that fires every probe's deadline.

    A timer thread per probe cost a thread start (and its stack) per probe: 30 a second in a
    busy soak. Finished watchdogs are dropped lazily, when they reach the front of the heap.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._order = itertools.count()  # ties never compare watchdogs
        self._thread: threading.Thread | None = None

    def add(self, deadline: float, dog: Watchdog) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), dog))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="probe-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            self._next_due().expire()

    def _next_due(self) -> Watchdog:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_DEADLINES = _Deadlines()
Clock = Callable[[], float]
# An error reply is read this far at most, for its message; a larger one is not read whole.
ERROR_BODY_BYTES = 65536


def run_probe(
    client: httpx.Client,
    backend: Backend,
    request: ProbeRequest,
    *,
    clock: Clock = time.perf_counter,
    watchdog: Watchdog | None = None,
) -> ProbeOutcome:
    """Send one streamed generation request and measure it; never raises for target faults."""
    dog = watchdog or Watchdog(request.timeout)
    start = clock()
    sent: list[float] = []
    reads = _ReadStamps(clock)

    def trace(event: str, info: Mapping[str, Any]) -> None:
        # The clock of a measured probe starts when the request headers go out: the TCP (and
        # TLS) connect before it is not the model's time.
        if event == "http11.send_request_headers.started" and not sent:
            sent.append(clock())
        elif event in _STREAM_OPENED:
            reads.attach(info.get("return_value"))
        dog.trace(event, info)

    call = backend.stream_request(request)
    try:
        with (
            dog,
            client.stream(
                call.method,
                call.url,
                json=call.body,
                headers=dict(call.headers),
                timeout=request.timeout,
                extensions={"trace": trace},
            ) as response,
        ):
            begun = sent[0] if sent else start
            return _read_response(response, backend, request, begun, reads.latest)
    except ProbeFailure as failure:
        return _failed(dog, failure.reason, failure.detail, clock() - start)
    except httpx.TimeoutException as exc:
        return _failed(
            dog, Reason.TIMEOUT, f"no answer within {request.timeout:g}s ({exc})", clock() - start
        )
    except httpx.ConnectError as exc:
        return _failed(dog, Reason.CONNECT, f"cannot connect: {exc}", clock() - start)
    except httpx.DecodingError as exc:
        return _failed(dog, Reason.INVALID_RESPONSE, f"undecodable body: {exc}", clock() - start)
    except (httpx.TransportError, httpx.StreamError) as exc:
        return _failed(dog, Reason.INCOMPLETE, f"connection lost: {exc}", clock() - start)
    finally:
        reads.detach()


def _failed(dog: Watchdog, reason: Reason, detail: str, elapsed: float) -> ProbeOutcome:
    # A fault caused by our own watchdog is reported as what it was, not as its symptom.
    if dog.fired == "timeout":
        return ProbeOutcome(Reason.TIMEOUT, "total deadline passed", elapsed)
    if dog.fired == "cancelled":
        return ProbeOutcome(reason, "cancelled at shutdown", elapsed, cancelled=True)
    return ProbeOutcome(reason, detail, elapsed)


# httpcore trace events whose return value is the network stream the response will be read from.
_STREAM_OPENED = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class _ReadStamps:
    """When the reads of the probe's connection returned, on the probe's clock.

    A line's time (first token, done) is when its bytes came off the socket. Reading the clock
    only once httpx had parsed the headers, built the Response and passed the chunk on, and the
    line had been split, put that work inside the measured interval: about half a millisecond
    for the first token, which arrives in the same read as the headers. httpx has no per-read
    hook, but its trace hook hands over the network stream as the connection opens, so that
    stream's `read` is wrapped for the length of the probe.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._streams: list[Any] = []
        self._last: float | None = None

    def attach(self, stream: Any) -> None:
        if stream is None:
            return
        read = stream.read

        def stamped(max_bytes: int, timeout: float | None = None) -> bytes:
            data: bytes = read(max_bytes, timeout)
            self._last = self._clock()
            return data

        try:
            stream.read = stamped
        except AttributeError:  # a stream that takes no attributes: lines get latest()'s fallback
            return
        self._streams.append(stream)

    def detach(self) -> None:
        # Were the connection kept for reuse, a later probe must not be timed on this clock.
        for stream in self._streams:
            with contextlib.suppress(AttributeError):
                del stream.read
        self._streams.clear()

    def latest(self) -> float:
        """The time of the latest read: every byte handed on so far had arrived by then.

        httpcore reads only when h11 has no complete event buffered, so the latest read is the
        one that completed the chunk just handed on. Where no stream was seen opening (a mock
        transport, a reused connection) there are no stamps: chunks are timed as they come.
        """
        return self._clock() if self._last is None else self._last


def _read_response(
    response: httpx.Response, backend: Backend, request: ProbeRequest, start: float, arrived: Clock
) -> ProbeOutcome:
    if response.status_code != 200:
        raise backend.status_failure(response.status_code, _error_body(response, request))
    parser = backend.stream_parser(request)
    ttft_s: float | None = None
    answer: list[str] = []
    for line, final, at in _lines(response, request.max_response_bytes, arrived):
        chunk = parser.feed(line, final=final)
        if chunk is None:
            continue
        if chunk.produced and ttft_s is None:
            ttft_s = at - start
        answer.append(chunk.text)
        if chunk.done:
            return ProbeOutcome(None, "ok", at - start, ttft_s, "".join(answer), chunk.reported)
    raise ProbeFailure(Reason.INCOMPLETE, "stream ended before the done chunk")


def _lines(
    response: httpx.Response, cap: int, arrived: Clock
) -> Iterator[tuple[bytes, bool, float]]:
    """Split the body into lines, each with the time its last byte arrived; stop past `cap`.
    The last, unterminated fragment of a body comes with `final` set."""
    received = 0
    pending = b""
    for chunk in response.iter_bytes():
        at = arrived()
        received += len(chunk)
        if received > cap:
            raise ProbeFailure(Reason.INVALID_RESPONSE, f"reply larger than {cap} bytes")
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line, False, at
    if pending.strip():
        yield pending, True, arrived()


def _error_body(response: httpx.Response, request: ProbeRequest) -> bytes:
    """The start of an error reply: enough for its message, never the whole of a huge one."""
    raw = b""
    for chunk in response.iter_bytes():
        raw += chunk
        if len(raw) > min(request.max_response_bytes, ERROR_BODY_BYTES):
            break
    return raw
