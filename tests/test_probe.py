"""run_probe over httpx.MockTransport: the probe loop around a backend, its measurements, and the
failure reasons that are the loop's own (transport faults, a stream without done, the byte cap).

No sockets: each handler plays one reply (or one transport fault) and a step clock that the
reply's body advances makes TTFT and duration exact. The replies are Ollama's, read by the Ollama
backend, whose own parsing and fault table are in test_backend_ollama.py; one stub backend shows
that the loop knows no protocol. Real sockets, real deadlines and the watchdog live in
test_probe_loopback.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.backends import Backend, Chunk, StreamRequest
from exporter.backends.ollama import OLLAMA, OllamaBackend
from exporter.probing.probe import (
    BackendTimings,
    ProbeFailure,
    ProbeOutcome,
    ProbeRequest,
    Reason,
    run_probe,
)
from tests.test_backend_ollama import FINAL_METRICS, chat, gen, line, request

START = 100.0


class StepClock:
    """A clock that only moves when the fake reply says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


Handler = Callable[[httpx.Request], httpx.Response]


def timed_body(clock: StepClock, parts: Sequence[tuple[float, bytes]]) -> Iterator[bytes]:
    """Yield each network chunk at its time (seconds after START) on the step clock."""
    for at, data in parts:
        clock.now = START + at
        yield data


def probe(
    handler: Handler,
    req: ProbeRequest | None = None,
    clock: StepClock | None = None,
    backend: Backend = OLLAMA,
) -> ProbeOutcome:
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return run_probe(client, backend, req or request(), clock=clock or StepClock())


def streaming(parts: Sequence[tuple[float, bytes]], clock: StepClock, status: int = 200) -> Handler:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers={"Content-Type": "application/x-ndjson"},
            content=timed_body(clock, parts),
        )

    return handler


def lines_reply(lines: Sequence[bytes]) -> Handler:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter(list(lines)))

    return handler


# --- dispatch into the backend --------------------------------------------------------------


class Capture:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        reply = chat(done=True) if req.url.path == "/api/chat" else gen(done=True)
        return httpx.Response(200, content=line(reply))


def test_the_request_sent_is_the_one_the_backend_built() -> None:
    capture = Capture()
    req = request("chat", headers={"Authorization": "Bearer s3cret"}, keep_alive=0)
    assert probe(capture, req).success
    [sent] = capture.requests
    call = OLLAMA.stream_request(req)
    assert (sent.method, str(sent.url)) == (call.method, call.url)
    assert json.loads(sent.content) == call.body
    assert sent.headers["authorization"] == "Bearer s3cret"


@dataclass
class LineStream:
    """A made-up protocol: `T:<text>` is a token, `D` ends the answer, `E:<why>` is an error."""

    def feed(self, line: bytes, *, final: bool = False) -> Chunk | None:
        text = line.decode().strip()
        if not text:
            return None
        if text.startswith("E:"):
            raise ProbeFailure(Reason.STREAM_ERROR, text[2:])
        if text == "D":
            return Chunk(done=True, reported=BackendTimings(eval_count=2))
        return Chunk(text=text.removeprefix("T:"))


class LineBackend(OllamaBackend):
    """The Ollama backend with the made-up stream protocol and its own path and status rule."""

    def stream_request(self, request: ProbeRequest) -> StreamRequest:
        return StreamRequest("PUT", f"{request.base_url}/lines", {"q": request.text})

    def stream_parser(self, request: ProbeRequest) -> LineStream:
        return LineStream()

    def status_failure(self, status: int, body: bytes) -> ProbeFailure:
        return ProbeFailure(Reason.MODEL_NOT_FOUND, f"{status} means no model here")


def test_the_loop_speaks_whatever_protocol_the_backend_does() -> None:
    clock = StepClock()
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return streaming([(0.2, b"T:Avo"), (0.3, b"\nT:cado\n"), (0.5, b"D\n")], clock)(req)

    outcome = probe(handler, clock=clock, backend=LineBackend())
    assert (seen[0].method, seen[0].url.path) == ("PUT", "/lines")
    assert outcome.success and outcome.answer == "Avocado"
    assert outcome.ttft_s == pytest.approx(0.3)  # the first line is whole only at 0.3
    assert outcome.duration_s == pytest.approx(0.5)
    assert outcome.reported == BackendTimings(eval_count=2)
    failed = probe(lines_reply([b"T:a\n", b"E:boom\n"]), backend=LineBackend())
    assert (failed.reason, failed.detail) == (Reason.STREAM_ERROR, "boom")
    status = probe(lambda _: httpx.Response(418), backend=LineBackend())
    assert (status.reason, status.detail) == (Reason.MODEL_NOT_FOUND, "418 means no model here")


