"""Keeping secrets and hostile text out of logs and pages.

Target headers carry tokens. They are never logged on purpose, but error texts can quote them
back (an HTTP library rejecting a value, a proxy echoing a request), so every error text that
leaves a target passes through its Redactor. Model names come from the server and may hold
newlines; `printable` keeps one log record on one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 4  # shorter values would blank out ordinary words


class Redactor:
    """Replaces known secret values in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s.strip() for s in secrets} | set(secrets)
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = sorted(
            (s for s in values if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def printable(text: str) -> str:
    """Escape control characters so a value cannot forge or split a log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def url_without_credentials(url: str) -> str:
    """A URL fit for messages: any user:password@ part is dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host).geturl()
