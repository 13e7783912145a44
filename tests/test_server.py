"""The HTTP side on its own: HttpServer on loopback with an App made of test fakes.

Every endpoint, its status codes and headers, gzip, HEAD, unknown paths, listen-address forms,
and the status page served as rendered (its content: test_status.py).
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from exporter.service import ReloadOutcome
from exporter.web.server import CONTENT_TYPE_METRICS, App, HttpServer, parse_listen_address

METRICS_TEXT = b'# HELP fake_metric A fake.\n# TYPE fake_metric gauge\nfake_metric{a="b"} 1.0\n'
STATUS_HTML = "<!doctype html><html><body>status page</body></html>\n"


@dataclass
class FakeApp:
    """Stand-ins for what the exporter wires into App, recording how they were called."""

    is_ready: bool = False
    reload_error: str | None = None
    reload_warnings: tuple[str, ...] = ()
    metrics_calls: list[bool] = field(default_factory=list)
    reloads: int = 0

    def metrics(self, gzipped: bool) -> tuple[bytes, ...]:
        """The text in three pieces, as the exposition sends its cached and live parts."""
        self.metrics_calls.append(gzipped)
        whole = gzip.compress(METRICS_TEXT) if gzipped else METRICS_TEXT
        third = len(whole) // 3
        return (whole[:third], whole[third : 2 * third], whole[2 * third :])

    def waiting_for(self) -> str | None:
        return None if self.is_ready else "the first probe of 1 job(s): t/m/p"

    def reload(self) -> ReloadOutcome:
        self.reloads += 1
        return ReloadOutcome(0.0, self.reload_error, self.reload_warnings)

    def app(self) -> App:
        return App(
            metrics=self.metrics,
            waiting_for=self.waiting_for,
            reload=self.reload,
            status_page=lambda: STATUS_HTML,
        )


@pytest.fixture(scope="module")
def shared_fake() -> FakeApp:
    return FakeApp()


@pytest.fixture
def fake(shared_fake: FakeApp) -> FakeApp:
    """The module server's fakes, reset for each test."""
    shared_fake.is_ready, shared_fake.reload_error, shared_fake.reloads = False, None, 0
    shared_fake.reload_warnings = ()
    shared_fake.metrics_calls.clear()
    return shared_fake


@pytest.fixture(scope="module")
def server(shared_fake: FakeApp) -> Iterator[HttpServer]:
    # One server for the module: stopping one waits up to its serve_forever poll (0.1 s).
    running = HttpServer("127.0.0.1:0", shared_fake.app()).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_client(server: HttpServer) -> Iterator[httpx.Client]:
    # Building an httpx.Client loads a TLS context; one for the module keeps tests fast.
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5.0) as http:
        yield http


@pytest.fixture
def client(shared_client: httpx.Client, fake: FakeApp) -> httpx.Client:
    return shared_client


def raw_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request without any client-side decoding: status, headers, body bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# --- endpoints --------------------------------------------------------------------------------


def test_metrics_plain(client: httpx.Client, fake: FakeApp) -> None:
    response = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == METRICS_TEXT
    assert response.headers["Content-Type"] == CONTENT_TYPE_METRICS
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "Content-Encoding" not in response.headers
    assert fake.metrics_calls == [False]