# --- parsing a good stream ----------------------------------------------------------------


def test_generate_stream_joins_answer_measures_ttft_and_duration() -> None:
    clock = StepClock()
    parts = [
        (0.40, line(gen("Avocado"))),
        (0.45, line(gen(" is"))),
        (0.50, line(gen(" rich"))),
        (0.90, line(gen("!", done=True, **FINAL_METRICS))),
    ]
    outcome = probe(streaming(parts, clock), clock=clock)
    assert outcome.success and outcome.reason is None
    assert outcome.answer == "Avocado is rich!"  # the final chunk's text is appended
    assert outcome.ttft_s == pytest.approx(0.40)
    assert outcome.duration_s == pytest.approx(0.90)
    assert not outcome.cancelled


def test_chat_stream_reads_message_content() -> None:
    clock = StepClock()
    parts = [
        (0.2, line(chat("Awokado"))),
        (0.3, line(chat(" zawiera potas."))),
        (0.4, line(chat(done=True, **FINAL_METRICS))),
    ]
    outcome = probe(streaming(parts, clock), request("chat"), clock)
    assert outcome.success
    assert outcome.answer == "Awokado zawiera potas."
    assert outcome.ttft_s == pytest.approx(0.2)
    assert outcome.reported is not None and outcome.reported.eval_count == 18


def test_empty_chunks_do_not_count_as_first_token() -> None:
    clock = StepClock()
    parts = [
        (0.1, line(gen(""))),
        (0.2, line(gen("", thinking=""))),
        (0.7, line(gen("Hi"))),
        (0.8, line(gen(done=True))),
    ]
    outcome = probe(streaming(parts, clock), clock=clock)
    assert outcome.ttft_s == pytest.approx(0.7)


def test_generate_thinking_starts_ttft_but_is_not_answer_text() -> None:
    clock = StepClock()
    parts = [
        (0.3, line(gen("", thinking="The user asks"))),
        (0.4, line(gen("", thinking=" about avocados."))),
        (0.9, line(gen("Potassium."))),
        (1.0, line(gen(done=True, eval_count=5, eval_duration=500_000_000))),
    ]
    outcome = probe(streaming(parts, clock), clock=clock)
    assert outcome.ttft_s == pytest.approx(0.3)
    assert outcome.answer == "Potassium."
    assert outcome.reported is not None and outcome.reported.eval_count == 5  # thinking included


def test_chat_thinking_starts_ttft_but_is_not_answer_text() -> None:
    clock = StepClock()
    parts = [
        (0.25, line(chat(thinking="Hmm, avocados"))),
        (0.60, line(chat("Fibre."))),
        (0.70, line(chat(done=True))),
    ]
    outcome = probe(streaming(parts, clock), request("chat"), clock)
    assert outcome.ttft_s == pytest.approx(0.25)
    assert outcome.answer == "Fibre."


def test_chat_tool_call_counts_as_first_token() -> None:
    clock = StepClock()
    call = {"function": {"name": "get_weather", "arguments": {"city": "Kraków"}}}
    parts = [(0.35, line(chat(tool_calls=[call]))), (0.5, line(chat(done=True)))]
    outcome = probe(streaming(parts, clock), request("chat"), clock)
    assert outcome.success
    assert outcome.ttft_s == pytest.approx(0.35)
    assert outcome.answer == ""


def test_answer_in_the_final_chunk_alone_sets_ttft_there() -> None:
    clock = StepClock()
    outcome = probe(streaming([(1.5, line(gen("All at once.", done=True)))], clock), clock=clock)
    assert outcome.answer == "All at once."
    assert outcome.ttft_s == pytest.approx(1.5)


def test_no_content_at_all_succeeds_without_ttft() -> None:
    outcome = probe(lines_reply([line(gen(done=True, done_reason="length"))]))
    assert outcome.success
    assert outcome.ttft_s is None
    assert outcome.answer == ""
    assert outcome.reported is not None and outcome.reported.done_reason == "length"


