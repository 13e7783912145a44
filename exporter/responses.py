"""Free a closed httpx response's objects at once, not at the cyclic collector's next pass.

httpx wraps each response's stream in one that refers back to the response, to set `elapsed`
when it closes. That reference cycle keeps the request, the headers, the connection's objects and
the probe's trace hooks (40 to 70 objects a request) until Python's cyclic garbage collector
finds them. In a soak that was nearly all of the collector's work, and the exporter's memory
rose faster over an hour with it than without it (benches/findings.md). A closed response's
stream is spent, so swapping in an empty one breaks the cycle, and reference counting frees the
rest as soon as the caller lets go.
"""

from __future__ import annotations

import httpx

_SPENT = httpx.ByteStream(b"")


def release(response: httpx.Response) -> None:
    """Break a closed response's cycle; a response still open is left as it is."""
    if response.is_closed:
        response.stream = _SPENT
