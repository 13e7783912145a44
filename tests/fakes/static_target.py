"""A Target whose Ollama API answers from fixed values: its state set through its own methods.

The exposition builds the per-target series from a Target's state, so tests and benchmarks that
want those series in a known state drive a real Target (health check, listing, /api/ps) against
this stand-in instead of a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from exporter.backends import BackendApiError, ListedModel, RunningModel
from exporter.backends.ollama import OLLAMA
from exporter.config import Config, TargetConfig
from exporter.probing.targets import Target


class StaticBackend:
    """The Ollama backend with its read calls answered from attributes; `version_text` None
    fails the health check. Everything else (model names, requests) is Ollama's own."""

    def __init__(self) -> None:
        self.version_text: str | None = None
        self.listed: list[ListedModel] = []
        self.resident: list[RunningModel] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(OLLAMA, name)

    def version(self, api: object, timeout: float) -> str:
        if self.version_text is None:
            raise BackendApiError("connection refused")
        return self.version_text

    def list_models(self, api: object, timeout: float) -> list[ListedModel]:
        return list(self.listed)

    def running(self, api: object, timeout: float) -> list[RunningModel]:
        return list(self.resident)

    def capabilities(self, api: object, model: str, timeout: float) -> tuple[str, ...]:
        return ("completion",)


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a static target made a request: {request.url}")


class StaticTarget:
    """A real Target with a StaticApi, and the calls that set its state."""

    def __init__(self, name: str, config: Config | None = None) -> None:
        client = httpx.Client(transport=httpx.MockTransport(_refuse))
        self.target = Target(
            TargetConfig(name=name, url="http://ollama.test:11434"), client, client
        )
        self.api = StaticBackend()
        self.target.backend = self.api
        self.config = config or Config()

    def health(self, version: str | None) -> None:
        """One health check answered with `version` (None: failed); /api/ps as last set."""
        self.api.version_text = version
        self.target.check_health(1.0)

    def inventory(self, models: Sequence[ListedModel]) -> None:
        """One listing of `models`, selected under the configuration."""
        self.api.listed = list(models)
        self.target.refresh_inventory(self.config, 1.0)

    def residency(self, running: Sequence[RunningModel]) -> None:
        """One /api/ps reading."""
        self.api.resident = list(running)
        self.target.note_residency(running)