def test_lines_split_across_network_chunks_and_packed_together() -> None:
    raw = line(gen("Zdrowe")) + line(gen(" tłuszcze")) + line(gen(".", done=True))
    # Cut inside a line and inside a multi-byte UTF-8 character ("ł" is two bytes).
    cut = raw.index("ł".encode()) + 1
    pieces = [raw[:5], raw[5:cut], raw[cut:]]
    outcome = probe(lines_reply(pieces))
    assert outcome.success, outcome.detail
    assert outcome.answer == "Zdrowe tłuszcze."


def test_blank_lines_are_ignored_and_last_line_may_lack_newline() -> None:
    body = b"\n" + line(gen("a")) + b"\r\n\n" + line(gen("b", done=True)).rstrip(b"\n")
    outcome = probe(lines_reply([body]))
    assert outcome.success, outcome.detail
    assert outcome.answer == "ab"


def test_reading_stops_at_the_done_chunk() -> None:
    clock = StepClock()
    parts = [
        (0.5, line(gen("ok", done=True))),
        (9.0, b"<html>trailing noise</html>\n"),
    ]
    outcome = probe(streaming(parts, clock), clock=clock)
    assert outcome.success
    assert outcome.duration_s == pytest.approx(0.5)


# --- failure reasons ----------------------------------------------------------------------

HELLO = line(gen("Hello"))
DONE = line(gen(done=True, eval_count=1))


@pytest.mark.parametrize(
    ("lines", "detail"),
    [
        pytest.param([HELLO, line(gen(" world"))], "done", id="eof-before-done"),
        pytest.param([], "done", id="empty-body"),
        pytest.param([b"\n\n"], "done", id="blank-lines-only"),
        pytest.param([line(gen("x", done=False))], "done", id="done-false-only"),
        pytest.param([HELLO, line(gen(" world"))[:12]], "inside a line", id="cut-inside-a-line"),
    ],
)  # fmt: skip
def test_a_stream_ending_before_done_is_incomplete(lines: list[bytes], detail: str) -> None:
    outcome = probe(lines_reply(lines))
    assert outcome.reason is Reason.INCOMPLETE
    assert not outcome.success
    assert detail in outcome.detail


def test_a_line_fault_ends_the_probe_with_the_backends_reason() -> None:
    # Which line is which fault is the backend's table (test_backend_ollama.py).
    outcome = probe(lines_reply([HELLO, b"<html>bad gateway</html>\n", DONE]))
    assert outcome.reason is Reason.INVALID_RESPONSE and "not JSON" in outcome.detail
    outcome = probe(lines_reply([HELLO, line({"error": "unexpected EOF"})]))
    assert outcome.reason is Reason.STREAM_ERROR and outcome.detail == "unexpected EOF"


def test_failure_keeps_wall_time_of_the_failed_probe() -> None:
    clock = StepClock()
    parts = [(0.3, HELLO), (2.5, line({"error": "boom"}))]
    outcome = probe(streaming(parts, clock), clock=clock)
    assert outcome.reason is Reason.STREAM_ERROR
    assert outcome.duration_s == pytest.approx(2.5)


def test_a_status_other_than_200_is_the_backends_verdict_on_its_body() -> None:
    # Which status and body is which reason is the backend's table (test_backend_ollama.py).
    reply = {"error": "model 'llama9' not found"}
    outcome = probe(lambda _: httpx.Response(404, json=reply))
    assert (outcome.reason, outcome.detail) == (Reason.MODEL_NOT_FOUND, reply["error"])
    assert outcome.ttft_s is None and outcome.reported is None
    outcome = probe(lambda _: httpx.Response(503, json={"error": "server busy"}))
    assert (outcome.reason, outcome.detail) == (Reason.HTTP_STATUS, "HTTP 503: server busy")


def test_a_huge_error_body_is_not_read_whole() -> None:
    produced: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(4096):  # 16 MiB: bounded, so a regression fails instead of hanging
            produced.append(1)
            yield b"x" * 4096

    outcome = probe(lambda _: httpx.Response(502, content=endless()))
    assert outcome.reason is Reason.HTTP_STATUS
    assert len(produced) < 64


def raising(exc: Exception) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), Reason.CONNECT),
        (httpx.ConnectError("[Errno -2] Name or service not known"), Reason.CONNECT),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"), Reason.CONNECT),
        (httpx.ConnectTimeout("timed out"), Reason.TIMEOUT),
        (httpx.ReadTimeout("timed out"), Reason.TIMEOUT),
        (httpx.PoolTimeout("timed out"), Reason.TIMEOUT),
        (httpx.RemoteProtocolError("Server disconnected without a response"), Reason.INCOMPLETE),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), Reason.INCOMPLETE),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_transport_faults_before_the_reply(exc: Exception, reason: Reason) -> None:
    outcome = probe(raising(exc))
    assert outcome.reason is reason
    assert not outcome.cancelled


