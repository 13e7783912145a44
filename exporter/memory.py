"""Keep the exporter's footprint flat: large buffers in their own mappings, one heap, no
per-thread caches, freed pages returned.

Each scrape that finds the text changed builds megabytes of new buffers (the joined text, its
gzip) and frees the previous ones, while ~50 threads (probe workers, HTTP handlers) allocate
and free the rest. In a soak at 600 jobs four glibc habits made the footprint grow, by about
100 MiB/h untuned and still by 20-30 MiB/h for the first 20 minutes with only the first and the
last of them dealt with:

- its mmap threshold is dynamic: freeing one large mapped block raises it, so later
  multi-megabyte texts come from the heap arenas, where small live objects pin their pages;
- it gives threads their own arenas (up to eight per core), each fragmenting on its own;
- each thread keeps up to seven freed chunks of every small size (up to 1 KiB) in a cache of
  its own, which fills slowly as the thread meets new sizes; the cached chunks count as live
  and pin the pages around them (about 5 MiB over 50 threads, released only when a thread exits);
- it keeps freed memory inside its arenas.

tune_allocator() fixes the threshold at 1 MiB and caps the arenas at one, in-process at
start-up. The per-thread cache can only be switched off before the process starts (the
GLIBC_TUNABLES environment variable), so restart_with_tunables() starts the program again in
place, once, with it set. release_free_memory() runs malloc_trim(0) after a render that rebuilt
the text. Where the C library is not glibc (musl, macOS) all of this does nothing; settings an
operator made (MALLOC_ARENA_MAX, GLIBC_TUNABLES) are left as they are.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping
from typing import Any

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1 << 20
ARENAS = 1  # the GIL serialises nearly every allocation anyway: more arenas buy nothing here
TUNABLES = "glibc.malloc.tcache_count=0"  # no per-thread cache of freed chunks
# Set by the restart. glibc may drop GLIBC_TUNABLES itself (a binary with file capabilities runs
# in secure mode), so the restart must not rely on finding it to happen only once.
RESTARTED = "OLLAMA_PROBE_EXPORTER_RESTARTED"


def _libc() -> ctypes.CDLL | None:
    """The symbols already loaded into the process, the C library's among them.

    No ctypes.util.find_library: it runs ldconfig in a subprocess, and the entry point imports
    this module before its restart, so that would run twice at every start.
    """
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows has no handle for the process itself
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
    """Give buffers of 1 MiB or more their own mappings, and every thread the one heap; False
    where not glibc.

    Call once at start-up, before threads allocate: a fixed threshold also stops glibc from
    raising it, and the arena cap binds only arenas not yet made. An operator's
    MALLOC_ARENA_MAX (read by glibc at the first allocation) stays in force.
    """
    if _MALLOPT is None:
        return False
    threshold = _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    arenas = "MALLOC_ARENA_MAX" in os.environ or _MALLOPT(M_ARENA_MAX, ARENAS) == 1
    return threshold and arenas


def _tunables_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to start again with, or None when there is no need to.

    None off glibc, where the operator set GLIBC_TUNABLES (theirs wins), and after the restart.
    """
    if not _glibc() or "GLIBC_TUNABLES" in environ or RESTARTED in environ:
        return None
    return {**environ, "GLIBC_TUNABLES": TUNABLES, RESTARTED: "1"}


def restart_with_tunables() -> None:
    """Start this program again in place (same PID and arguments, the environment plus the
    tunables) with glibc's per-thread caches off; returns only when that is not needed or not
    possible.

    Call first thing in the program's entry point: before any thread, and never from code that
    a test or a library user runs in their own process.
    """
    environment = _tunables_environment(os.environ)
    if environment is None or not sys.executable:
        return
    try:
        os.execve(sys.executable, sys.orig_argv, environment)
    except OSError:
        return  # the exporter runs as well, only with a larger footprint


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or not glibc
        return False


def release_free_memory() -> None:
    """Return free heap pages to the OS, where the C library can."""
    if _TRIM is not None:
        _TRIM(0)
