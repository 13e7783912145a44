"""The HTTP side: /metrics, /-/healthy, /-/ready, /-/reload (POST) and a status page at /.

Handlers only read prepared state: a scrape renders cached text and never waits for a probe.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class App:
    """What the HTTP handlers need, injected so tests can pass their own."""

    metrics: Callable[[bool], bytes]  # gzipped? -> exposition text
    ready: Callable[[], bool]
    reload: Callable[[], str | None]  # None on success, else the error text
    status_page: Callable[[], str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            self._send(200, app.metrics(gzipped), CONTENT_TYPE_METRICS, gzipped)
        elif path == "/-/healthy":
            self._text(200, "Healthy\n")
        elif path == "/-/ready":
            ok = app.ready()
            self._text(200 if ok else 503, "Ready\n" if ok else "Not ready: first probes running\n")
        elif path == "/-/reload":
            self._text(405, "Only POST reloads the configuration\n", allow="POST")
        elif path == "/":
            self._send(200, app.status_page().encode(), "text/html; charset=utf-8")
        else:
            self._text(404, "Not found\n")

    def do_POST(self) -> None:
        self._drain_body()
        if self.path.split("?", 1)[0] != "/-/reload":
            self._text(405 if self._known_path() else 404, "Not allowed\n", allow="GET")
            return
        error = self.server.app.reload()
        if error is None:
            self._text(200, "Configuration reloaded\n")
        else:
            self._text(500, f"Reload failed, the previous configuration stays:\n{error}\n")

    def _known_path(self) -> bool:
        return self.path.split("?", 1)[0] in {"/metrics", "/-/healthy", "/-/ready", "/"}

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))

    def _text(self, status: int, text: str, allow: str | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", allow=allow)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        gzipped: bool = False,
        allow: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        if ":" in address[0]:
            self.address_family = __import__("socket").AF_INET6
        super().__init__(address, _Handler)


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ":10434", "127.0.0.1:0" or "[::1]:10434" into host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid listen address {text!r}: use HOST:PORT or :PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpServer:
    """A threaded HTTP server running in the background."""

    def __init__(self, address: str, app: App) -> None:
        host, port = parse_listen_address(address)
        self._server = _Server((host, port), app)
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        if not is_loopback(host):
            log.warning(
                "listening on %s without TLS or authentication: anyone who can reach "
                "this port can read /metrics and POST /-/reload",
                address,
            )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
