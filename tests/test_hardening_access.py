"""Issue 7: access control over real TLS on loopback, and secrets that never leak.

The real exporter runs with `--web.config.file` (exporter-toolkit format: TLS cert/key and
bcrypt basic-auth users) and every endpoint is tried without credentials, with wrong ones and
with the right ones; plain HTTP to the TLS port and malformed Authorization headers must fail
without hurting the server. Bad web config files exit 2 naming the file. Without a web config,
a non-loopback bind logs a warning. Target header secrets (from ${ENV}) must stay out of the
logs, the status page, /metrics and reload errors, whatever fails.
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import httpx
import pytest

from exporter.cli import main
from exporter.service import ReloadOutcome
from exporter.web.access import load_web_config
from exporter.web.server import App, HttpServer
from tests.exporter_process import (
    REPO,
    ExporterProcess,
    exporter_env,
    trusting,
    wait_until,
)
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.test_hardening_support import (
    Pki,
    closed_port,
    failures,
    job,
    make_pki,
    successes,
)

USERS = {"alice": "correct horse", "bob": "battery staple"}


def bcrypt_hash(password: str, prefix: str = "$2b$") -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + hashed[4:]  # htpasswd and the exporter-toolkit docs write $2y$


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def probe_config(path: Path, url: str, extra: str = "") -> Path:
    return write(
        path,
        f"""\
        targets: [{{name: local, url: "{url}"{extra}}}]
        prompts: [{{id: liveness, text: "Why avocados?", interval: 1500ms}}]
        probe: {{timeout: 1s, health_interval: 300ms, inventory_interval: 1s,
                 concurrency_per_target: 4, max_duty_cycle: 1}}
        gpu: {{enabled: false}}
        """,
    )


def web_config(directory: Path, pki: Pki, tls: bool = True, auth: bool = True) -> Path:
    text = ""
    if tls:
        text += (
            f"tls_server_config:\n  cert_file: {pki.server_cert.name}\n"
            f"  key_file: {pki.server_key.name}\n"
        )
    if auth:
        text += (
            f"basic_auth_users:\n  alice: '{bcrypt_hash(USERS['alice'])}'\n"
            f"  bob: '{bcrypt_hash(USERS['bob'], '$2y$')}'\n"
        )
    return write(directory / "web.yml", text)


@dataclass
class Secured:
    exporter: ExporterProcess
    pki: Pki


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("access")
    pki = make_pki(tmp)
    with OllamaDouble([ModelScript("ok:1b")]) as double:
        config = probe_config(tmp / "config.yaml", double.url)
        exporter = ExporterProcess(config, web_config=web_config(tmp, pki), ca_file=pki.ca_file)
        try:
            alice = {"Authorization": basic("alice", USERS["alice"])}
            wait_until(
                lambda: exporter.get("/-/ready", headers=alice).status_code == 200,
                20,
                "/-/ready with credentials",
            )
            yield Secured(exporter, pki)
        finally:
            exporter.close()


ENDPOINTS = [
    ("GET", "/metrics", 200),
    ("HEAD", "/metrics", 200),
    ("GET", "/", 200),
    ("GET", "/-/healthy", 200),
    ("GET", "/-/ready", 200),
    ("POST", "/-/reload", 200),
    ("GET", "/-/reload", 405),
    ("PUT", "/-/reload", 501),
    ("GET", "/no-such-page", 404),
]
CREDENTIALS = {
    "none": None,
    "wrong password": basic("alice", "correct horse!"),
    "unknown user": basic("mallory", USERS["alice"]),
    "empty password": basic("alice", ""),
    "not base64": "Basic !!!not-base64!!!",
    "no colon": "Basic " + base64.b64encode(b"alice").decode(),
    "bearer": f"Bearer {USERS['alice']}",
    "non-ASCII password": basic("alice", "zażółć gęślą"),
}


@pytest.mark.parametrize(("method", "path", "status"), ENDPOINTS)
@pytest.mark.parametrize("case", CREDENTIALS)
def test_every_endpoint_refuses_missing_or_wrong_credentials(
    secured: Secured, method: str, path: str, status: int, case: str
) -> None:
    header = CREDENTIALS[case]
    headers = {} if header is None else {"Authorization": header}
    response = secured.exporter.http.request(method, secured.exporter.url + path, headers=headers)
    if status == 501:  # no handler for the method at all: the stdlib answers before auth
        assert response.status_code == 501
        return
    assert response.status_code == 401, (case, response.status_code, response.text)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.content == b""


@pytest.mark.parametrize(("method", "path", "status"), ENDPOINTS)
@pytest.mark.parametrize("user", sorted(USERS))
def test_every_endpoint_answers_the_right_credentials(
    secured: Secured, method: str, path: str, status: int, user: str
) -> None:
    """alice has a $2b$ hash, bob the $2y$ form htpasswd writes: both are accepted."""
    headers = {"Authorization": basic(user, USERS[user])}
    response = secured.exporter.http.request(method, secured.exporter.url + path, headers=headers)
    assert response.status_code == status, response.text
    if path == "/-/reload" and method == "GET":
        assert response.headers["Allow"] == "POST"


def test_plain_http_to_the_tls_port_fails_and_the_server_keeps_serving(secured: Secured) -> None:
    plain = f"http://127.0.0.1:{secured.exporter.port}/metrics"
    with httpx.Client(trust_env=False, timeout=5) as client, pytest.raises(httpx.TransportError):
        client.get(plain, headers={"Authorization": basic("alice", USERS["alice"])})
    # A client that does not trust the exporter's CA cannot talk to it either.
    with (
        httpx.Client(trust_env=False, timeout=5) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(secured.exporter.url + "/metrics")
    ok = secured.exporter.get("/metrics", headers={"Authorization": basic("alice", USERS["alice"])})
    assert ok.status_code == 200 and "ollama_up" in ok.text


def test_a_handshake_that_never_starts_does_not_block_other_clients(secured: Secured) -> None:
    with socket.create_connection(("127.0.0.1", secured.exporter.port), timeout=5):
        # This connection sends nothing; the accept loop must still serve others.
        ok = secured.exporter.get(
            "/-/healthy", headers={"Authorization": basic("bob", USERS["bob"])}
        )
    assert ok.status_code == 200


def test_client_certificates_are_required_when_configured(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    client_leaf = pki.ca.issue_cert("scraper@example.test")
    client_cert, client_key = tmp_path / "client.crt", tmp_path / "client.key"
    client_leaf.cert_chain_pems[0].write_to_path(str(client_cert))
    client_leaf.private_key_pem.write_to_path(str(client_key))
    web = write(
        tmp_path / "mtls.yml",
        f"""\
        tls_server_config:
          cert_file: {pki.server_cert.name}
          key_file: {pki.server_key.name}
          client_ca_file: {pki.ca_file.name}
          client_auth_type: RequireAndVerifyClientCert
        """,
    )
    app = App(
        metrics=lambda gzipped: (gzip.compress(b"up 1\n") if gzipped else b"up 1\n",),
        waiting_for=lambda: None,
        reload=lambda: ReloadOutcome(0.0),
        status_page=lambda: "<p>ok</p>",
    )
    server = HttpServer("127.0.0.1:0", app, load_web_config(web)).start()
    try:
        url = f"https://127.0.0.1:{server.port}/metrics"
        with (
            httpx.Client(verify=trusting(pki.ca_file), trust_env=False, timeout=5) as client,
            pytest.raises(httpx.TransportError),
        ):
            client.get(url)
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        context.load_cert_chain(str(client_cert), str(client_key))
        with httpx.Client(verify=context, trust_env=False, timeout=5) as client:
            assert client.get(url).text == "up 1\n"
        # A client certificate from another CA is refused too.
        stranger = make_pki(tmp_path / "other").ca.issue_cert("stranger@example.test")
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        stranger.configure_cert(context)
        with (
            httpx.Client(verify=context, trust_env=False, timeout=5) as client,
            pytest.raises(httpx.TransportError),
        ):
            client.get(url)
    finally:
        server.stop()


# --- bad web config files ---------------------------------------------------------------------


@dataclass(frozen=True)
class BadWeb:
    name: str
    text: str
    expect: str  # in the error message


BAD_WEB_CONFIGS = [
    BadWeb("unknown top-level key", "http_server_config: {http2: true}\n", "unknown key"),
    BadWeb(
        "unknown TLS key",
        "tls_server_config: {cert_file: server.crt, key_file: server.key, min_version: TLS13}\n",
        "tls_server_config: unknown key 'min_version'",
    ),
    BadWeb(
        "missing certificate",
        "tls_server_config: {cert_file: missing.crt, key_file: server.key}\n",
        "missing.crt",
    ),
    BadWeb(
        "missing key",
        "tls_server_config: {cert_file: server.crt, key_file: missing.key}\n",
        "missing.key",
    ),
    BadWeb(
        "key of another certificate",
        "tls_server_config: {cert_file: server.crt, key_file: other.key}\n",
        "tls_server_config",
    ),
    BadWeb(
        "unsupported client_auth_type",
        "tls_server_config: {cert_file: server.crt, key_file: server.key,"
        " client_auth_type: RequireAnyClientCert}\n",
        "client_auth_type",
    ),
    BadWeb("users as a list", "basic_auth_users: [alice]\n", "basic_auth_users"),
    BadWeb("not YAML", "tls_server_config: {cert_file: [\n", "not valid YAML"),
]


@pytest.mark.parametrize("bad", BAD_WEB_CONFIGS, ids=[b.name for b in BAD_WEB_CONFIGS])
def test_a_bad_web_config_file_exits_2_naming_the_file(
    tmp_path: Path, bad: BadWeb, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki(tmp_path)
    other = pki.ca.issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    web = write(tmp_path / "web.yml", bad.text)
    config = probe_config(tmp_path / "config.yaml", f"http://127.0.0.1:{closed_port()}")
    # The CLI's own entry point, in-process: the web config is loaded before anything serves.
    status = main(
        [f"--config.file={config}", f"--web.config.file={web}", "--web.listen-address=127.0.0.1:0"]
    )
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert bad.expect in stderr
    # The file to fix is named: the missing one, else the web config file itself.
    named = {"missing certificate": "missing.crt", "missing key": "missing.key"}
    assert named.get(bad.name, "web.yml") in stderr, stderr


# --- where it listens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "secure", "warned"),
    [("0.0.0.0:0", False, True), ("0.0.0.0:0", True, False)],
    ids=["any address, no web config", "any address, TLS and auth"],
)
def test_a_non_loopback_bind_without_tls_logs_a_warning(
    tmp_path: Path, listen: str, secure: bool, warned: bool
) -> None:
    pki = make_pki(tmp_path)
    config = probe_config(tmp_path / "config.yaml", f"http://127.0.0.1:{closed_port()}")
    web = web_config(tmp_path, pki) if secure else None
    with ExporterProcess(
        config,
        listen=listen,
        web_config=web,
        ca_file=pki.ca_file if secure else None,
        auth=("alice", USERS["alice"]) if secure else None,
    ) as exporter:
        # Only ever reached through loopback, whatever the bind address.
        assert exporter.get("/-/healthy").status_code == 200
        stderr = exporter.stderr
    warnings = [line for line in stderr.splitlines() if "without TLS" in line]
    assert bool(warnings) is warned, stderr
    if warned:
        assert "WARNING" in warnings[0] and listen in warnings[0]
        assert "POST /-/reload" in warnings[0]


# --- secrets ----------------------------------------------------------------------------------


def secret_config(path: Path, url: str) -> Path:
    return probe_config(
        path,
        url,
        ', headers: {Authorization: "Bearer ${PROBE_SECRET}", X-Probe-Token: "${PROBE_SECRET}"}',
    )


@dataclass
class Exposure:
    """Everywhere the exporter writes text a person or a scraper can read."""

    stderr: str
    status_page: str
    metrics: str
    reload_error: str = ""

    def leaks(self, secret: str) -> list[str]:
        return [name for name, text in vars(self).items() if secret in text]


def test_target_header_secrets_never_leak_whatever_fails(tmp_path: Path) -> None:
    secret = "tok-" + secrets.token_hex(16)
    scripts = [
        ModelScript("ok:1b"),
        ModelScript("missing:1b", fault=Fault.NOT_FOUND),
        ModelScript("crash:1b", fault=Fault.STATUS_500),
        ModelScript("proxy404:1b", fault=Fault.OTHER_404),
        ModelScript("garbage:1b", fault=Fault.GARBAGE_LINE),
    ]
    double = OllamaDouble(scripts).start()
    config = secret_config(tmp_path / "config.yaml", double.url)
    exporter = ExporterProcess(config, env=exporter_env(PROBE_SECRET=secret), log_level="debug")
    try:
        exporter.samples_when(
            lambda s: (
                successes(s, **job("local", "ok:1b"))
                and failures(s, "model_not_found", **job("local", "missing:1b"))
                and failures(s, "http_status", **job("local", "crash:1b"))
                and failures(s, "http_status", **job("local", "proxy404:1b"))
                and failures(s, "invalid_response", **job("local", "garbage:1b"))
            ),
            20,
            "a success and every kind of HTTP failure",
        )
        # The secret really was in play: the target received it on every endpoint.
        bearer = f"Bearer {secret}"
        sent = {r.path for r in double.requests() if r.headers.get("authorization") == bearer}
        assert {"/api/version", "/api/tags", "/api/ps", "/api/chat"} <= sent
        assert all(r.headers.get("x-probe-token") == secret for r in double.requests())

        double.fail_endpoint("/api/tags", 500)
        double.fail_endpoint("/api/ps", 503)
        listings = len(double.requests("/api/tags"))
        wait_until(lambda: len(double.requests("/api/tags")) > listings, 10, "a failed listing")
        double.stop()
        exporter.samples_when(
            lambda s: failures(s, "connect", **job("local", "ok:1b")),
            10,
            "connect failures once the target is gone",
        )
        # A bad reload: the new file keeps the secret reference and breaks elsewhere.
        config.write_text(
            config.read_text(encoding="utf-8").replace("timeout: 1s", "timeout: soon")
            + "unknown_key: ${PROBE_SECRET}\n",
            encoding="utf-8",
        )
        reply = exporter.post("/-/reload")
        assert reply.status_code == 500
        exporter.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: exporter.stderr.count("reload failed") >= 2, 10, "two failed reloads logged"
        )
        exposure = Exposure(
            stderr=exporter.stderr,
            status_page=exporter.get("/").text,
            metrics=exporter.scrape(),
            reload_error=reply.text,
        )
    finally:
        exporter.close()
        double.stop()
    assert exposure.leaks(secret) == []
    assert "probe failed" in exposure.stderr and "health check failed" in exposure.stderr
    assert "reload failed" in exposure.stderr
    assert "without TLS" not in exposure.stderr  # loopback: no warning


def test_a_header_secret_with_a_control_character_does_not_leak(tmp_path: Path) -> None:
    """An env file with CRLF line ends gives a value ending in \\r: the exporter must reject it
    or keep it hidden, not print it in the error of every request."""
    secret = "tok-" + secrets.token_hex(16)
    with OllamaDouble([ModelScript("ok:1b")]) as double:
        config = secret_config(tmp_path / "config.yaml", double.url)
        exporter = ExporterProcess(config, env=exporter_env(PROBE_SECRET=secret + "\r"))
        try:
            # Rejected at load (exit 2), or every request to the target fails.
            wait_until(
                lambda: (
                    exporter.proc.poll() is not None or "health check failed" in exporter.stderr
                ),
                15,
                "a config error, or a failed health check",
            )
            exposure = Exposure(stderr=exporter.stderr, status_page="", metrics="")
            if exporter.proc.poll() is None:
                exposure.status_page = exporter.get("/").text
                exposure.metrics = exporter.scrape()
        finally:
            exporter.close()
    assert exposure.leaks(secret) == [], exposure.stderr[-2000:]


class EchoingTarget(BaseHTTPRequestHandler):
    """An Ollama-like server (or a proxy in front of one) that quotes the credential it
    rejects in its error body, as some auth proxies do."""

    protocol_version = "HTTP/1.1"

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        replies: dict[str, object] = {
            "/api/version": {"version": "0.32.15"},
            "/api/tags": {"models": [{"name": "ok:1b", "capabilities": ["completion"]}]},
            "/api/ps": {"models": []},
        }
        self._json(200, replies.get(self.path.split("?")[0], {}))

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = self.headers.get("Authorization", "")
        self._json(401, {"error": f"invalid credentials: {token!r} is not allowed"})

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_a_target_quoting_the_token_back_does_not_make_the_exporter_leak_it(
    tmp_path: Path,
) -> None:
    secret = "tok-" + secrets.token_hex(16)
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingTarget)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        config = secret_config(tmp_path / "config.yaml", url)
        with ExporterProcess(config, env=exporter_env(PROBE_SECRET=secret)) as exporter:
            exporter.samples_when(
                lambda s: failures(s, "http_status", **job("local", "ok:1b")),
                15,
                "the 401 probe failure",
            )
            exposure = Exposure(
                stderr=exporter.stderr,
                status_page=exporter.get("/").text,
                metrics=exporter.scrape(),
            )
    finally:
        server.shutdown()
        server.server_close()
    assert "HTTP 401" in exposure.status_page  # the failure itself is shown
    assert exposure.leaks(secret) == []


def test_a_config_error_does_not_echo_credentials_in_a_target_url(tmp_path: Path) -> None:
    password = "pw-" + secrets.token_hex(12)
    config = write(
        tmp_path / "config.yaml",
        f"""\
        targets: [{{name: local, url: "http://probe:{password}@127.0.0.1:99999"}}]
        prompts: [{{id: liveness, text: hi}}]
        """,
    )
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={config}"],
        cwd=REPO,
        env=exporter_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "targets[0].url" in result.stderr
    assert password not in result.stderr + result.stdout
