"""Freed heap memory goes back to the operating system after a render (exporter.memory)."""

from __future__ import annotations

import os
import platform

import pytest

from exporter.memory import release_free_memory

MIB = 1 << 20


def rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
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
