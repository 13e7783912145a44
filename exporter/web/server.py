"""The HTTP side: /metrics, /-/healthy, /-/ready, /-/reload (POST) and a status page at /.

Handlers only read prepared state: a scrape renders cached text and never waits for a probe.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from exporter.web.access import BasicAuth, WebAccessConfig, ssl_context

log = logging.getLogger(__name__)

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class App:
    """What the HTTP handlers need, injected so tests can pass their own."""

    metrics: Callable[[bool], Sequence[bytes]]  # gzipped? -> exposition text, in pieces
    waiting_for: Callable[[], str | None]  # None when ready, else what start-up waits for
    reload: Callable[[], Reloaded]
    status_page: Callable[[], str]


class Reloaded(Protocol):
    """What a reload reports: its error (None on success) and changes it could not apply."""

    @property
    def error(self) -> str | None: ...

    @property
    def warnings(self) -> Sequence[str]: ...


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if not self._authorised():
            return
        app = self.server.app
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            self._send(200, app.metrics(gzipped), CONTENT_TYPE_METRICS, gzipped)
        elif path == "/-/healthy":
            self._text(200, "Healthy\n")
        elif path == "/-/ready":
            waiting = app.waiting_for()
            if waiting is None:
                self._text(200, "Ready\n")
            else:
                self._text(503, f"Not ready: waiting for {waiting}\n")
        elif path == "/-/reload":
            self._text(405, "Only POST reloads the configuration\n", allow="POST")
        elif path == "/":
            self._send(200, (app.status_page().encode(),), "text/html; charset=utf-8")
        else:
            self._text(404, "Not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._drain_body()
        if not self._authorised():
            return
        if self.path.split("?", 1)[0] != "/-/reload":
            self._text(405 if self._known_path() else 404, "Not allowed\n", allow="GET")
            return
        outcome = self.server.app.reload()
        if outcome.error is not None:
            text = f"Reload failed, the previous configuration stays:\n{outcome.error}\n"
            self._text(500, text)
        elif outcome.warnings:
            notes = "".join(f"warning: {w}\n" for w in outcome.warnings)
            self._text(200, f"Configuration reloaded, except what needs a restart:\n{notes}")
        else:
            self._text(200, "Configuration reloaded\n")

    def _authorised(self) -> bool:
        if self.server.auth.allows(self.headers.get("Authorization")):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="ollama-probe-exporter"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _known_path(self) -> bool:
        return self.path.split("?", 1)[0] in {"/metrics", "/-/healthy", "/-/ready", "/"}

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))

    def _text(self, status: int, text: str, allow: str | None = None) -> None:
        self._send(status, (text.encode(),), "text/plain; charset=utf-8", allow=allow)

    def _send(
        self,
        status: int,
        body: Sequence[bytes],
        content_type: str,
        gzipped: bool = False,
        allow: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(map(len, body))))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            # Piece by piece: the cached text is megabytes, and joining would copy it.
            for piece in body:
                self.wfile.write(piece)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App, web: WebAccessConfig) -> None:
        self.app = app
        self.auth = BasicAuth(web.basic_auth_users)
        self.tls = ssl_context(web)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body are separate writes; with Nagle on, the body waits for the
        # client's delayed ACK (up to 40 ms) on every scrape.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake runs here, in the connection's own thread, so a slow or hostile
        # client cannot stall the accept loop.
        if self.tls is not None:
            request.settimeout(10)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
            request.settimeout(None)
        super().finish_request(request, client_address)


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


def exposure_warning(host: str, web: WebAccessConfig) -> str | None:
    """What a listener beyond loopback exposes with this web config, or None when guarded."""
    if is_loopback(host):
        return None
    tls = web.tls_server_config
    if tls is not None and tls.client_auth_type == "RequireAndVerifyClientCert":
        return None  # client certificates authenticate every connection
    if web.basic_auth_users:
        if tls is not None:
            return None
        return "with basic auth but without TLS: passwords cross the network in clear text"
    how = "with TLS but without authentication" if tls else "without TLS or authentication"
    return f"{how}: anyone who can reach this port can read /metrics and POST /-/reload"


class HttpServer:
    """A threaded HTTP(S) server running in the background."""

    def __init__(self, address: str, app: App, web: WebAccessConfig | None = None) -> None:
        host, port = parse_listen_address(address)
        web = web or WebAccessConfig()
        self._server = _Server((host, port), app, web)
        # A short poll interval keeps shutdown (SIGTERM must exit within 2 s) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="http", daemon=True
        )
        exposure = exposure_warning(host, web)
        if exposure:
            log.warning("listening on %s %s (see --web.config.file)", address, exposure)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
