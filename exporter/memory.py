"""Keep the exporter's footprint flat: large buffers in their own mappings, freed pages returned.

Each scrape that finds the text changed builds megabytes of new buffers (the joined text, its
gzip) and frees the previous ones. Two glibc habits made the footprint creep scrape after scrape
(a 16-minute soak at 600 jobs grew by ~100 MiB/h):

- its mmap threshold is dynamic: freeing one large mapped block raises it, so later
  multi-megabyte texts come from the heap arenas, where small live objects pin their pages;
- it keeps freed memory inside its arenas (up to eight per core).

tune_allocator() fixes the threshold at 1 MiB at start-up, so every text of that size or more
gets its own mapping and goes back to the system when freed; release_free_memory() runs
malloc_trim(0) after a render that rebuilt the text, returning the free pages of every arena
(2-3 ms at that size). In a replay of the soak's renders the footprint reached about 125 MiB with
only the trim, 105 MiB and growing with only the threshold, 200 MiB with neither, and stayed at
71 MiB with both. Where the C library has neither function (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 1 << 20


def _libc() -> ctypes.CDLL | None:
    library = ctypes.util.find_library("c")  # runs ldconfig: once, not per function
    if library is None:
        return None
    try:
        return ctypes.CDLL(library)
    except OSError:
        return None


def _function(libc: ctypes.CDLL | None, name: str, *argtypes: Any) -> Any:
    """A C library function with its argument types set, or None where there is no such one."""
    function = getattr(libc, name, None)
    if function is not None:
        function.argtypes = list(argtypes)
        function.restype = ctypes.c_int
    return function


_LIBC = _libc()
_TRIM = _function(_LIBC, "malloc_trim", ctypes.c_size_t)
_MALLOPT = _function(_LIBC, "mallopt", ctypes.c_int, ctypes.c_int)


def tune_allocator() -> bool:
    """Give buffers of 1 MiB or more their own mappings from now on; False where not glibc.

    Call once at start-up: a fixed threshold also stops glibc from raising it.
    """
    return _MALLOPT is not None and _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


def release_free_memory() -> None:
    """Return free heap pages to the OS, where the C library can."""
    if _TRIM is not None:
        _TRIM(0)
