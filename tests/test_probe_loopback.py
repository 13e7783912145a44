"""run_probe over real loopback sockets against the Ollama double.

Only what sockets show is tested here: the total deadline (headers that never come, a stream
that trickles), cuts and faults on the wire, refused and unresolvable targets, cancellation from
another thread, and measurements that agree with the times the double recorded.
"""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from exporter.backends.ollama import OLLAMA
from exporter.config import TargetConfig
from exporter.probing.probe import ProbeOutcome, ProbeRequest, Reason, Watchdog, run_probe
from exporter.probing.targets import http_clients
from tests.exporter_process import wait_until
from tests.fakes.ollama_double import (
    ERROR_LINE_TEXT,
    Fault,
    ModelScript,
    OllamaDouble,
    RequestRecord,
)

MODEL = "gemma3:12b"
ANSWER = "Avocado is rich in potassium and fibre."
TIMEOUT = 0.5
# The deadline must end a probe promptly: within this much after it passed.
DEADLINE_SLACK = 0.5
# Loose agreement between the probe's clock and the double's records (tight figures: benchmarks).
CLOCK_SLACK = 0.05


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    models = [
        ModelScript(MODEL, answer=ANSWER, resident=True),
        ModelScript("qwen3:8b", thinking="Let me think.", capabilities=["completion", "thinking"]),
    ]
    with OllamaDouble(models, trickle_interval=0.05, huge_bytes=256 * 1024) as d:
        yield d


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # The production probe client: no connection reuse, no proxies from the environment.
    # Stateless between probes (no kept-alive connections), so one serves the whole module.
    _, probes = http_clients(TargetConfig(name="t", url="http://127.0.0.1:11434"))
    with probes:
        yield probes


def request(base_url: str, **kw: object) -> ProbeRequest:
    fields: dict[str, object] = {
        "base_url": base_url,
        "api": "chat",
        "model": MODEL,
        "text": "Why avocados?",
        "timeout": 5.0,
        "max_response_bytes": 4 * 1024 * 1024,
    }
    return ProbeRequest(**(fields | kw))  # type: ignore[arg-type]


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The cyclic collector off after a full collection: none of its pauses (tens of ms in a big
    test process) in a timing, and only reference counting frees objects meanwhile."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def poll_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout
    tick = threading.Event()
    while not condition():
        assert time.perf_counter() < deadline, "condition not met in time"
        tick.wait(0.005)


def timed(client: httpx.Client, req: ProbeRequest) -> tuple[ProbeOutcome, float]:
    start = time.perf_counter()
    outcome = run_probe(client, OLLAMA, req)
    return outcome, time.perf_counter() - start


def timed_bounded(
    client: httpx.Client, req: ProbeRequest, double: OllamaDouble, limit: float = 5.0
) -> tuple[ProbeOutcome, float]:
    """Like timed(), but a probe that ignores its deadline fails the test instead of hanging it."""
    outcomes: list[ProbeOutcome] = []
    start = time.perf_counter()
    worker = threading.Thread(
        target=lambda: outcomes.append(run_probe(client, OLLAMA, req)), daemon=True
    )
    worker.start()
    worker.join(limit)
    elapsed = time.perf_counter() - start
    if worker.is_alive():
        double.release()  # let the stuck probe go before failing
        worker.join(limit)
        pytest.fail(f"the probe was still running {limit}s after it started")
    return outcomes[0], elapsed


def test_successful_stream_over_a_socket(double: OllamaDouble, client: httpx.Client) -> None:
    outcome = run_probe(client, OLLAMA, request(double.url))
    assert outcome.success, outcome.detail
    assert outcome.answer == ANSWER
    assert outcome.reported is not None
    assert outcome.reported.eval_count == 7
    assert outcome.reported.done_reason == "stop"
    [record] = double.requests("/api/chat")
    assert record.body is not None and record.body["stream"] is True


class StartClock:
    """time.perf_counter, remembering the probe's first reading: the instant its clock started."""

    def __init__(self) -> None:
        self.start: float | None = None

    def __call__(self) -> float:
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        return now


