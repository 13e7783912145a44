"""The Ollama test double, checked against the official `ollama` client and raw HTTP.

If the real client parses what the double sends, code tested against the double is tested
against the wire format the exporter will meet in production.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.fakes.ollama_double import (
    ERROR_LINE_TEXT,
    Fault,
    ModelScript,
    OllamaDouble,
    RequestRecord,
    split_pieces,
)

GEMMA = "gemma3:12b"
ANSWER = "Avocado is rich in potassium and fibre."
ANSWER_TOKENS = len(split_pieces(ANSWER))  # 7


def _models() -> list[ModelScript]:
    return [
        ModelScript(GEMMA, resident=True),
        ModelScript("llama3.2", family="llama", parameter_size="3.2B"),
        ModelScript(
            "qwen3:8b",
            family="qwen3",
            thinking="The user asks about avocados.",
            capabilities=["completion", "thinking"],
        ),
        ModelScript("nomic-embed-text", family="nomic-bert", capabilities=["embedding"]),
        ModelScript("gpt-oss:120b-cloud", family="gptoss", remote=True, size=384),
    ]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(_models(), trickle_interval=0.05, huge_bytes=1 << 20) as d:
        yield d


@pytest.fixture
def client(double: OllamaDouble) -> ollama.Client:
    # Plain HTTP on loopback: verify=False only skips loading a CA bundle (0.1 s per client).
    return ollama.Client(host=double.url, timeout=5.0, verify=False)


@pytest.fixture
def http(double: OllamaDouble) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=double.url, timeout=5.0, verify=False) as c:
        yield c


def _finished(double: OllamaDouble, path: str) -> RequestRecord:
    """The last request to `path`, once its handler is done writing."""
    return double.wait_for_requests(len(double.requests(path)), path, completed=True)[-1]


# --- read endpoints --------------------------------------------------------------------------


def test_root_version_and_routing(http: httpx.Client) -> None:
    root = http.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["content-type"].startswith("text/plain")
    head = http.head("/")
    assert (head.status_code, head.content) == (200, b"")
    assert http.get("/api/version").json() == {"version": "0.32.15"}
    missing = http.get("/api/nope")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert http.get("/api/generate").status_code == 405
    assert http.head("/api/ps").status_code == 405  # Ollama registers GET only for /api/ps


def test_list_matches_the_client_models(client: ollama.Client) -> None:
    listed = {m.model: m for m in client.list().models}
    assert set(listed) == {
        GEMMA,
        "llama3.2:latest",
        "qwen3:8b",
        "nomic-embed-text:latest",
        "gpt-oss:120b-cloud",
    }
    llama = listed["llama3.2:latest"]
    assert llama.details is not None
    assert (llama.details.family, llama.details.parameter_size) == ("llama", "3.2B")
    assert llama.details.format == "gguf" and llama.details.families == ["llama"]
    assert llama.size == 8_000_000_000 and llama.digest and llama.modified_at is not None


def test_tags_mark_cloud_models_remote(http: httpx.Client) -> None:
    entries = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    cloud = entries["gpt-oss:120b-cloud"]
    assert (cloud["remote_model"], cloud["remote_host"]) == (
        "gpt-oss:120b",
        "https://ollama.com:443",
    )
    assert "remote_model" not in entries[GEMMA]
    assert entries["nomic-embed-text:latest"]["capabilities"] == ["embedding"]


def test_ps_lists_only_resident_local_models(double: OllamaDouble, client: ollama.Client) -> None:
    (loaded,) = client.ps().models
    assert (loaded.name, loaded.model, loaded.context_length) == (GEMMA, GEMMA, 4096)
    assert (loaded.size, loaded.size_vram) == (8_000_000_000, 7_500_000_000)
    assert loaded.expires_at is not None and loaded.expires_at.timestamp() > time.time()
    double.set_resident(GEMMA, False)
    double.set_resident("gpt-oss:120b-cloud", True)  # cloud models have no local runner
    assert client.ps().models == []


def test_show_details_and_errors(client: ollama.Client, http: httpx.Client) -> None:
    shown = client.show("LLAMA3.2")  # case-insensitive, ':latest' implied
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["general.parameter_count"] == 3_200_000_000
    assert shown.capabilities == ["completion"] and shown.details is not None
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("nope")
    assert (missing.value.status_code, missing.value.error) == (404, "model 'nope' not found")
    assert http.post("/api/show", json={}).json() == {"error": "model is required"}


# --- generate and chat through the official client -----------------------------------------


def test_generate_non_streaming(double: OllamaDouble, client: ollama.Client) -> None:
    reply = client.generate("gemma3:12B", "Why avocados?")
    assert reply.response == ANSWER and reply.model == "gemma3:12B"  # echoes the name as sent
    assert (reply.done, reply.done_reason) == (True, "stop")
    assert (reply.prompt_eval_count, reply.eval_count) == (11, ANSWER_TOKENS)
    assert reply.context and len(reply.context) == 11 + ANSWER_TOKENS
    for metric in (reply.total_duration, reply.load_duration, reply.eval_duration):
        assert isinstance(metric, int) and metric > 0
    raw = double.requests("/api/generate")[-1]
    assert raw.body is not None and raw.body["stream"] is False


def test_generate_stream_chunks_then_one_final(client: ollama.Client) -> None:
    chunks = list(client.generate(GEMMA, "Why avocados?", stream=True))
    *tokens, final = chunks
    assert "".join(c.response or "" for c in tokens) == ANSWER and len(tokens) == ANSWER_TOKENS
    assert all(not c.done and c.done_reason is None and c.eval_count is None for c in tokens)
    assert all(c.created_at and c.created_at.endswith("Z") for c in chunks)
    assert (final.done, final.done_reason, final.response) == (True, "stop", "")
    assert final.eval_count == ANSWER_TOKENS and final.total_duration


def test_metrics_are_nanoseconds_from_real_delays(
    double: OllamaDouble, client: ollama.Client
) -> None:
    double.set_models(
        [ModelScript("slow:1b", load_delay=0.2, first_token_delay=0.05, token_interval=0.01)]
    )
    cold = client.generate("slow:1b", "Why avocados?")
    assert cold.load_duration is not None and cold.load_duration >= 0.2e9
    assert cold.prompt_eval_duration is not None and cold.prompt_eval_duration >= 0.05e9
    assert cold.eval_duration is not None and cold.eval_duration >= (ANSWER_TOKENS - 1) * 0.01e9
    assert cold.total_duration is not None
    assert (
        cold.total_duration >= cold.load_duration + cold.prompt_eval_duration + cold.eval_duration
    )
    assert cold.total_duration < 1e9
    warm = client.generate("slow:1b", "Why avocados?")
    assert warm.load_duration is not None and warm.load_duration < 0.05e9  # now resident


def test_chat_streams_thinking_before_content(client: ollama.Client) -> None:
    *tokens, final = client.chat("qwen3:8b", [{"role": "user", "content": "Hi"}], stream=True)
    thinking = [c.message.thinking for c in tokens if c.message.thinking]
    assert "".join(thinking) == "The user asks about avocados."
    assert all(c.message.content == "" for c in tokens[: len(thinking)])  # thinking comes first
    assert "".join(c.message.content or "" for c in tokens) == ANSWER
    assert all(c.message.role == "assistant" for c in [*tokens, final])
    assert final.eval_count == len(thinking) + ANSWER_TOKENS and final.done_reason == "stop"


def test_chat_non_streaming_joins_text(client: ollama.Client) -> None:
    reply = client.chat("qwen3:8b", [{"role": "user", "content": "Hi"}])
    assert (reply.message.content, reply.message.thinking) == (
        ANSWER,
        "The user asks about avocados.",
    )
    quiet = client.chat("qwen3:8b", [{"role": "user", "content": "Hi"}], think=False)
    assert quiet.message.thinking is None and quiet.eval_count == ANSWER_TOKENS


def test_num_predict_truncates_with_length(client: ollama.Client) -> None:
    reply = client.generate(GEMMA, "Why avocados?", options={"num_predict": 3})
    assert (reply.response, reply.done_reason, reply.eval_count) == ("Avocado is rich", "length", 3)


def test_unknown_model_is_a_404_response_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        next(client.generate("nope:7b", "Hi", stream=True))
    assert (err.value.status_code, err.value.error) == (404, "model 'nope:7b' not found")


def test_error_line_mid_stream_raises_status_minus_one(
    double: OllamaDouble, client: ollama.Client
) -> None:
    double.set_fault(GEMMA, Fault.ERROR_LINE)
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError) as err:
        seen.extend(c.response or "" for c in client.generate(GEMMA, "Hi", stream=True))
    assert (err.value.status_code, err.value.error) == (-1, ERROR_LINE_TEXT)
    assert seen == split_pieces(ANSWER)[:2]


def test_load_only_then_unload(double: OllamaDouble, client: ollama.Client) -> None:
    loaded = client.generate("llama3.2")
    assert (loaded.done, loaded.done_reason, loaded.total_duration) == (True, "load", None)
    assert "llama3.2:latest" in {m.model for m in client.ps().models}
    unloaded = client.chat("llama3.2", [], keep_alive=0)
    assert (unloaded.done_reason, unloaded.message.role) == ("unload", "assistant")
    assert "llama3.2:latest" not in {m.model for m in client.ps().models}


def test_probe_makes_a_model_resident_unless_keep_alive_zero(
    double: OllamaDouble, client: ollama.Client
) -> None:
    client.generate("llama3.2", "Hi")
    assert {m.model for m in client.ps().models} == {GEMMA, "llama3.2:latest"}
    client.generate(GEMMA, "Hi", keep_alive=0)
    assert {m.model for m in client.ps().models} == {"llama3.2:latest"}
    assert double.requests("/api/generate")[-1].body == {
        "model": GEMMA,
        "prompt": "Hi",
        "stream": False,
        "keep_alive": 0,
    }


# --- protocol details over raw HTTP ----------------------------------------------------------


def test_stream_is_chunked_ndjson_when_stream_is_omitted(http: httpx.Client) -> None:
    with http.stream("POST", "/api/generate", json={"model": GEMMA, "prompt": "Hi"}) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in r.iter_lines()]
    assert [line["done"] for line in lines] == [False] * ANSWER_TOKENS + [True]
    final = lines[-1]
    assert "prompt_eval_duration" in final and "thinking" not in final


def test_zero_metrics_are_omitted(double: OllamaDouble, http: httpx.Client) -> None:
    double.set_models([ModelScript("mute:1b", answer="", prompt_eval_count=0)])
    final = http.post(
        "/api/generate", json={"model": "mute:1b", "prompt": "Hi", "raw": True, "stream": False}
    ).json()
    assert final["response"] == "" and final["done_reason"] == "stop"
    assert not {"eval_count", "prompt_eval_count", "context"} & set(final)


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", b"", 400, "missing request body"),
        ("/api/generate", b"{x}", 400, "invalid character 'x' looking for beginning of value"),
        ("/api/chat", b'{"messages": []}', 400, "model is required"),
        ("/api/generate", b'{"prompt": "Hi"}', 404, "model '' not found"),
        (
            "/api/generate",
            b'{"model": "nomic-embed-text", "prompt": "Hi"}',
            400,
            '"nomic-embed-text" does not support generate',
        ),
        (
            "/api/chat",
            b'{"model": "nomic-embed-text", "messages": []}',
            400,
            '"nomic-embed-text" does not support chat',
        ),
        ("/api/show", b"", 400, "missing request body"),
    ],
)
def test_request_errors(
    http: httpx.Client, path: str, body: bytes, status: int, error: str
) -> None:
    reply = http.post(path, content=body)
    assert (reply.status_code, reply.json()) == (status, {"error": error})
    assert reply.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        (Fault.NOT_FOUND, 404, "model 'gemma3:12b' not found"),
        (Fault.STATUS_500, 500, "llama-server process has terminated: exit status 2"),
        (
            Fault.STATUS_503,
            503,
            "server busy, please try again.  maximum pending requests exceeded",
        ),
    ],
)
def test_status_faults(
    double: OllamaDouble, client: ollama.Client, fault: Fault, status: int, error: str
) -> None:
    double.set_fault(GEMMA, fault)
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(GEMMA, "Hi")
    assert (err.value.status_code, err.value.error) == (status, error)


def test_other_404_is_not_a_model_error(double: OllamaDouble, http: httpx.Client) -> None:
    double.set_fault(GEMMA, Fault.OTHER_404)
    reply = http.post("/api/generate", json={"model": GEMMA, "prompt": "Hi"})
    assert (reply.status_code, reply.text) == (404, "404 page not found")


def test_fail_endpoint_and_clear(double: OllamaDouble, http: httpx.Client) -> None:
    double.fail_endpoint("/api/ps", 500)
    failed = http.get("/api/ps")
    assert failed.status_code == 500 and "error" in failed.json()
    double.fail_endpoint("/api/ps", None)
    assert http.get("/api/ps").status_code == 200


def test_set_models_replaces_inventory_live(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_models([ModelScript("phi4:14b")])
    assert [m.model for m in client.list().models] == ["phi4:14b"]
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(GEMMA, "Hi")
    assert err.value.status_code == 404


# --- faults after the 200 --------------------------------------------------------------------


def _request_bytes(model: str) -> bytes:
    body = json.dumps({"model": model, "prompt": "Hi"}).encode()
    head = f"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_hang_before_headers_times_out_then_release_hangs_up(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.set_fault(GEMMA, Fault.HANG_BEFORE_HEADERS)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/generate", json={"model": GEMMA, "prompt": "Hi"}, timeout=0.3)
    with socket.create_connection(("127.0.0.1", double.port), timeout=2.0) as sock:
        sock.sendall(_request_bytes(GEMMA))
        double.wait_for_requests(2, "/api/generate")
        double.release()
        assert sock.recv(1024) == b""  # closed without a status line
    assert [r.status for r in double.wait_for_requests(2, completed=True)] == [0, 0]


def test_trickle_keeps_reads_alive_but_never_completes_a_line(
    double: OllamaDouble, http: httpx.Client
) -> None:
    double.set_fault(GEMMA, Fault.TRICKLE)
    received = b""
    timeout = httpx.Timeout(5.0, read=0.3)  # longer than trickle_interval, so reads succeed
    body = {"model": GEMMA, "prompt": "Hi"}
    with http.stream("POST", "/api/generate", json=body, timeout=timeout) as r:
        assert r.status_code == 200
        stream = r.iter_raw()
        while received.count(b".") < 4:
            received += next(stream)
        double.release()
        with pytest.raises(httpx.RemoteProtocolError):
            for part in stream:
                received += part
    assert b"\n" not in received and received.startswith(b'{"model":"gemma3:12b"')


def test_load_only_request_skips_mid_stream_faults(
    double: OllamaDouble, http: httpx.Client
) -> None:
    # A load-only reply has no stream to spoil, so TRICKLE does not apply to it.
    double.set_fault(GEMMA, Fault.TRICKLE)
    reply = http.post("/api/generate", json={"model": GEMMA})
    assert reply.json()["done_reason"] == "load"


def test_drop_mid_stream_closes_without_done(double: OllamaDouble, http: httpx.Client) -> None:
    double.set_fault(GEMMA, Fault.DROP_MID_STREAM)
    lines: list[dict[str, object]] = []
    body = {"model": GEMMA, "prompt": "Hi"}
    # No terminating chunk: httpx calls the body incomplete.
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/api/generate", json=body) as r,
    ):
        lines.extend(json.loads(line) for line in r.iter_lines())
    assert 1 <= len(lines) < ANSWER_TOKENS and not any(line["done"] for line in lines)


def test_no_done_ends_cleanly(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_fault(GEMMA, Fault.NO_DONE)
    chunks = list(client.generate(GEMMA, "Hi", stream=True))
    assert "".join(c.response or "" for c in chunks) == ANSWER and not any(c.done for c in chunks)


def test_garbage_line_breaks_the_client(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_fault(GEMMA, Fault.GARBAGE_LINE)
    with pytest.raises(json.JSONDecodeError):
        list(client.generate(GEMMA, "Hi", stream=True))


def test_invalid_utf8_line(double: OllamaDouble, http: httpx.Client) -> None:
    double.set_fault(GEMMA, Fault.INVALID_UTF8)
    with http.stream("POST", "/api/generate", json={"model": GEMMA, "prompt": "Hi"}) as r:
        raw = r.read()
    bad = [line for line in raw.splitlines() if not _is_utf8(line)]
    assert r.status_code == 200 and len(bad) == 1


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_huge_response_streams_the_configured_size(
    double: OllamaDouble, client: ollama.Client
) -> None:
    assert OllamaDouble([]).huge_bytes == 8 * 1024 * 1024
    double.set_fault(GEMMA, Fault.HUGE_RESPONSE)
    *tokens, final = client.generate(GEMMA, "Hi", stream=True)
    assert sum(len((c.response or "").encode()) for c in tokens) == 1 << 20
    assert final.done and final.eval_count == len(tokens)


# --- timing records and lifecycle ------------------------------------------------------------


def test_records_order_the_timestamps(double: OllamaDouble, client: ollama.Client) -> None:
    double.set_models([ModelScript(GEMMA, first_token_delay=0.05)])
    started = time.perf_counter()
    list(client.generate(GEMMA, "Hi", stream=True))
    record = _finished(double, "/api/generate")
    assert record.first_token_at is not None and record.last_byte_at is not None
    assert started < record.received_at < record.first_token_at <= record.last_byte_at
    assert record.first_token_at - record.received_at >= 0.05
    assert (record.method, record.status, record.headers["content-type"]) == (
        "POST",
        200,
        "application/json",
    )


def test_headers_wait_for_scheduling(double: OllamaDouble, http: httpx.Client) -> None:
    # Load and prompt eval both happen before the status line, so a client whose read timeout
    # is shorter than their sum times out with no response at all.
    double.set_models([ModelScript(GEMMA, load_delay=0.15, first_token_delay=0.15)])
    with pytest.raises(httpx.ReadTimeout):
        http.post("/api/generate", json={"model": GEMMA, "prompt": "Hi"}, timeout=0.2)


def test_wait_for_requests_times_out(double: OllamaDouble) -> None:
    with pytest.raises(TimeoutError):
        double.wait_for_requests(1, "/api/chat", timeout=0.05)


def test_restart_rebinds_the_same_port(double: OllamaDouble, client: ollama.Client) -> None:
    port = double.port
    double.set_fault(GEMMA, Fault.HANG_BEFORE_HEADERS)
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as hung:
        hung.sendall(_request_bytes(GEMMA))
        double.wait_for_requests(1, "/api/generate")
        double.stop()  # must not wait for release()
        assert hung.recv(1024) == b""
    with pytest.raises(ConnectionError):
        client.list()
    double.start()
    assert double.port == port and len(client.list().models) == 5
