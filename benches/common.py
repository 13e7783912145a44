"""Shared plumbing for the benchmarks: statistics, machine facts, the double and exporter processes.

Every benchmark returns a Section: figures (value, target, verdict) plus notes, which the runner
turns into RESULTS.md. Timings are medians and p99s with their run counts, because single
numbers on a shared two-core machine mean little.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
LIBRARIES = ("prometheus-client", "httpx", "httpcore", "APScheduler", "pydantic", "PyYAML")


# --- statistics --------------------------------------------------------------------------------
def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile: p99 of 100 runs is the 99th smallest (conservative, no smoothing)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True)
class Summary:
    """Median and p99 of one measured quantity, with its run count."""

    n: int
    median: float
    p99: float
    max: float

    @staticmethod
    def of(values: Sequence[float]) -> Summary:
        return Summary(len(values), median(values), quantile(values, 0.99), max(values, default=0))


def slope_with_error(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of (seconds, value) points and its standard error, per hour."""
    n = len(points)
    if n < 3:
        return math.nan, math.nan
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    if sxx == 0:
        return math.nan, math.nan
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / sxx
    residuals = sum((v - mean_v - slope * (t - mean_t)) ** 2 for t, v in points)
    error = math.sqrt(residuals / (n - 2) / sxx)
    return slope * 3600.0, error * 3600.0


# --- results -----------------------------------------------------------------------------------
@dataclass
class Figure:
    """One reported number and, where the issue sets one, its target."""

    name: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**MISSED**", None: ""}[self.ok]