def probe_against_records(
    client: httpx.Client, req: ProbeRequest, double: OllamaDouble
) -> tuple[ProbeOutcome, float, RequestRecord]:
    """Run one probe; return it with its start instant and the double's record of it.

    The probe and the double share time.perf_counter, so instants compare directly. Comparing
    instants (not durations measured from different starts) keeps a slow connect or accept on
    a busy machine out of the comparison; a full garbage collection is kept out as well.
    """
    clock = StartClock()
    with no_gc_pauses():
        outcome = run_probe(client, OLLAMA, req, clock=clock)
    assert outcome.success, outcome.detail
    assert clock.start is not None
    [record] = double.requests(f"/api/{req.api}")
    return outcome, clock.start, record


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_duration_and_ttft_match_what_the_double_recorded(
    double: OllamaDouble, client: httpx.Client, api: str
) -> None:
    script = ModelScript(
        "llama3.2", answer=ANSWER, load_delay=0.15, first_token_delay=0.1, token_interval=0.02
    )
    double.set_models([script])
    req = request(double.url, api=api, model="llama3.2")
    outcome, start, record = probe_against_records(client, req, double)
    assert record.first_token_at is not None and record.last_byte_at is not None
    assert outcome.ttft_s is not None
    # The clock starts just before the request is sent.
    assert start <= record.received_at
    # TTFT ends when the first token arrives; the duration when the done chunk does.
    assert abs(start + outcome.ttft_s - record.first_token_at) < CLOCK_SLACK
    assert abs(start + outcome.duration_s - record.last_byte_at) < CLOCK_SLACK
    # A cold load, then prefill, then tokens: all inside the measured TTFT.
    assert record.first_token_at - record.received_at >= 0.25
    assert outcome.ttft_s >= 0.25 - CLOCK_SLACK
    # Ollama's own figures, converted from nanoseconds, describe the same request.
    reported = outcome.reported
    assert reported is not None and reported.load_s is not None and reported.total_s is not None
    assert 0.15 <= reported.load_s <= outcome.ttft_s
    assert reported.total_s <= outcome.duration_s + CLOCK_SLACK