def test_timeout_detail_names_the_deadline() -> None:
    outcome = probe(raising(httpx.ReadTimeout("timed out")), request(timeout=7.5))
    assert outcome.reason is Reason.TIMEOUT
    assert "7.5s" in outcome.detail


def broken_stream(exc: Exception, clock: StepClock) -> Handler:
    def body() -> Iterator[bytes]:
        clock.now = START + 0.2
        yield HELLO
        clock.now = START + 3.0
        raise exc

    return lambda _: httpx.Response(200, content=body())


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ReadTimeout("timed out"), Reason.TIMEOUT),
        (httpx.RemoteProtocolError("peer closed connection: incomplete chunked read"),
         Reason.INCOMPLETE),
        (httpx.ReadError("[Errno 104] Connection reset by peer"), Reason.INCOMPLETE),
    ],
    ids=["read-timeout", "dropped", "reset"],
)  # fmt: skip
def test_transport_faults_mid_stream(exc: Exception, reason: Reason) -> None:
    clock = StepClock()
    outcome = probe(broken_stream(exc, clock), clock=clock)
    assert outcome.reason is reason
    assert outcome.duration_s == pytest.approx(3.0)


def test_undecodable_content_encoding_is_invalid_response_not_an_exception() -> None:
    # A probe never raises: a proxy sending a broken gzip body is a bad reply.
    handler = lambda _: httpx.Response(  # noqa: E731
        200, headers={"Content-Encoding": "gzip"}, content=b"this is not gzip"
    )
    outcome = probe(handler)
    assert outcome.reason is Reason.INVALID_RESPONSE


# --- the byte cap -------------------------------------------------------------------------

CAP = 2048


def exactly(size: int) -> list[bytes]:
    """A valid stream of exactly `size` bytes, ending with the done chunk."""
    done = line(gen(done=True))
    filler = size - len(done) - len(line(gen("")))
    return [line(gen("x" * filler)), done]


def test_reply_of_exactly_the_cap_is_accepted() -> None:
    lines = exactly(CAP)
    assert sum(map(len, lines)) == CAP
    outcome = probe(lines_reply(lines), request(max_response_bytes=CAP))
    assert outcome.success, outcome.detail


def test_reply_one_byte_over_the_cap_is_invalid_response() -> None:
    lines = exactly(CAP + 1)
    assert sum(map(len, lines)) == CAP + 1
    outcome = probe(lines_reply(lines), request(max_response_bytes=CAP))
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert str(CAP) in outcome.detail


def test_endless_reply_stops_being_read_at_the_cap() -> None:
    produced: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(10_000):  # bounded, so a regression fails instead of hanging
            produced.append(1)
            yield line(gen("y" * 200))

    outcome = probe(
        lambda _: httpx.Response(200, content=endless()), request(max_response_bytes=CAP)
    )
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert len(produced) <= CAP // 200 + 1


def test_one_line_bigger_than_the_cap_is_invalid_response() -> None:
    outcome = probe(
        lines_reply([b'{"response":"' + b"z" * 10_000]), request(max_response_bytes=CAP)
    )
    assert outcome.reason is Reason.INVALID_RESPONSE


# --- never raises -------------------------------------------------------------------------

_KEYS = st.sampled_from(["response", "done", "error", "message", "thinking", "eval_count"])
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
_LINES = st.one_of(
    st.binary(max_size=40),
    st.builds(line, st.dictionaries(_KEYS, _VALUES, max_size=4)),
    st.just(HELLO),
    st.just(DONE),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    api=st.sampled_from(["chat", "generate"]),
    status=st.sampled_from([200, 200, 200, 404, 500]),
    lines=st.lists(_LINES, max_size=6),
)
def test_any_reply_ends_in_success_or_one_known_reason(
    api: str, status: int, lines: list[bytes]
) -> None:
    handler = lambda _: httpx.Response(status, content=iter(lines))  # noqa: E731
    outcome = probe(handler, request(api, max_response_bytes=CAP))
    assert isinstance(outcome, ProbeOutcome)
    assert outcome.reason is None or outcome.reason in set(Reason)
    assert outcome.success == (outcome.reason is None)
    if status != 200:
        assert outcome.reason in {Reason.HTTP_STATUS, Reason.MODEL_NOT_FOUND}
