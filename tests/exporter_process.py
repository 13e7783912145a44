"""Test support: `python -m exporter` as users run it, in a subprocess, and its /metrics text.

Shared by tests/test_cli.py and the test_hardening_* modules. Not collected by pytest (the
name does not start with test_). Every wait is a poll with a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
NVML_STANDIN = Path(__file__).parent / "fakes" / "nvml_standin"
T = TypeVar("T")

SeriesKey = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[SeriesKey, float]


# --- waiting ---------------------------------------------------------------------------------


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        pause.wait(0.05)


# --- the exposition --------------------------------------------------------------------------


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series_of(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every series of `name`."""
    return [dict(labels) for (n, labels) in samples if n == name]


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian/Ubuntu: apt-get install prometheus)"
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the exporter as users run it ------------------------------------------------------------


def exporter_env(gpu_standin: bool = False, **extra: str) -> dict[str, str]:
    """A subprocess environment without the caller's Ollama and exporter settings.

    With `gpu_standin`, the stand-in `pynvml` (tests/fakes/nvml_standin) comes first on the path.
    """
    dropped = {"OLLAMA_URL", "OLLAMA_HOST", "OLLAMA_PROBE_EXPORTER_CONFIG", "NVML_STANDIN_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    paths = [str(NVML_STANDIN)] if gpu_standin else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(REPO)])
    env.update(extra)
    return env


def trusting(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx's `verify` for a client that trusts `ca_file` (or the system store)."""
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file else True


class ExporterProcess:
    """`python -m exporter` serving on a free port; stderr is kept; always stopped on exit."""

    def __init__(
        self,
        config: Path,
        *,
        listen: str = "127.0.0.1:0",
        web_config: Path | None = None,
        env: dict[str, str] | None = None,
        log_level: str = "info",
        ca_file: Path | None = None,
        auth: tuple[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={config}",
            f"--web.listen-address={listen}",
            f"--log.level={log_level}",
        ]
        if web_config is not None:
            args.append(f"--web.config.file={web_config}")
        args += extra_args
        self.config = config
        self.scheme = "https" if web_config is not None and ca_file is not None else "http"
        self.lines: list[str] = []
        self._port: int | None = None
        self._started = threading.Event()
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=env if env is not None else exporter_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.http = httpx.Client(timeout=10.0, verify=trusting(ca_file), auth=auth, trust_env=False)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.search(r"serving on \S+ \(port (\d+)\)", line)
            if found:
                self._port = int(found.group(1))
                self._started.set()
        self._started.set()  # the process ended: wake any waiter

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    @property
    def port(self) -> int:
        if not self._started.wait(20) or self._port is None:
            raise AssertionError(f"the exporter did not start serving:\n{self.stderr}")
        return self._port

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(self.url + path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> httpx.Response:
        return self.http.post(self.url + path, **kw)  # type: ignore[arg-type]

    def scrape(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200, response.status_code
        return response.text

    def samples(self) -> Samples:
        return parse_samples(self.scrape())

    def wait_ready(self, timeout: float = 20) -> None:
        wait_until(lambda: self.get("/-/ready").status_code == 200, timeout, "/-/ready")

    def text_when(self, check: Callable[[str], object], timeout: float, what: str) -> str:
        """Scrape until `check` holds on the raw exposition text; return that text."""

        def attempt() -> str | None:
            text = self.scrape()
            return text if check(text) else None

        return wait_until(attempt, timeout, what)

    def samples_when(
        self, check: Callable[[Samples], object], timeout: float, what: str
    ) -> Samples:
        """Scrape until `check` holds on the parsed samples; return those samples."""

        def attempt() -> Samples | None:
            samples = self.samples()
            return samples if check(samples) else None

        return wait_until(attempt, timeout, what)

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
