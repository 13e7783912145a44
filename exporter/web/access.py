"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit file format.

Supported keys (others are rejected, so a setting is never silently ignored):

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_ca_file: ca.crt            # optional
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default)
    basic_auth_users:
      alice: $2y$10$...                 # bcrypt hashes (a plain password is rejected)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import ssl
import threading
from pathlib import Path
from typing import Any, Literal

import bcrypt
from pydantic import ValidationError

from exporter.validation import (
    INVALID,
    ConfigError,
    Schema,
    StrictModel,
    at,
    field_value,
    problems_of,
    read_yaml,
)


class TlsServerConfig(StrictModel):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: Literal["NoClientCert", "RequireAndVerifyClientCert"] = "NoClientCert"


class WebAccessConfig(StrictModel):
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = {}


# The users' values are password hashes, or by mistake the passwords: never shown in errors.
SCHEMA = Schema(WebAccessConfig, secret_keys=frozenset({"basic_auth_users"}))
# $2a$, $2b$ and $2y$ (htpasswd's) with a cost of 04-31, then 22 salt and 31 hash characters.
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def load_web_config(path: str | Path) -> WebAccessConfig:
    """Load and validate a web config file; paths inside it are relative to the file."""
    source = str(path)
    data = read_yaml(path) or {}
    config: WebAccessConfig | None = None
    try:
        config = WebAccessConfig.model_validate(data)
        problems = []
    except ValidationError as exc:
        problems = problems_of(exc, SCHEMA)
    if isinstance(data, dict):
        problems += _password_problems(data)
    if problems or config is None:
        raise ConfigError(source, problems)
    tls = config.tls_server_config
    if tls is not None:
        base = Path(path).parent
        config = config.model_copy(
            update={
                "tls_server_config": tls.model_copy(
                    update={
                        name: str(base / value)
                        for name in ("cert_file", "key_file", "client_ca_file")
                        if (value := getattr(tls, name)) is not None
                    }
                )
            }
        )
        _check_tls(source, config)
    return config


def _password_problems(data: dict[Any, Any]) -> list[str]:
    """A plain password in place of its hash would make every request fail with 401, unlogged."""
    users = field_value(WebAccessConfig, "basic_auth_users", data)
    if users is INVALID:
        return []
    return [
        at(
            ["basic_auth_users", user],
            "the password (not shown) is not a bcrypt hash: write the hash, such as the part "
            f"after the colon of `htpasswd -nBC 10 {user}`",
        )
        for user, hashed in users.items()
        if not _BCRYPT.fullmatch(hashed)
    ]


def _check_tls(source: str, config: WebAccessConfig) -> None:
    """Fail at load, naming the web config file and the key, rather than at the first request."""
    tls = config.tls_server_config
    assert tls is not None
    missing = [
        f"tls_server_config.{name}: no such file: {value}"
        for name in ("cert_file", "key_file", "client_ca_file")
        if (value := getattr(tls, name)) is not None and not Path(value).is_file()
    ]
    if missing:
        raise ConfigError(source, missing)
    try:
        ssl_context(config)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            source,
            [f"tls_server_config: cannot use cert_file/key_file/client_ca_file together: {exc}"],
        ) from None


def ssl_context(config: WebAccessConfig) -> ssl.SSLContext | None:
    """A server-side TLS context, or None when TLS is not configured."""
    tls = config.tls_server_config
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
    if tls.client_auth_type == "RequireAndVerifyClientCert":
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes.

    bcrypt is deliberately slow; a verified (user, password) pair is remembered by its SHA-256 so
    a scraper every 15 s does not pay it each time, while a wrong password always does.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def allows(self, header: str | None) -> bool:
        if not self._users:
            return True
        user, password = _credentials(header)
        hashed = self._users.get(user or "")
        if user is None or password is None or hashed is None:
            return False
        digest = hashlib.sha256(hashed + b"\0" + password).digest()
        with self._lock:
            if any(hmac.compare_digest(digest, known) for known in self._verified):
                return True
        try:
            ok = bcrypt.checkpw(password, hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._verified.add(digest)
        return ok


def _credentials(header: str | None) -> tuple[str | None, bytes | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None, None
    return user.decode("utf-8", errors="replace"), password
