"""A request's objects are freed as the call returns, not at the cyclic collector's next pass
(exporter.responses): probes and read-endpoint calls over loopback against the Ollama double,
with the collector switched off so that only reference counting can free anything."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import httpx
import pytest

from exporter.config import TargetConfig
from exporter.ollama import OllamaApi, OllamaApiError
from exporter.probe import Reason, run_probe
from exporter.responses import release
from exporter.targets import http_clients
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.test_probe_loopback import MODEL, no_gc_pauses, request

DEADLINE = 0.5  # what ends the trickling reply
Refs = list["weakref.ref[httpx.Response]"]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    models = [ModelScript(MODEL, answer="Avocado is rich in potassium.", resident=True)]
    with OllamaDouble(models, trickle_interval=0.05) as d:
        yield d


@pytest.fixture
def clients() -> Iterator[tuple[httpx.Client, httpx.Client]]:
    api, probes = http_clients(TargetConfig(name="t", url="http://127.0.0.1:11434"))
    with api, probes:
        yield api, probes


def watch(client: httpx.Client) -> Refs:
    """Weak references to every response the client builds: they keep nothing alive."""
    refs: Refs = []
    client.event_hooks = {"response": [lambda response: refs.append(weakref.ref(response))]}
    return refs


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.NONE, None),
        (Fault.DROP_MID_STREAM, Reason.INCOMPLETE),
        (Fault.ERROR_LINE, Reason.STREAM_ERROR),
        (Fault.GARBAGE_LINE, Reason.INVALID_RESPONSE),
        (Fault.STATUS_500, Reason.HTTP_STATUS),
        (Fault.NOT_FOUND, Reason.MODEL_NOT_FOUND),
        (Fault.TRICKLE, Reason.TIMEOUT),  # ended by the watchdog mid-stream
    ],
    ids=lambda v: v.value if isinstance(v, Fault | Reason) else None,
)
def test_a_probes_response_is_freed_when_the_probe_returns(
    double: OllamaDouble,
    clients: tuple[httpx.Client, httpx.Client],
    fault: Fault,
    reason: Reason | None,
) -> None:
    double.set_fault(MODEL, fault)
    refs = watch(clients[1])
    with no_gc_pauses():
        assert run_probe(clients[1], request(double.url, timeout=DEADLINE)).reason is reason
        assert len(refs) == 1 and refs[0]() is None, "the response waits for the collector"


def test_a_read_endpoints_response_is_freed_when_the_call_returns(
    double: OllamaDouble, clients: tuple[httpx.Client, httpx.Client]
) -> None:
    api = OllamaApi(clients[0], double.url)
    refs = watch(clients[0])
    with no_gc_pauses():
        [running] = api.running(5.0)
        assert running.name == MODEL
        with pytest.raises(OllamaApiError, match="HTTP 404"):
            OllamaApi(clients[0], double.url + "/elsewhere").version(5.0)
        assert len(refs) == 2 and all(ref() is None for ref in refs)


def test_a_response_still_open_is_left_readable() -> None:
    def reply(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"still ", b"there"]))  # streamed, not read yet

    transport = httpx.MockTransport(reply)
    with httpx.Client(transport=transport) as client, client.stream("GET", "http://t/") as response:
        release(response)
        assert response.read() == b"still there"
