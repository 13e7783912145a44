"""run_probe over httpx.MockTransport: the NDJSON parser, the measurements, every failure reason.

No sockets: each handler plays one Ollama reply (or one transport fault) and a step clock that
the reply's body advances makes TTFT and duration exact. Real sockets, real deadlines and the
watchdog live in test_probe_loopback.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.probe import ProbeOutcome, ProbeRequest, Reason, ServerTimings, run_probe

START = 100.0
MODEL = "gemma3:12b"
FINAL_METRICS: dict[str, Any] = {
    "done_reason": "stop",
    "total_duration": 174_560_334,
    "load_duration": 101_397_084,
    "prompt_eval_count": 11,
    "prompt_eval_duration": 13_074_791,
    "eval_count": 18,
    "eval_duration": 52_479_709,
}


class StepClock:
    """A clock that only moves when the fake reply says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


Handler = Callable[[httpx.Request], httpx.Response]


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


def timed_body(clock: StepClock, parts: Sequence[tuple[float, bytes]]) -> Iterator[bytes]:
    """Yield each network chunk at its time (seconds after START) on the step clock."""
    for at, data in parts:
        clock.now = START + at
        yield data


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


def probe(
    handler: Handler, req: ProbeRequest | None = None, clock: StepClock | None = None
) -> ProbeOutcome:
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        return run_probe(client, req or request(), clock=clock or StepClock())


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


# --- the request --------------------------------------------------------------------------


class Capture:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        reply = chat(done=True) if req.url.path == "/api/chat" else gen(done=True)
        return httpx.Response(200, content=line(reply))

    @property
    def body(self) -> dict[str, Any]:
        assert len(self.requests) == 1
        parsed: dict[str, Any] = json.loads(self.requests[0].content)
        return parsed


def test_chat_body_streams_one_user_message_and_omits_unset_fields() -> None:
    capture = Capture()
    assert probe(capture, request("chat")).success
    assert capture.requests[0].method == "POST"
    assert str(capture.requests[0].url) == "http://ollama.test:11434/api/chat"
    assert capture.body == {
        "model": MODEL,
        "stream": True,
        "messages": [{"role": "user", "content": "Why avocados?"}],
    }


def test_generate_body_sends_a_prompt_and_omits_unset_fields() -> None:
    capture = Capture()
    assert probe(capture, request("generate")).success
    assert capture.requests[0].url.path == "/api/generate"
    assert capture.body == {"model": MODEL, "stream": True, "prompt": "Why avocados?"}


def test_body_carries_options_think_and_keep_alive_when_set() -> None:
    capture = Capture()
    options = {"temperature": 0, "seed": 42, "num_predict": 512}
    req = request("chat", options=options, think="high", keep_alive="10m")
    assert probe(capture, req).success
    body = capture.body
    assert body["options"] == options
    assert body["think"] == "high"
    assert body["keep_alive"] == "10m"


@pytest.mark.parametrize(("think", "keep_alive"), [(False, 0), (True, -1), ("low", 1.5)])
def test_falsy_but_set_think_and_keep_alive_are_still_sent(
    think: bool | str, keep_alive: float
) -> None:
    # keep_alive 0 unloads the model and think false disables thinking: both must go out.
    capture = Capture()
    assert probe(capture, request("generate", think=think, keep_alive=keep_alive)).success
    assert capture.body["think"] == think
    assert capture.body["keep_alive"] == keep_alive


def test_target_headers_are_sent() -> None:
    capture = Capture()
    assert probe(capture, request(headers={"Authorization": "Bearer s3cret"})).success
    assert capture.requests[0].headers["authorization"] == "Bearer s3cret"


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


def test_final_chunk_figures_are_converted_from_nanoseconds() -> None:
    clock = StepClock()
    outcome = probe(streaming([(1.0, line(gen("x", done=True, **FINAL_METRICS)))], clock))
    server = outcome.server
    assert server is not None
    assert server.total_s == pytest.approx(0.174560334)
    assert server.load_s == pytest.approx(0.101397084)
    assert server.prompt_eval_s == pytest.approx(0.013074791)
    assert server.eval_s == pytest.approx(0.052479709)
    assert (server.prompt_tokens, server.eval_count, server.done_reason) == (11, 18, "stop")


