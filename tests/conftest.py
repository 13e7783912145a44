"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from exporter.config import parse_config
from exporter.probing.targets import http_clients


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The production (API, probe) client pair of a default target.

    Building them loads TLS roots, so one pair serves a whole test module.
    """
    api, probes = http_clients(parse_config({}, "t", {}).targets[0])
    with api, probes:
        yield api, probes
