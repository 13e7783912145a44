"""Reading raw samples from Prometheus' HTTP API for `compare --from-prometheus`.

Instant queries of range selectors (`metric[86400s]`) return every raw sample: `query_range`
would resample them onto a step and caps a series at 11,000 points. A long range is read one
day at a time, so no single query loads more samples than Prometheus allows
(`--query.max-samples`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

_CHUNK_S = 86400.0

Key = tuple[tuple[str, str], ...]  # sorted (label, value) pairs
Points = dict[int, float]  # value by scrape time, in integer milliseconds as Prometheus keeps it
Json = dict[str, Any]


class PrometheusSourceError(Exception):
    """Prometheus could not be read: unreachable, an HTTP error, a bad body or a failed query."""


_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?"
)
_UNITS_S = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_range(text: str) -> float:
    """Seconds in a Prometheus duration such as `7d`, `12h`, `90m` or `1h30m`."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(
            f"not a Prometheus duration: {text!r} (use units y, w, d, h, m, s, ms from largest "
            "to smallest, e.g. 7d or 1h30m)"
        )
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS_S, strict=True) if n)
    if seconds <= 0:
        raise ValueError(f"a range must be longer than zero, not {text!r}")
    return float(seconds)


@dataclass(frozen=True)
class PrometheusApi:
    client: httpx.Client
    url: str

    def matrix(self, expr: str, at: float) -> list[Json]:
        """The series of an instant query of a range selector at time `at`."""
        data = self._get({"query": expr, "time": f"{at:.3f}"})
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise PrometheusSourceError(
                f"Prometheus at {self.url} answered {expr!r} with a {kind}, not a matrix"
            )
        result = data.get("result")
        if not isinstance(result, list):
            raise PrometheusSourceError(f"Prometheus at {self.url} sent no result for {expr!r}")
        return result

    def _get(self, params: Mapping[str, str]) -> Any:
        where = f"Prometheus at {self.url}"
        try:
            response = self.client.get(f"{self.url}/api/v1/query", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusSourceError(f"cannot reach {where}: {exc!r}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise PrometheusSourceError(
                f"{where} answered HTTP {response.status_code} with a body that is not a JSON "
                f"object: {response.text[:200]!r}"
            )
        # Prometheus answers a failed query with 4xx/5xx *and* a JSON error: report its words.
        if payload.get("status") != "success" or response.status_code != 200:
            raise PrometheusSourceError(
                f"{where} failed the query {params['query']!r} (HTTP {response.status_code}, "
                f"{payload.get('errorType', 'no error type')}): "
                f"{payload.get('error', 'no error message')}"
            )
        return payload.get("data")


def selector(name: str, targets: Sequence[str], range_s: float) -> str:
    """`name{target=~"a|b"}[Ns]`: a raw range selector, target names matched literally."""
    window = f"{round(range_s)}s" if range_s == round(range_s) else f"{round(range_s * 1000)}ms"
    if not targets:
        return f"{name}[{window}]"
    pattern = "|".join(_regex_literal(t) for t in targets)
    return f"{name}{{target=~{_promql_string(pattern)}}}[{window}]"


def _regex_literal(text: str) -> str:
    # Only RE2's metacharacters: Go's regexp rejects escapes of letters, digits and spaces,
    # which Python's re.escape writes.
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


def _promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _chunks(start: float, end: float) -> Iterator[tuple[float, float]]:
    """(evaluation time, window) pairs covering [start, end] a day at most at a time."""
    at = end
    while at > start:
        window = min(_CHUNK_S, at - start)
        yield at, window
        at -= window


def read_metric(
    api: PrometheusApi,
    name: str,
    parts: tuple[str, ...],
    targets: Sequence[str],
    start: float,
    end: float,
) -> dict[Key, dict[Key, Points]]:
    """A metric's samples by job, then by the labels in `parts`; chunk edges merged."""
    grouped: dict[Key, dict[Key, Points]] = {}
    for at, window in _chunks(start, end):
        # Windows share their edges (Prometheus 2 includes both ends): the dict keeps one.
        for series in api.matrix(selector(name, targets, window), at):
            labels: dict[str, str] = series.get("metric", {})
            job = labels_key(labels, exclude=("__name__", *parts))
            part = tuple((label, labels.get(label, "")) for label in parts)
            points = grouped.setdefault(job, {}).setdefault(part, {})
            for stamp, value in series.get("values", []):
                points[round(float(stamp) * 1000)] = float(value)
    return grouped


def labels_key(labels: Mapping[str, str], exclude: tuple[str, ...]) -> Key:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in exclude))