@dataclass
class Section:
    """What one benchmark measured, ready to be written into RESULTS.md."""

    name: str
    title: str
    mode: str
    started: str = ""
    wall_s: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.figures.append(Figure(name, value, target, ok))

    def table(self, caption: str, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append((caption, header, rows))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Section:
        figures = [Figure(**f) for f in raw.pop("figures")]
        tables = [(c, h, r) for c, h, r in raw.pop("tables")]
        return Section(figures=figures, tables=tables, **raw)


def ms(seconds: float, digits: int = 3) -> str:
    return f"{seconds * 1000:.{digits}f} ms"


def summary_ms(s: Summary, digits: int = 3) -> str:
    return f"median {ms(s.median, digits)}, p99 {ms(s.p99, digits)} (n={s.n})"


# --- machine -----------------------------------------------------------------------------------
ALLOCATOR_VARIABLES = ("PYTHONMALLOC", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")


def machine() -> dict[str, str]:
    """Facts that make the numbers comparable: CPU, cores, RAM, Python and library versions."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_kb = 0
    with contextlib.suppress(OSError, ValueError):
        ram_kb = int(Path("/proc/meminfo").read_text().split()[1])
    libs = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    return {
        "exporter commit": _commit(),
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "ram": f"{ram_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        # What the in-process benchmarks ran under (set by the restart, as in the exporter).
        "allocator": ", ".join(f"{v}={os.environ.get(v, '(unset)')}" for v in ALLOCATOR_VARIABLES),
        "libraries": libs,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _commit() -> str:
    """The commit the exporter code came from, marked when exporter/ has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "exporter"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + local changes in exporter/' if dirty else ''}" or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


# --- networking --------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nobody listens on now (a small race, fine for benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 10.0, gzip: bool = False) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()
        return body


# --- the Ollama double in its own process ------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """A request as the double saw it (perf_counter is CLOCK_MONOTONIC: shared by processes)."""

    method: str
    path: str
    model: str
    text: str  # the prompt (chat: first message), empty for other endpoints
    received_at: float
    first_token_at: float | None
    last_byte_at: float | None
    status: int
    bytes_in: int  # request line + headers + body, as the exporter sent them


class DoubleHost:
    """Runs OllamaDouble instances in a child process, as a real Ollama is another process.

    A double in the benchmark's own process would share its GIL with the code under test and
    blur exactly the milliseconds being measured.
    """

    def __init__(self, targets: list[dict[str, Any]], release_every: float = 0.0) -> None:
        self._spec = {"targets": targets, "release_every": release_every}
        self._proc: subprocess.Popen[str] | None = None
        self.urls: list[str] = []

    def __enter__(self) -> DoubleHost:
        self._proc = subprocess.Popen(
            [PYTHON, "-m", "benches.double_host", json.dumps(self._spec)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the double host did not start")
        self.urls = json.loads(line)["urls"]
        return self

    def command(self, verb: str) -> str:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(verb + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()

    def records(self) -> list[list[Record]]:
        """Every request each double saw so far, per target, in arrival order."""
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            reply = self.command(f"dump {out.name}")
            if reply != "ok":
                raise RuntimeError(f"double host: {reply}")
            raw = json.loads(Path(out.name).read_text())
        return [[Record(*r) for r in target] for target in raw]

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.command("stop")
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def model_spec(name: str, **script: Any) -> dict[str, Any]:
    """A ModelScript as JSON (faults by value), for DoubleHost."""
    return {"name": name, **script}


# --- the real exporter CLI in its own process --------------------------------------------------
def write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@dataclass
class ProcSample:
    """One reading of /proc/<pid>: what `top` and `ls /proc/<pid>/fd` would show."""

    at: float  # perf_counter
    rss_bytes: int
    threads: int
    fds: int
    cpu_s: float  # utime + stime


def read_proc(pid: int) -> ProcSample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) * 1024
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    rest = stat.rsplit(")", 1)[1].split()
    cpu = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return ProcSample(time.perf_counter(), rss, threads, fds, cpu)


@dataclass
class AnonSample:
    """Private anonymous memory of a process outside its thread stacks, from /proc/<pid>/smaps:
    what the allocators have mapped (the C heap, their mmaps, Python's arenas) and how much of
    it is resident. Resident memory can only approach mapped memory; when the mapped size is
    flat, a rise in RSS is pages of memory already reserved being touched, which stops at the
    mapped size."""

    at: float  # perf_counter
    mapped_bytes: int
    resident_bytes: int


def read_anon(pid: int) -> AnonSample:
    """Read from outside the process, so nothing inside it is instrumented.

    A thread's stack is the writable mapping right after its guard page (an inaccessible
    mapping of one page); stacks are left out because their size comes and goes with threads
    and almost none of it is resident.
    """
    mapped = resident = 0
    previous_end, previous_guard = -1, False
    counted = False  # whether the mapping whose fields follow is one of those summed
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            head = line.split(None, 5)
            if head and head[0][-1] != ":":  # a mapping's header: range, perms, offset, ...
                low, high = (int(x, 16) for x in head[0].split("-"))
                perms, path = head[1], head[5].strip() if len(head) > 5 else ""
                anonymous = path in ("", "[heap]") and perms.startswith("rw") and perms[3] == "p"
                stack = previous_guard and previous_end == low
                counted = anonymous and not stack
                if counted:
                    mapped += high - low
                previous_guard = perms.startswith("---") and high - low == PAGE and not path
                previous_end = high
            elif counted and head[0] == "Rss:":
                resident += int(head[1]) * 1024
    return AnonSample(time.perf_counter(), mapped, resident)


class ExporterProcess:
    """`python -m exporter --config.file F --web.listen-address 127.0.0.1:PORT` as a child."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        log_level: str = "info",
        module: str = "exporter",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self._module = module
        self._env = env
        self.config_path = workdir / "exporter.yaml"
        self.log_path = workdir / "exporter.log"
        write_config(self.config_path, config)
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.started_wall = 0.0
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ExporterProcess:
        self._log = self.log_path.open("wb")
        args = [PYTHON, "-m", self._module, "--config.file", str(self.config_path)]
        args += ["--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", self._log_level]
        self.started_wall = time.time()
        self.started_at = time.perf_counter()
        env = {**os.environ, **(self._env or {})}
        self._proc = subprocess.Popen(args, cwd=REPO, stdout=self._log, stderr=self._log, env=env)
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"exporter exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                http_get(f"{self.url}/-/healthy", timeout=1)
                return
            time.sleep(0.05)
        raise RuntimeError("exporter did not become healthy")

    def wait_ready(self, timeout: float) -> float:
        """Seconds until /-/ready answered 200 (every job ran once)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            with contextlib.suppress(OSError):
                http_get(f"{self.url}/-/ready", timeout=2)
                return time.monotonic() - start
            time.sleep(0.1)
        raise RuntimeError(f"exporter not ready after {timeout:.0f} s")

    def metrics(self) -> str:
        return http_get(f"{self.url}/metrics", timeout=30).decode()

    def reload(self, config: dict[str, Any]) -> None:
        write_config(self.config_path, config)
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()


# --- reading the exposition --------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of one series name, as (labels, value)."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match[1] == name:
            found.append((dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        v for lab, v in samples(text, name) if all(lab.get(k) == x for k, x in labels.items())
    )


def histogram_buckets(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) summed over all label sets, in bucket order."""
    sums: dict[float, float] = {}
    for labels, value in samples(text, f"{name}_bucket"):
        le = float(labels["le"])
        sums[le] = sums.get(le, 0.0) + value
    return sorted(sums.items())


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as name:
        yield Path(name)
