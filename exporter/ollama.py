"""Ollama's cheap read endpoints: version, model listing, model details, resident models.

These calls raise OllamaApiError for any failure; their callers (inventory and health) decide
what a failure means. Model names are compared the way Ollama compares them (model_key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from exporter.responses import release


class OllamaApiError(Exception):
    """A read endpoint could not be used: no connection, a bad status or a bad body."""


@dataclass(frozen=True)
class ListedModel:
    """One entry of /api/tags."""

    name: str
    family: str
    parameter_size: str
    quantization_level: str
    remote: bool
    capabilities: tuple[str, ...] | None  # None when the listing does not say


@dataclass(frozen=True)
class RunningModel:
    """One entry of /api/ps: a model resident in memory."""

    name: str
    size_bytes: int
    vram_bytes: int
    expires_at: datetime | None
    context_length: int | None


def model_key(name: str) -> str:
    """Ollama's matching: case-insensitive, a missing tag means `latest`."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


class OllamaApi:
    """The read endpoints of one Ollama server, over an injected httpx client."""

    def __init__(
        self, client: httpx.Client, base_url: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = dict(headers or {})

    def version(self, timeout: float) -> str:
        """GET /api/version."""
        body = self._get_json("/api/version", timeout)
        version = body.get("version")
        if not isinstance(version, str) or not version:
            raise OllamaApiError("/api/version answered without a version")
        return version

    def list_models(self, timeout: float) -> list[ListedModel]:
        """GET /api/tags."""
        return [_listed(entry) for entry in _models(self._get_json("/api/tags", timeout))]

    def running(self, timeout: float) -> list[RunningModel]:
        """GET /api/ps."""
        return [_running(entry) for entry in _models(self._get_json("/api/ps", timeout))]

    def capabilities(self, model: str, timeout: float) -> tuple[str, ...]:
        """POST /api/show: the model's capabilities (completion, embedding, ...)."""
        body = self._request("POST", "/api/show", timeout, json={"model": model})
        caps = body.get("capabilities") or []
        if not isinstance(caps, list):
            raise OllamaApiError("/api/show capabilities is not a list")
        return tuple(str(c) for c in caps)

    def _get_json(self, path: str, timeout: float) -> dict[str, Any]:
        return self._request("GET", path, timeout)

    def _request(self, method: str, path: str, timeout: float, **kw: Any) -> dict[str, Any]:
        try:
            response = self._client.request(
                method, self._base + path, headers=self._headers, timeout=timeout, **kw
            )
        except httpx.HTTPError as exc:
            raise OllamaApiError(f"{path}: {type(exc).__name__}: {exc}") from None
        release(response)  # read in full and closed by now
        if response.status_code != 200:
            raise OllamaApiError(f"{path}: HTTP {response.status_code}")
        try:
            body = response.json()
        except (ValueError, RecursionError):
            raise OllamaApiError(f"{path}: the body is not JSON") from None
        if not isinstance(body, dict):
            raise OllamaApiError(f"{path}: the body is not a JSON object")
        return body


def _models(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    models = body.get("models")
    if models is None:
        return []
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise OllamaApiError("`models` is not a list of objects")
    return models


def _name(entry: Mapping[str, Any]) -> str:
    name = entry.get("name") or entry.get("model")
    if not isinstance(name, str) or not name:
        raise OllamaApiError("a model entry has no name")
    return name


def _listed(entry: Mapping[str, Any]) -> ListedModel:
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    assert isinstance(details, dict)
    name = _name(entry)
    caps = entry.get("capabilities")
    tag = name.rsplit(":", 1)[-1] if ":" in name else ""
    remote = bool(entry.get("remote_model") or entry.get("remote_host")) or (
        tag == "cloud" or tag.endswith("-cloud")
    )
    return ListedModel(
        name=name,
        family=str(details.get("family") or ""),
        parameter_size=str(details.get("parameter_size") or ""),
        quantization_level=str(details.get("quantization_level") or ""),
        remote=remote,
        capabilities=tuple(str(c) for c in caps) if isinstance(caps, list) else None,
    )


def _running(entry: Mapping[str, Any]) -> RunningModel:
    return RunningModel(
        name=_name(entry),
        size_bytes=_int(entry.get("size")),
        vram_bytes=_int(entry.get("size_vram")),
        expires_at=_time(entry.get("expires_at")),
        context_length=_int(entry.get("context_length")) or None,
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _time(value: object) -> datetime | None:
    """Parse RFC 3339 with nanoseconds (Python keeps microseconds)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, frac = text.partition(".")
    if dot:
        # Python holds microseconds, Ollama sends nanoseconds; the offset follows the digits.
        digits = len(frac) - len(frac.lstrip("0123456789"))
        text = f"{head}.{frac[: min(digits, 6)]}{frac[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
