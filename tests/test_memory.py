"""Large buffers get their own mappings, threads share one heap without caches of their own, and
freed heap memory goes back to the operating system (exporter.memory)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.memory import RESTARTED, TUNABLES, release_free_memory

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


def _child(script: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def _freed_at_once(mode: str) -> tuple[bool, int]:
    """(tuned?, MiB that went back to the OS as 48 MiB of 2 MiB blocks were freed, no trim)."""
    tuned, released = _child(FREE_AFTER_A_LARGE_FREE, mode)
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


# Threads that each keep a block allocated while the heaps are counted (glibc's malloc_info).
HEAPS_WITH_EIGHT_THREADS = """
import ctypes, re, sys, tempfile, threading
from exporter.memory import tune_allocator

tuned = sys.argv[1] == "tuned" and tune_allocator()
allocated = threading.Barrier(9)
counted = threading.Event()

def worker():
    block = bytes(4096)  # over pymalloc's limit: malloc'd from the thread's arena
    allocated.wait()
    counted.wait()

threads = [threading.Thread(target=worker) for _ in range(8)]
for thread in threads:
    thread.start()
allocated.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
with tempfile.NamedTemporaryFile() as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    heaps = len(re.findall(rb"<heap nr=", report.read()))
counted.set()
for thread in threads:
    thread.join()
print(int(tuned), heaps)
"""


@glibc
def test_tuned_threads_share_one_heap() -> None:
    tuned, heaps = _child(HEAPS_WITH_EIGHT_THREADS, "tuned")
    assert (tuned, heaps) == ("1", "1")
    # Untuned, glibc gives the threads arenas of their own: what the test tells apart.
    untuned, heaps = _child(HEAPS_WITH_EIGHT_THREADS, "default")
    assert untuned == "0" and int(heaps) > 1, heaps


@glibc
def test_an_operators_arena_limit_stays_in_force() -> None:
    env = {**os.environ, "MALLOC_ARENA_MAX": "3"}
    tuned, heaps = _child(HEAPS_WITH_EIGHT_THREADS, "tuned", env=env)
    assert (tuned, heaps) == ("1", "3")


# Restarts itself first, then frees seven blocks of one small size into an empty cache bin:
# glibc's per-thread cache keeps such chunks (in use, as far as the heap is concerned); without
# it they are free.
FREED_SMALL_BLOCKS = """
import ctypes, os
from exporter.memory import restart_with_tunables

restart_with_tunables()

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
in_use = lambda: mallinfo2().uordblks
in_use()
# Over pymalloc's limit, under the cache's; the first seven take what the cache held of the size.
drained = [bytes(900) for _ in range(7)]
blocks = [bytes(900) for _ in range(7)]
before = in_use()
blocks.clear()
print(os.getpid(), os.environ.get("GLIBC_TUNABLES", "-"), before - in_use())
"""


def _freed_small_blocks(env: dict[str, str]) -> tuple[int, int, str, int]:
    """(the child's PID, the PID it reported, its GLIBC_TUNABLES, bytes its frees gave back)."""
    child = subprocess.Popen(
        [sys.executable, "-c", FREED_SMALL_BLOCKS],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()  # a restart that never ends must fail the test, not hang it
        child.wait()
    assert child.returncode == 0
    pid, tunables, freed = out.split()
    return child.pid, int(pid), tunables, int(freed)


@glibc
def test_the_restart_turns_the_per_thread_cache_off_in_place() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", RESTARTED)}
    started, running, tunables, freed = _freed_small_blocks(env)
    assert running == started, "the restart must keep the process (and its PID)"
    assert tunables == TUNABLES
    assert freed >= 7 * 900, f"only {freed} bytes were freed"


@glibc
def test_an_operators_tunables_are_left_alone() -> None:
    # Theirs do not touch the cache, so it keeps the freed blocks: what the test tells apart.
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.check=0"}
    started, running, tunables, freed = _freed_small_blocks(env)
    assert (running, tunables) == (started, "glibc.malloc.check=0")
    assert freed < 3 * 900, f"{freed} bytes were freed with the cache on"


@glibc
def test_the_restart_happens_once_even_where_glibc_drops_the_tunables() -> None:
    # A binary with file capabilities runs in secure mode, where glibc may remove them.
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env[RESTARTED] = "1"
    started, running, tunables, _ = _freed_small_blocks(env)
    assert (running, tunables) == (started, "-")
