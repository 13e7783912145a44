"""Server protocols, one module each, behind one interface (exporter.backends.base.Backend).

A target's `protocol` config value picks its entry here. A new protocol is a new module, one
line in BACKENDS, its value in config.BackendName, and its test double (docs/architecture.md).
"""

from __future__ import annotations

from exporter.backends.base import (
    ApiClient,
    Backend,
    BackendApiError,
    Chunk,
    KeepAlive,
    ListedModel,
    RunningModel,
    StreamParser,
    StreamRequest,
)
from exporter.backends.ollama import OLLAMA
from exporter.backends.openai import OPENAI

BACKENDS: dict[str, Backend] = {
    "ollama": OLLAMA,
    "openai": OPENAI,
}

__all__ = [
    "BACKENDS",
    "ApiClient",
    "Backend",
    "BackendApiError",
    "Chunk",
    "KeepAlive",
    "ListedModel",
    "RunningModel",
    "StreamParser",
    "StreamRequest",
    "backend_named",
]


def backend_named(name: str) -> Backend:
    """The backend a config value names (config validation admits only registered names)."""
    return BACKENDS[name]
