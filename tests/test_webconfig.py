"""`--web.config.file`: passwords that are not bcrypt hashes, and the exposure warning's words.

A plain password where its hash belongs used to load fine and then fail every request with 401,
with nothing logged; it is now rejected at load, naming the file and the user, never the
password. The warning for a listener beyond loopback says what is exposed in each case.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import bcrypt
import pytest

from exporter.service import ReloadOutcome
from exporter.validation import ConfigError
from exporter.web.access import TlsServerConfig, WebAccessConfig, load_web_config
from exporter.web.server import App, HttpServer, exposure_warning

PASSWORD = "correct horse 8c1f"


def hashed(prefix: str = "$2b$") -> str:
    value = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + value[4:]


def write_web(tmp_path: Path, users: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n" + textwrap.indent(users, "  "), encoding="utf-8")
    return path


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_a_bcrypt_hash_is_accepted(tmp_path: Path, prefix: str) -> None:
    value = hashed(prefix)
    config = load_web_config(write_web(tmp_path, f"alice: '{value}'\n"))
    assert config.basic_auth_users == {"alice": value}


NOT_HASHES = {
    "the password itself": PASSWORD,
    "a SHA-256 hex digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "an MD5-crypt hash": "$1$8c1f$XnB3Ku3PO8W.JXtp4v5C41",
    "a truncated bcrypt hash": hashed()[:-1],
    "an empty string": "",
}


@pytest.mark.parametrize("value", list(NOT_HASHES.values()), ids=list(NOT_HASHES))
def test_a_password_that_is_not_a_bcrypt_hash_is_rejected_naming_the_user(
    tmp_path: Path, value: str
) -> None:
    path = write_web(tmp_path, f"alice: '{hashed()}'\nbob: '{value}'\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.source == str(path)
    (problem,) = caught.value.problems
    assert problem.startswith("basic_auth_users.bob: the password (not shown) is not a bcrypt")
    assert "htpasswd -nBC 10 bob" in problem
    if value:
        assert value not in str(caught.value)


def test_a_password_of_the_wrong_type_is_not_shown(tmp_path: Path) -> None:
    path = write_web(tmp_path, "bob: 918273645546\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.problems == [
        "basic_auth_users.bob: the value (not shown) is not a string",
    ]


def test_every_problem_of_a_web_config_file_is_listed(tmp_path: Path) -> None:
    path = write_web(tmp_path, f"bob: '{PASSWORD}'\n")
    path.write_text(path.read_text() + "tls_server_config: {cert_fil: a.crt}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.problems == [
        "tls_server_config.cert_file: is required but not set",
        "tls_server_config.key_file: is required but not set",
        "tls_server_config: unknown key 'cert_fil', did you mean 'cert_file'?",
        "basic_auth_users.bob: the password (not shown) is not a bcrypt hash: write the hash, "
        "such as the part after the colon of `htpasswd -nBC 10 bob`",
    ]


# --- what a listener beyond loopback exposes --------------------------------------------------

TLS = TlsServerConfig(cert_file="server.crt", key_file="server.key")
MUTUAL_TLS = TlsServerConfig(
    cert_file="server.crt", key_file="server.key", client_auth_type="RequireAndVerifyClientCert"
)
USERS = {"alice": "$2b$04$" + "a" * 53}

EXPOSURES = [
    (WebAccessConfig(), "without TLS or authentication: anyone who can reach this port can read "
     "/metrics and POST /-/reload"),
    (WebAccessConfig(basic_auth_users=USERS), "with basic auth but without TLS: passwords cross "
     "the network in clear text"),
    (WebAccessConfig(tls_server_config=TLS), "with TLS but without authentication: anyone who "
     "can reach this port can read /metrics and POST /-/reload"),
    (WebAccessConfig(tls_server_config=TLS, basic_auth_users=USERS), None),
    (WebAccessConfig(tls_server_config=MUTUAL_TLS), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("web", "expected"),
    EXPOSURES,
    ids=["nothing", "basic auth only", "TLS only", "TLS and basic auth", "client certificates"],
)
def test_the_exposure_warning_names_what_is_exposed(
    web: WebAccessConfig, expected: str | None
) -> None:
    assert exposure_warning("0.0.0.0", web) == expected
    assert exposure_warning("127.0.0.1", web) is None
    assert exposure_warning("::1", web) is None


def test_basic_auth_without_tls_beyond_loopback_logs_the_clear_text_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(
        metrics=lambda _: (b"",),
        waiting_for=lambda: None,
        reload=lambda: ReloadOutcome(0.0),
        status_page=str,
    )
    with caplog.at_level(logging.WARNING, logger="exporter.web.server"):
        HttpServer("0.0.0.0:0", app, WebAccessConfig(basic_auth_users=USERS)).start().stop()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("listening on 0.0.0.0:0 with basic auth but without TLS")
    assert "clear text" in message and "anyone" not in message


def test_the_documented_example_users_pass(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = docs.split("## The web config file", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    users = example.split("basic_auth_users:\n", 1)[1]
    config = load_web_config(write_web(tmp_path, textwrap.dedent(users)))
    (hashed_password,) = config.basic_auth_users.values()
    assert bcrypt.checkpw(b"correct horse battery staple", hashed_password.encode())