def test_omitted_final_fields_are_none_not_zero() -> None:
    # Ollama tags every figure omitempty: a warm model's zero load_duration is simply absent.
    final = gen(done=True, total_duration=2_000_000_000, eval_count=3)
    outcome = probe(lines_reply([line(final)]))
    assert outcome.success
    assert outcome.server == ServerTimings(total_s=2.0, eval_count=3)
    bare = probe(lines_reply([line({"done": True})]))
    assert bare.success and bare.server == ServerTimings()


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
    assert outcome.server is not None and outcome.server.eval_count == 18


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
    assert outcome.server is not None and outcome.server.eval_count == 5  # thinking included


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
    assert outcome.server is not None and outcome.server.done_reason == "length"


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
    ("lines", "reason", "detail"),
    [
        pytest.param([HELLO, b"{'error': oops}\n", DONE], Reason.INVALID_RESPONSE, "not JSON",
                     id="non-json-line"),
        pytest.param([HELLO, b"<html>bad gateway</html>\n", DONE], Reason.INVALID_RESPONSE,
                     "not JSON", id="html-line"),
        pytest.param([HELLO, b'{"response":"caf\xc3\x28 \xff","done":false}\n', DONE],
                     Reason.INVALID_RESPONSE, "UTF-8", id="invalid-utf8"),
        pytest.param([b"[1,2,3]\n", DONE], Reason.INVALID_RESPONSE, "not a JSON object",
                     id="array-line"),
        pytest.param([b'"hello"\n', DONE], Reason.INVALID_RESPONSE, "not a JSON object",
                     id="string-line"),
        pytest.param([b"null\n", DONE], Reason.INVALID_RESPONSE, "not a JSON object",
                     id="null-line"),
        pytest.param([line(gen() | {"response": 5}), DONE], Reason.INVALID_RESPONSE,
                     "'response'", id="response-not-string"),
        pytest.param([line(gen("a", thinking=["x"])), DONE], Reason.INVALID_RESPONSE,
                     "'thinking'", id="thinking-not-string"),
        pytest.param([HELLO, line(gen(done=True, eval_count="18"))], Reason.INVALID_RESPONSE,
                     "'eval_count'", id="eval-count-string"),
        pytest.param([HELLO, line(gen(done=True, total_duration=True))],
                     Reason.INVALID_RESPONSE, "'total_duration'", id="duration-bool"),
        pytest.param([HELLO, line(gen(done=True, eval_duration=1.5))], Reason.INVALID_RESPONSE,
                     "'eval_duration'", id="duration-float"),
        pytest.param([HELLO, line({"error": "unexpected EOF"})], Reason.STREAM_ERROR,
                     "unexpected EOF", id="error-line"),
        pytest.param([line({"error": "out of memory"}), DONE], Reason.STREAM_ERROR,
                     "out of memory", id="error-line-first"),
        pytest.param([HELLO, line(gen(" world"))], Reason.INCOMPLETE, "done",
                     id="eof-before-done"),
        pytest.param([], Reason.INCOMPLETE, "done", id="empty-body"),
        pytest.param([b"\n\n"], Reason.INCOMPLETE, "done", id="blank-lines-only"),
        pytest.param([line(gen("x", done=False))], Reason.INCOMPLETE, "done",
                     id="done-false-only"),
    ],
)  # fmt: skip
def test_generate_stream_faults(lines: list[bytes], reason: Reason, detail: str) -> None:
    outcome = probe(lines_reply(lines))
    assert outcome.reason is reason
    assert not outcome.success
    assert detail in outcome.detail


@pytest.mark.parametrize(
    ("chunk", "detail"),
    [
        pytest.param({"message": "hello", "done": False}, "message", id="message-string"),
        pytest.param({"message": ["hello"], "done": False}, "message", id="message-list"),
        pytest.param({"message": None, "done": False}, "message", id="message-null"),
        pytest.param(chat() | {"message": {"role": "assistant", "content": {"t": 1}}},
                     "'content'", id="content-object"),
    ],
)  # fmt: skip
def test_chat_wrong_shape_is_invalid_response(chunk: dict[str, Any], detail: str) -> None:
    outcome = probe(
        lines_reply([line(chat("Hi")), line(chunk), line(chat(done=True))]), request("chat")
    )
    assert outcome.reason is Reason.INVALID_RESPONSE
    assert detail in outcome.detail


