"""Hand freed heap memory back to the operating system after a large render.

Each scrape that finds the text changed builds megabytes of new buffers (the joined text, its
gzip) in whichever malloc arena its handler thread uses, and frees the previous ones. glibc keeps
freed memory inside its arenas (up to eight per core), so the footprint crept up scrape after
scrape: a 16-minute soak at 600 jobs grew by ~100 MiB/h. malloc_trim(0) returns the free pages
of every arena (2-3 ms at that size). Where the C library has no malloc_trim (musl, macOS) this
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Return free heap pages to the OS, where the C library can."""
    if _TRIM is not None:
        _TRIM(0)
