"""Large buffers get their own mappings, and freed heap memory goes back to the operating system
(exporter.memory)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.memory import release_free_memory

MIB = 1 << 20
REPO = Path(__file__).resolve().parents[1]
glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and malloc_trim")

# Run in a child: the tuning is for the whole process and would change the other test here.
FREE_AFTER_A_LARGE_FREE = """
import os, sys
from exporter.memory import tune_allocator

MIB = 1 << 20
def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

tuned = sys.argv[1] == "tuned" and tune_allocator()
big = bytearray(b"x") * (16 * MIB)
del big  # untuned, glibc now serves blocks of up to 16 MiB from the heap
blocks, pins = [], []
for _ in range(24):
    blocks.append(bytearray(b"x") * (2 * MIB))
    pins.append(bytes(2048))  # small live objects between the blocks, as a render leaves
held = rss()
del blocks
print(int(tuned), (held - rss()) // MIB)
"""


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _freed_at_once(mode: str) -> tuple[bool, int]:
    """(tuned?, MiB that went back to the OS as 48 MiB of 2 MiB blocks were freed, no trim)."""
    result = subprocess.run(
        [sys.executable, "-c", FREE_AFTER_A_LARGE_FREE, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tuned, released = result.stdout.split()
    return tuned == "1", int(released)


@glibc
def test_tuned_allocator_returns_large_buffers_as_they_are_freed() -> None:
    tuned, released = _freed_at_once("tuned")
    assert tuned and released >= 40, f"only {released} MiB went back"
    # Without the tuning the same frees return nothing: what the test tells apart.
    untuned, kept = _freed_at_once("default")
    assert not untuned and kept < 8, f"{kept} MiB went back untuned"


@glibc
def test_freed_heap_memory_goes_back_to_the_os() -> None:
    # Freeing a large mmapped block raises glibc's mmap threshold, so the megabyte blocks below
    # come from the heap, as a render's buffers do once the exporter has run a while.
    big = bytearray(16 * MIB)
    del big
    blocks, pins = [], []
    for _ in range(48):
        blocks.append(bytearray(b"x" * MIB))
        pins.append(bytes(2048))  # malloc'd between the blocks, as a render's small buffers are
    del blocks
    held = rss()
    release_free_memory()
    released = held - rss()
    assert released >= 8 * MIB, f"only {released / MIB:.1f} MiB went back"
    assert pins