class JumpClock:
    """time.perf_counter plus an offset that the test moves forward, remembering every reading."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.readings: list[float] = []

    def __call__(self) -> float:
        now = time.perf_counter() + self.offset
        self.readings.append(now)
        return now


@contextlib.contextmanager
def one_shot_server(reply: bytes) -> Iterator[str]:
    """A loopback server that reads one request and answers it with `reply` in one send."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                raw = b""
                while b"\r\n\r\n" not in raw:
                    raw += conn.recv(65536)
                head, _, body = raw.partition(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length:")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(reply)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        yield f"http://127.0.0.1:{port}"
        server.join(5.0)


def test_lines_are_timed_when_their_bytes_were_read_not_when_the_probe_got_to_them() -> None:
    # The whole answer arrives in one read, with the headers. Then the exporter's response
    # set-up "takes" 10 s (a response hook moves the clock): neither figure may include that.
    lines = [
        {"model": MODEL, "created_at": "2026-08-21T10:00:00Z", "response": "Hi", "done": False},
        {"model": MODEL, "created_at": "2026-08-21T10:00:00Z", "response": "", "done": True},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
    head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    clock = JumpClock()

    def slow_set_up(_: httpx.Response) -> None:
        clock.offset += 10.0

    probes = httpx.Client(
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        event_hooks={"response": [slow_set_up]},
    )
    with probes, one_shot_server(head + body) as url:
        outcome = run_probe(probes, OLLAMA, request(url, api="generate"), clock=clock)
    assert outcome.success, outcome.detail
    assert clock.offset == 10.0  # the hook did run, after the read
    assert outcome.ttft_s is not None and outcome.ttft_s < 1.0
    assert outcome.duration_s < 1.0
    # The benchmarks recover the probe's stop as its clock's last reading.
    assert clock.readings[-1] - outcome.duration_s in clock.readings


class StreamKeeper(Watchdog):
    """The probe's watchdog, also keeping the network stream its connection opened."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.streams: list[Any] = []

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self.streams.append(info["return_value"])
        super().trace(event, info)


def test_the_read_stamping_ends_with_the_probe(double: OllamaDouble, client: httpx.Client) -> None:
    # Should a connection outlive its probe, a later probe must not be timed on this one's clock.
    dog = StreamKeeper(5.0)
    assert run_probe(client, OLLAMA, request(double.url), watchdog=dog).success
    [stream] = dog.streams
    assert "read" not in vars(stream)


def test_thinking_model_ttft_starts_at_the_thinking(
    double: OllamaDouble, client: httpx.Client
) -> None:
    req = request(double.url, model="qwen3:8b")
    outcome, start, record = probe_against_records(client, req, double)
    assert outcome.answer == ANSWER  # the thinking text is not part of the answer
    assert record.first_token_at is not None and outcome.ttft_s is not None
    assert abs(start + outcome.ttft_s - record.first_token_at) < CLOCK_SLACK


def test_headers_that_never_arrive_end_at_the_deadline(
    double: OllamaDouble, client: httpx.Client
) -> None:
    double.set_fault(MODEL, Fault.HANG_BEFORE_HEADERS)
    outcome, elapsed = timed_bounded(client, request(double.url, timeout=TIMEOUT), double)
    assert outcome.reason is Reason.TIMEOUT, outcome.detail
    assert TIMEOUT <= elapsed < TIMEOUT + DEADLINE_SLACK
    assert outcome.duration_s == pytest.approx(elapsed, abs=0.05)  # a timeout shows as the timeout


def test_trickling_stream_is_cut_by_the_total_deadline(
    double: OllamaDouble, client: httpx.Client
) -> None:
    # A byte every 50 ms never trips a per-read timeout of 0.5 s; only a total deadline ends it.
    double.set_fault(MODEL, Fault.TRICKLE)
    outcome, elapsed = timed_bounded(client, request(double.url, timeout=TIMEOUT), double)
    assert outcome.reason is Reason.TIMEOUT, outcome.detail
    assert TIMEOUT <= elapsed < TIMEOUT + DEADLINE_SLACK
    [record] = double.requests("/api/chat")
    assert record.status == 200  # it really was streaming when the deadline hit


@pytest.mark.parametrize(
    ("fault", "reason", "detail"),
    [
        # What only a socket shows: a connection cut mid-stream, one closed without done, an
        # error line and an error status read off the wire. Which line or status is which
        # reason is the backend's table (test_backend_ollama.py); the process-level table is
        # test_hardening_faults.py.
        (Fault.DROP_MID_STREAM, Reason.INCOMPLETE, ""),
        (Fault.NO_DONE, Reason.INCOMPLETE, "done"),
        (Fault.ERROR_LINE, Reason.STREAM_ERROR, ERROR_LINE_TEXT),
        (Fault.STATUS_500, Reason.HTTP_STATUS, "HTTP 500"),
    ],
    ids=lambda v: v.value if isinstance(v, Fault | Reason) else None,
)
def test_wire_faults_end_in_their_reason(
    double: OllamaDouble, client: httpx.Client, fault: Fault, reason: Reason, detail: str
) -> None:
    double.set_fault(MODEL, fault)
    outcome, elapsed = timed(client, request(double.url))
    assert outcome.reason is reason, outcome.detail
    assert detail in outcome.detail
    assert elapsed < 2.0  # none of these waits for the 5 s deadline
    assert not outcome.cancelled


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_model_the_server_does_not_have_is_model_not_found(
    double: OllamaDouble, client: httpx.Client, api: str
) -> None:
    outcome = run_probe(client, OLLAMA, request(double.url, api=api, model="deleted:7b"))
    assert outcome.reason is Reason.MODEL_NOT_FOUND
    assert "deleted:7b" in outcome.detail


def test_reply_over_the_byte_cap_is_invalid_response(
    double: OllamaDouble, client: httpx.Client
) -> None:
    double.set_fault(MODEL, Fault.HUGE_RESPONSE)  # 256 KiB of answer
    outcome = run_probe(client, OLLAMA, request(double.url, max_response_bytes=32 * 1024))
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert "larger than 32768 bytes" in outcome.detail


def test_same_large_reply_under_the_cap_succeeds(
    double: OllamaDouble, client: httpx.Client
) -> None:
    double.set_fault(MODEL, Fault.HUGE_RESPONSE)
    outcome = run_probe(client, OLLAMA, request(double.url, max_response_bytes=1024 * 1024))
    assert outcome.success, outcome.detail
    assert len(outcome.answer) == 256 * 1024


def test_refused_connection_is_connect(client: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome, elapsed = timed(client, request(f"http://127.0.0.1:{port}"))
    assert outcome.reason is Reason.CONNECT, outcome.detail
    assert elapsed < 1.0


def test_unresolvable_host_is_connect(client: httpx.Client) -> None:
    outcome = run_probe(client, OLLAMA, request("http://name.invalid:1"))
    assert outcome.reason is Reason.CONNECT, outcome.detail


def test_cancel_from_another_thread_ends_a_hanging_probe(
    double: OllamaDouble, client: httpx.Client
) -> None:
    double.set_fault(MODEL, Fault.HANG_BEFORE_HEADERS)
    req = request(double.url, timeout=30.0)
    dog = Watchdog(req.timeout)
    outcomes: list[ProbeOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(run_probe(client, OLLAMA, req, watchdog=dog))
    )
    worker.start()
    double.wait_for_requests(1, "/api/chat")  # the request is on the wire and hanging
    cancelled_at = time.perf_counter()
    dog.cancel()
    worker.join(timeout=5.0)
    assert not worker.is_alive()
    ended_after = time.perf_counter() - cancelled_at
    assert ended_after < 1.0
    [outcome] = outcomes
    assert outcome.cancelled
    assert outcome.reason is not Reason.TIMEOUT
    assert outcome.detail == "cancelled at shutdown"


def test_cancel_mid_stream_ends_a_trickling_probe(
    double: OllamaDouble, client: httpx.Client
) -> None:
    double.set_fault(MODEL, Fault.TRICKLE)
    req = request(double.url, timeout=30.0)
    dog = Watchdog(req.timeout)
    done = threading.Event()
    outcomes: list[ProbeOutcome] = []

    def work() -> None:
        outcomes.append(run_probe(client, OLLAMA, req, watchdog=dog))
        done.set()

    threading.Thread(target=work, daemon=True).start()
    [record] = double.wait_for_requests(1, "/api/chat")
    poll_until(lambda: record.last_byte_at is not None)  # the 200 and half a line went out
    dog.cancel()
    assert done.wait(2.0)
    [outcome] = outcomes
    assert outcome.cancelled and not outcome.success


def test_probe_after_a_fault_is_cleared_succeeds_again(
    double: OllamaDouble, client: httpx.Client
) -> None:
    double.set_fault(MODEL, Fault.STATUS_500)
    assert run_probe(client, OLLAMA, request(double.url)).reason is Reason.HTTP_STATUS
    double.set_fault(MODEL, Fault.NONE)
    assert run_probe(client, OLLAMA, request(double.url)).success


def test_deadlines_fire_in_deadline_order_and_never_after_the_probe_ended() -> None:
    # One thread serves every probe's deadline: a later-added, earlier deadline must not wait
    # behind an earlier-added one, and a probe that ended must not be shot afterwards.
    ended, slow, quick = Watchdog(0.05), Watchdog(30.0), Watchdog(0.1)
    with ended:
        pass
    with slow, quick:
        wait_until(lambda: quick.fired, 10, "the short deadline")
        assert slow.fired is None
    assert ended.fired is None
