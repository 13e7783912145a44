"""What every backend shares: the Backend interface and the protocol-neutral values it returns.

A backend is one server protocol (Ollama's native API, an OpenAI-compatible API). It is
stateless: the read calls take the target's ApiClient, the probe calls take the ProbeRequest,
so one instance serves every target of its kind. The generic code (exporter.probing: probe,
targets, runner) calls only this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from exporter.config import ProbeConfig
from exporter.probing.probe import BackendTimings, ProbeFailure, ProbeRequest, Reason


class BackendApiError(Exception):
    """A read endpoint could not be used: no connection, a bad status or a bad body."""


@dataclass(frozen=True)
class ListedModel:
    """One model the server lists."""

    name: str
    family: str
    parameter_size: str
    quantization_level: str
    remote: bool
    capabilities: tuple[str, ...] | None  # None when the listing does not say
    digest: str = ""  # the content digest the listing gives ("" when it gives none)


@dataclass(frozen=True)
class RunningModel:
    """One model resident in memory."""

    name: str
    size_bytes: int
    vram_bytes: int
    expires_at: datetime | None
    context_length: int | None


@dataclass(frozen=True)
class StreamRequest:
    """The HTTP request of one probe, as the backend's protocol spells it."""

    method: str
    url: str
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One parsed line of a generation stream."""

    text: str = ""  # answer text
    thinking: str = ""
    tool_calls: int = 0
    done: bool = False
    reported: BackendTimings | None = None  # the backend's own figures, on the final chunk

    @property
    def produced(self) -> bool:
        """Whether the model produced something here: the first such chunk ends TTFT."""
        return bool(self.text or self.thinking or self.tool_calls)


class StreamParser(Protocol):
    """Reads one probe's stream, line by line."""

    def feed(self, line: bytes, *, final: bool = False) -> Chunk | None:
        """Parse one line (`final`: the body's unterminated last fragment); None for a blank
        line. Raises ProbeFailure for a line that is an error or not the protocol's."""
        ...


KeepAlive = int | float | str | None


class Backend(Protocol):
    """One server protocol: its read endpoints, its generation stream and its model rules."""

    name: str
    residency: bool  # whether running() tells which models are resident (and keep_alive applies)
    digests: bool  # whether the listing gives each model's content digest

    def version(self, api: ApiClient, timeout: float) -> str:
        """The server's version: its health check. Raises BackendApiError."""
        ...

    def list_models(self, api: ApiClient, timeout: float) -> list[ListedModel]:
        """The models the server has. Raises BackendApiError."""
        ...

    def running(self, api: ApiClient, timeout: float) -> list[RunningModel]:
        """The models resident in memory. Raises BackendApiError."""
        ...

    def capabilities(self, api: ApiClient, model: str, timeout: float) -> tuple[str, ...]:
        """A model's capabilities ("completion" for one that generates). Raises BackendApiError."""
        ...

    def model_key(self, name: str) -> str:
        """The name as the server compares names: equal keys are the same model."""
        ...

    def keep_alive(self, probe: ProbeConfig, running: RunningModel | None) -> KeepAlive:
        """What a probe asks of the model's residency (None: the server's own default)."""
        ...

    def cold_start(
        self,
        reason: Reason | None,
        resident: Mapping[str, RunningModel] | None,
        running: RunningModel | None,
    ) -> bool | None:
        """Whether the probe had to load its model; None when unknown or meaningless."""
        ...

    def stream_request(self, request: ProbeRequest) -> StreamRequest:
        """The streamed generation request of a probe."""
        ...

    def stream_parser(self, request: ProbeRequest) -> StreamParser:
        """A parser for the stream that request answers with."""
        ...

    def status_failure(self, status: int, body: bytes) -> ProbeFailure:
        """The verdict on a generation answered with a status other than 200."""
        ...


class ApiClient:
    """JSON read calls to one target, over an injected httpx client; the backend names paths."""

    def __init__(
        self, client: httpx.Client, base_url: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = dict(headers or {})

    def get(self, path: str, timeout: float) -> dict[str, Any]:
        """GET path; the JSON object it answers with."""
        return self.request("GET", path, timeout)

    def request(self, method: str, path: str, timeout: float, **kw: Any) -> dict[str, Any]:
        """Any method; raises BackendApiError unless the answer is 200 with a JSON object."""
        try:
            response = self._client.request(
                method, self._base + path, headers=self._headers, timeout=timeout, **kw
            )
        except httpx.HTTPError as exc:
            raise BackendApiError(f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise BackendApiError(f"{path}: HTTP {response.status_code}")
        try:
            body = response.json()
        except (ValueError, RecursionError):
            raise BackendApiError(f"{path}: the body is not JSON") from None
        if not isinstance(body, dict):
            raise BackendApiError(f"{path}: the body is not a JSON object")
        return body
