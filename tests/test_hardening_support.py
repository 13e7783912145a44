"""Shared rig of the hardening tests (issue 7), and tests of the rig itself.

The other test_hardening_* modules import from here: a TLS-terminating proxy in front of the
Ollama double whose certificate can be swapped at run time, the double in its own process,
certificates made with trustme, and the checks every fault test ends with: counters and
histograms never go down and never vanish. The few tests at the bottom prove that those checks
can fail. The exporter subprocess itself (optionally behind TLS and basic auth) and the
exposition helpers live in tests/exporter_process.py, shared with tests/test_cli.py.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import trustme
from prometheus_client.parser import text_string_to_metric_families

from tests.exporter_process import REPO, Samples, exporter_env, parse_samples, value
from tests.fakes.ollama_double import OllamaDouble

# --- ports -----------------------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the exposition --------------------------------------------------------------------------


def cumulative(text: str) -> Samples:
    """Only the samples that must never go down: counters and histograms (all their parts)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        if family.type not in {"counter", "histogram"}:
            continue
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def monotonic_problems(
    before: Samples, after: Samples, keep: Callable[[Mapping[str, str]], bool] = lambda _: True
) -> list[str]:
    """Every kept series of `before` must still be in `after`, with a value at least as high."""
    problems = []
    for (name, labels), old in sorted(before.items(), key=lambda item: repr(item[0])):
        if not keep(dict(labels)):
            continue
        new = after.get((name, labels))
        shown = f"{name}{dict(sorted(labels))}"
        if new is None:
            problems.append(f"vanished: {shown} (was {old})")
        elif new < old:
            problems.append(f"went down: {shown} {old} -> {new}")
    return problems


def assert_monotonic(
    before: Samples, after: Samples, keep: Callable[[Mapping[str, str]], bool] = lambda _: True
) -> None:
    problems = monotonic_problems(before, after, keep)
    assert not problems, "\n".join(problems[:20])


# --- a probe job's series --------------------------------------------------------------------


def job(target: str, model: str, prompt: str = "liveness") -> dict[str, str]:
    return {"target": target, "model": model, "prompt": prompt}


def probes_done(samples: Samples, **labels: str) -> float:
    return value(samples, "ollama_probes_total", **labels) or 0.0


def successes(samples: Samples, **labels: str) -> float:
    return value(samples, "ollama_probe_duration_seconds_count", **labels) or 0.0


def failures(samples: Samples, reason: str, **labels: str) -> float:
    return value(samples, "ollama_probe_failures_total", **labels, reason=reason) or 0.0


# --- a double in its own process -------------------------------------------------------------

_DOUBLE_MAIN = """
import json, sys
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
spec = json.loads(sys.argv[1])
models = [ModelScript(**{**m, "fault": Fault(m.get("fault", "none"))}) for m in spec["models"]]
double = OllamaDouble(models, trickle_interval=spec["trickle_interval"]).start()
print(double.port, flush=True)
sys.stdin.read()
double.stop()
"""


class DoubleProcess:
    """The Ollama double in a child process, so a load test's client threads cannot starve it
    of the GIL. Models are given as ModelScript keyword arguments (fault by its value)."""

    def __init__(self, models: list[dict[str, object]], trickle_interval: float = 1.0) -> None:
        spec = json.dumps({"models": models, "trickle_interval": trickle_interval})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _DOUBLE_MAIN, spec],
            cwd=REPO,
            env=exporter_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise AssertionError(f"the double did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line)}"

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> DoubleProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- certificates and TLS --------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A private CA and files made from it, for loopback TLS."""

    ca: trustme.CA
    ca_file: Path
    server_cert: Path  # leaf for 127.0.0.1 and localhost, chain included
    server_key: Path

    def server_context(self, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (cert or self.ca.issue_cert("127.0.0.1", "localhost")).configure_cert(context)
        return context


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert, key = directory / "ca.pem", directory / "server.crt", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    with cert.open("wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(key))
    return Pki(ca, ca_file, cert, key)


def self_signed_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context presenting a self-signed certificate (a CA root serving as a leaf)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with contextlib.ExitStack() as stack:
        cert = stack.enter_context(ca.cert_pem.tempfile())
        key = stack.enter_context(ca.private_key_pem.tempfile())
        context.load_cert_chain(cert, key)
    return context


class TlsProxy:
    """Terminates TLS on a loopback port and relays the plain bytes to an upstream port.

    `context` may be replaced at any time: later connections present the new certificate
    (a rotation). One thread per connection, relaying with select(); stop() closes everything.
    """

    def __init__(self, upstream_port: int, context: ssl.SSLContext) -> None:
        self.context = context
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="tls-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _relay(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        self._track(conn)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        self._track(tls)
        try:
            upstream = socket.create_connection(("127.0.0.1", self._upstream), timeout=5)
        except OSError:
            tls.close()
            return
        self._track(upstream)
        tls.settimeout(None)
        upstream.settimeout(None)
        with tls, upstream:
            self._pump(tls, upstream)

    def _pump(self, tls: ssl.SSLSocket, upstream: socket.socket) -> None:
        while not self._stopping.is_set():
            ready: list[socket.socket] = [tls] if tls.pending() else []
            if not ready:
                ready, _, _ = select.select([tls, upstream], [], [], 0.1)
            for sock in ready:
                try:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is tls else tls).sendall(data)
                except (OSError, ssl.SSLError):
                    return

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(2)


# --- tests of the rig itself -----------------------------------------------------------------


def test_monotonic_check_catches_a_reset_and_a_vanished_series() -> None:
    before = parse_samples(
        '# TYPE a_total counter\na_total{x="1"} 5\na_total{x="2"} 3\n'
        '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1.5\n'
    )
    reset = parse_samples(
        '# TYPE a_total counter\na_total{x="1"} 0\n'
        '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\nh_sum 1.5\n'
    )
    problems = monotonic_problems(before, reset)
    assert any(p.startswith("went down: a_total") for p in problems)
    assert any(p.startswith("vanished: a_total") and "'2'" in p for p in problems)
    assert monotonic_problems(before, before) == []
    assert monotonic_problems(before, reset, keep=lambda labels: "x" not in labels) == []


def test_cumulative_keeps_counters_and_histograms_only() -> None:
    text = (
        "# TYPE g gauge\ng 1\n# TYPE c_total counter\nc_total 2\n"
        '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 0.5\n'
    )
    assert sorted(name for name, _ in cumulative(text)) == [
        "c_total",
        "h_bucket",
        "h_count",
        "h_sum",
    ]


@contextlib.contextmanager
def running(*doubles: OllamaDouble) -> Iterator[None]:
    """Start doubles and always stop them."""
    try:
        for double in doubles:
            double.start()
        yield
    finally:
        for double in doubles:
            double.stop()