def test_metrics_gzip_round_trip(server: HttpServer, fake: FakeApp) -> None:
    status, headers, body = raw_request(server.port, "GET", "/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(body)
    assert body != METRICS_TEXT
    assert gzip.decompress(body) == METRICS_TEXT
    assert fake.metrics_calls == [True]


def test_metrics_gzip_with_a_prometheus_style_accept_header(
    client: httpx.Client, fake: FakeApp
) -> None:
    # Prometheus sends "Accept-Encoding: gzip"; httpx sends "gzip, deflate, br, zstd" or
    # similar and decodes transparently, so the text must come back intact either way.
    response = client.get("/metrics", headers={"Accept-Encoding": "gzip, deflate"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.content == METRICS_TEXT
    assert fake.metrics_calls == [True]


def test_metrics_accepts_a_query_string(client: httpx.Client) -> None:
    response = client.get("/metrics?name[]=fake_metric", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == METRICS_TEXT


def test_healthy(client: httpx.Client) -> None:
    response = client.get("/-/healthy")
    assert (response.status_code, response.text) == (200, "Healthy\n")
    assert response.headers["Content-Type"].startswith("text/plain")


def test_ready_follows_the_app(client: httpx.Client, fake: FakeApp) -> None:
    not_yet = client.get("/-/ready")
    assert not_yet.status_code == 503
    # The body says what start-up still waits for, as the app put it.
    assert not_yet.text == f"Not ready: waiting for {fake.waiting_for()}\n"
    fake.is_ready = True
    ready = client.get("/-/ready")
    assert (ready.status_code, ready.text) == (200, "Ready\n")


def test_reload_post_succeeds(client: httpx.Client, fake: FakeApp) -> None:
    response = client.post("/-/reload")
    assert (response.status_code, response.text) == (200, "Configuration reloaded\n")
    assert fake.reloads == 1


def test_reload_post_names_what_needs_a_restart(client: httpx.Client, fake: FakeApp) -> None:
    fake.reload_warnings = ("web.listen_address changed: it takes effect only at a restart",)
    response = client.post("/-/reload")
    assert response.status_code == 200
    assert response.text != "Configuration reloaded\n"  # not plain success
    assert f"warning: {fake.reload_warnings[0]}\n" in response.text


def test_reload_post_failure_is_500_with_the_error(client: httpx.Client, fake: FakeApp) -> None:
    fake.reload_error = "invalid configuration (1 problem(s)):\n  x.yaml: probe.timeout: bad"
    response = client.post("/-/reload")
    assert response.status_code == 500
    assert "previous configuration stays" in response.text
    assert "x.yaml: probe.timeout: bad" in response.text
    assert fake.reloads == 1


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reload_only_by_post(server: HttpServer, fake: FakeApp, method: str) -> None:
    status, headers, _ = raw_request(server.port, method, "/-/reload")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert fake.reloads == 0


def test_reload_post_with_a_body_keeps_the_connection_usable(
    client: httpx.Client, fake: FakeApp
) -> None:
    # The body must be read off the socket, or it would be parsed as the next request.
    first = client.post("/-/reload", content=b"x" * 10_000)
    second = client.get("/-/healthy")
    assert (first.status_code, second.status_code, second.text) == (200, 200, "Healthy\n")
    assert fake.reloads == 1


def test_status_page(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text == STATUS_HTML


@pytest.mark.parametrize("path", ["/nope", "/metrics/extra", "/-/", "/index.html"])
def test_unknown_paths_are_404(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(("path", "status"), [("/metrics", 405), ("/-/healthy", 405), ("/x", 404)])
def test_post_elsewhere_is_refused(
    client: httpx.Client, fake: FakeApp, path: str, status: int
) -> None:
    assert client.post(path).status_code == status
    assert fake.reloads == 0


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/metrics", CONTENT_TYPE_METRICS),
        ("/-/healthy", "text/plain; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
    ],
)
def test_head_has_the_headers_of_get_and_no_body(
    server: HttpServer, path: str, content_type: str
) -> None:
    get_status, _, get_body = raw_request(server.port, "GET", path)
    status, headers, body = raw_request(server.port, "HEAD", path)
    assert (status, get_status) == (200, 200)
    assert body == b""
    assert headers["Content-Type"] == content_type
    assert int(headers["Content-Length"]) == len(get_body) > 0


def test_head_of_an_unknown_path_is_404(server: HttpServer) -> None:
    status, _, body = raw_request(server.port, "HEAD", "/nope")
    assert (status, body) == (404, b"")


def test_stop_releases_the_port(fake: FakeApp) -> None:
    running = HttpServer("127.0.0.1:0", fake.app()).start()
    port = running.port
    running.stop()
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2.0)
        probe.connect(("127.0.0.1", port))


# --- listen addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":10434", ("0.0.0.0", 10434)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:9000", ("localhost", 9000)),
        ("[::1]:10434", ("::1", 10434)),
        ("[::]:80", ("::", 80)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["10434", "", "host:", "host:port", ":65536", ":-1", "[::1]"])
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid listen address"):
        parse_listen_address(text)


def test_serves_on_ipv6_loopback(fake: FakeApp) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    running = HttpServer("[::1]:0", fake.app()).start()
    try:
        response = httpx.get(f"http://[::1]:{running.port}/-/healthy", timeout=5.0)
        assert response.status_code == 200
    finally:
        running.stop()


def test_a_non_loopback_address_logs_a_warning(
    fake: FakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="exporter.web.server"):
        HttpServer("127.0.0.1:0", fake.app()).start().stop()
        assert caplog.records == []
        HttpServer("0.0.0.0:0", fake.app()).start().stop()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    message = caplog.records[0].getMessage()
    assert "0.0.0.0:0" in message and "without TLS" in message


# --- the status page --------------------------------------------------------------------------
# What the page shows is tested in test_status.py; here only that the server sends it as it is.

SCRIPT = "<script>alert('x')</script>"