def test_stream_error_detail_carries_ollama_text() -> None:
    text = "an error was encountered while running the model: unexpected EOF"
    outcome = probe(lines_reply([HELLO, line({"error": text})]))
    assert outcome.reason is Reason.STREAM_ERROR
    assert outcome.detail == text


def test_failure_keeps_wall_time_of_the_failed_probe() -> None:
    clock = StepClock()
    parts = [(0.3, HELLO), (2.5, line({"error": "boom"}))]
    outcome = probe(streaming(parts, clock), clock=clock)
    assert outcome.reason is Reason.STREAM_ERROR
    assert outcome.duration_s == pytest.approx(2.5)


def json_reply(status: int, obj: Any) -> Handler:
    return lambda _: httpx.Response(status, json=obj)


def text_reply(status: int, text: str) -> Handler:
    return lambda _: httpx.Response(status, text=text)


@pytest.mark.parametrize(
    ("handler", "reason", "detail"),
    [
        pytest.param(json_reply(404, {"error": "model 'llama9' not found"}),
                     Reason.MODEL_NOT_FOUND, "model 'llama9' not found", id="404-model"),
        pytest.param(json_reply(404, {"error": 'model "llama9" not found, try pulling it first'}),
                     Reason.MODEL_NOT_FOUND, "try pulling it first", id="404-model-pull"),
        pytest.param(text_reply(404, "404 page not found"), Reason.HTTP_STATUS,
                     "HTTP 404: 404 page not found", id="404-other"),
        pytest.param(json_reply(404, {"error": "route not found"}), Reason.HTTP_STATUS,
                     "HTTP 404", id="404-other-json"),
        pytest.param(json_reply(500, {"error": "llama-server process has terminated: exit 2"}),
                     Reason.HTTP_STATUS, "HTTP 500: llama-server process has terminated",
                     id="500"),
        pytest.param(json_reply(500, {"error": "model 'llama9' not found"}), Reason.HTTP_STATUS,
                     "HTTP 500", id="500-mentions-not-found"),
        pytest.param(json_reply(503, {"error": "server busy, please try again.  maximum pending"}),
                     Reason.HTTP_STATUS, "HTTP 503: server busy", id="503"),
        pytest.param(json_reply(400, {"error": '"bert" does not support chat'}),
                     Reason.HTTP_STATUS, "does not support chat", id="400"),
        pytest.param(text_reply(403, ""), Reason.HTTP_STATUS, "HTTP 403", id="403-empty"),
        pytest.param(json_reply(401, {"error": "unauthorized", "signin_url": "https://x"}),
                     Reason.HTTP_STATUS, "HTTP 401: unauthorized", id="401"),
        pytest.param(text_reply(204, ""), Reason.HTTP_STATUS, "HTTP 204", id="204"),
    ],
)  # fmt: skip
def test_status_faults(handler: Handler, reason: Reason, detail: str) -> None:
    outcome = probe(handler)
    assert outcome.reason is reason
    assert detail in outcome.detail
    assert outcome.ttft_s is None and outcome.server is None


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


def test_stream_cut_inside_a_line_is_incomplete() -> None:
    # A body that ends (connection closed) halfway through a line was cut: the stream ended
    # before done, so it is `incomplete`, not a server that sent a malformed line.
    cut = line(gen(" world"))[:12]
    outcome = probe(lines_reply([HELLO, cut]))
    assert outcome.reason is Reason.INCOMPLETE, outcome.detail


def test_undecodable_content_encoding_is_invalid_response_not_an_exception() -> None:
    # A probe never raises: a proxy sending a broken gzip body is a bad reply.
    handler = lambda _: httpx.Response(  # noqa: E731
        200, headers={"Content-Encoding": "gzip"}, content=b"this is not gzip"
    )
    outcome = probe(handler)
    assert outcome.reason is Reason.INVALID_RESPONSE


def test_deeply_nested_json_line_is_invalid_response_not_an_exception() -> None:
    outcome = probe(lines_reply([HELLO, b"[" * 100_000 + b"\n", DONE]))
    assert outcome.reason is Reason.INVALID_RESPONSE


def test_deeply_nested_error_body_is_http_status_not_an_exception() -> None:
    outcome = probe(lambda _: httpx.Response(500, content=b"[" * 10_000))
    assert outcome.reason is Reason.HTTP_STATUS


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
