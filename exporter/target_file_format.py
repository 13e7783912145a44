"""The format of target files: Prometheus' file_sd groups, read into TargetConfigs.

A file is a list of groups, each a list of `host:port` targets plus labels that apply to all of
them (docs/configuration.md, "Targets from files"):

    [{"targets": ["10.0.0.5:11434"], "labels": {"name": "gpu-box-1", "gpu": "true"}}]

Labels map onto the per-target settings; `__meta_*` labels are ignored and any other label is
refused. Every problem is named by its place in the file (`[0].labels.gpu`), in the words of
exporter.validation; a header value is never shown. Part of the config layer.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args
from urllib.parse import urlsplit

import yaml

from exporter.config import BackendName, TargetConfig
from exporter.validation import ConfigError, at, shown, unknown_key

GROUP_KEYS = ("targets", "labels")
SCHEME_LABEL = "__scheme__"
HEADER_PREFIX = "header_"
IGNORED_PREFIX = "__meta_"  # discovery metadata, by Prometheus' convention: never read
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # Prometheus' label names
# A header value in a target file is made of ${VAR} references only: such files often live in
# a ConfigMap or a repository, so the secret itself must stay in the environment.
ONLY_ENV_REFS = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*\})+")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class FileTarget:
    """A target read from a file, with where the file has it (`[0].targets[1]`)."""

    where: str
    config: TargetConfig


def _boolean(value: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"{shown(value)} is not 'true' or 'false'")


def _gpu(value: str) -> bool | str:
    if value == "auto":
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"{shown(value)} is not 'true', 'false' or 'auto'")


def _max_models(value: str) -> int:
    if value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"{shown(value)} is not a whole number of at least 1")


def _protocol(value: str) -> str:
    known = get_args(BackendName)
    if value in known:
        return value
    raise ValueError(f"{shown(value)} is not {' or '.join(repr(k) for k in known)}")


def _ca_file(value: str) -> str:
    try:
        ssl.create_default_context(cafile=value)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"cannot load {value!r} as CA file: {exc}") from None
    return value


# Labels that set the TargetConfig field of the same name, with their readers.
SETTINGS: Mapping[str, Callable[[str], object]] = {
    "protocol": _protocol,
    "discover": _boolean,
    "gpu": _gpu,
    "max_models": _max_models,
    "tls_ca_file": _ca_file,
    "tls_insecure_skip_verify": _boolean,
}
KNOWN_LABELS = (SCHEME_LABEL, "name", *SETTINGS, f"{HEADER_PREFIX}<Name>")


@dataclass
class _Labels:
    """What a group's labels say about each of its targets."""

    scheme: str = "http"
    name: str | None = None
    settings: dict[str, object] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def parse_target_file(data: object, source: str, environ: Mapping[str, str]) -> list[FileTarget]:
    """The targets of a file's parsed content; ConfigError naming every problem and its place."""
    if data is None:
        return []  # an empty YAML file holds no groups, as Prometheus reads it
    if not isinstance(data, list):
        raise ConfigError(source, ["the top level must be a list of target groups"])
    problems: list[str] = []
    targets: list[FileTarget] = []
    for i, group in enumerate(data):
        if not isinstance(group, dict):
            problems.append(at([i], f"{shown(group)} is not a mapping of targets and labels"))
            continue
        problems += [at([i], unknown_key(k, GROUP_KEYS)) for k in group if k not in GROUP_KEYS]
        labels, label_problems = _read_labels(i, group.get("labels", {}), environ)
        problems += label_problems
        addresses = group.get("targets", [])
        if not isinstance(addresses, list):
            problems.append(at([i, "targets"], f"{shown(addresses)} is not a list"))
            continue
        for j, address in enumerate(addresses):
            where = f"[{i}].targets[{j}]"
            problem = _address_problem(address)
            if problem is not None:
                problems.append(f"{where}: {problem}")
            elif not label_problems:
                targets.append(FileTarget(where, _target(str(address), labels)))
    problems += _duplicate_names(targets)
    if problems:
        raise ConfigError(source, problems)
    return targets


def _target(address: str, labels: _Labels) -> TargetConfig:
    return TargetConfig.model_validate(
        {
            "name": labels.name if labels.name is not None else address,
            "url": f"{labels.scheme}://{address}",
            "headers": labels.headers,
            **labels.settings,
        }
    )


def _read_labels(i: int, labels: object, environ: Mapping[str, str]) -> tuple[_Labels, list[str]]:
    found = _Labels()
    if not isinstance(labels, dict):
        return found, [at([i, "labels"], f"{shown(labels)} is not a mapping")]
    problems = []
    for label, value in labels.items():
        if not isinstance(label, str) or not LABEL_NAME.fullmatch(label):
            problems.append(at([i, "labels"], _bad_label_name(label)))
            continue
        if label.startswith(IGNORED_PREFIX):
            continue
        secret = label.startswith(HEADER_PREFIX)
        if not isinstance(value, str):
            value_text = "the value (not shown)" if secret else shown(value)
            problems.append(
                at([i, "labels", label], f"{value_text} is not a string: label values are strings")
            )
            continue
        try:
            _apply_label(found, label, value, environ)
        except ValueError as exc:
            problems.append(at([i, "labels", label], str(exc)))
        except KeyError:
            problems.append(at([i, "labels"], _unknown_label(label)))
    return found, problems


def _apply_label(found: _Labels, label: str, value: str, environ: Mapping[str, str]) -> None:
    """Record one label's setting; ValueError for a bad value, KeyError for an unknown label."""
    if label == SCHEME_LABEL:
        if value not in ("http", "https"):
            raise ValueError(f"{shown(value)} is not 'http' or 'https'")
        found.scheme = value
    elif label == "name":
        if not value:
            raise ValueError("the name is empty")
        found.name = value
    elif label.startswith(HEADER_PREFIX):
        name = label.removeprefix(HEADER_PREFIX).replace("_", "-")
        if not name:
            raise ValueError(f"no header name after {HEADER_PREFIX}")
        found.headers[name] = _header_value(value, environ)
    else:
        found.settings[label] = SETTINGS[label](value)


def _header_value(value: str, environ: Mapping[str, str]) -> str:
    """A header value made of ${VAR}s, expanded; the error never shows the value."""
    if not ONLY_ENV_REFS.fullmatch(value):
        raise ValueError(
            "a literal header value is refused: write only ${VAR} references (a target file "
            "holds no secrets; put the whole value, 'Bearer ...' included, in the variable)"
        )
    for var in _ENV_REF.findall(value):
        if var not in environ:
            raise ValueError(f"environment variable {var} is not set")
    expanded = _ENV_REF.sub(lambda m: environ[m.group(1)], value)
    if any(c in expanded for c in "\r\n\0"):
        raise ValueError("the value holds a control character")
    return expanded


def _bad_label_name(label: object) -> str:
    text = f"{shown(label)} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
    if isinstance(label, str) and label.startswith(HEADER_PREFIX) and "-" in label:
        text += f": write {label.replace('-', '_')} (an underscore becomes a hyphen)"
    return text


def _unknown_label(label: str) -> str:
    text = unknown_key(label, KNOWN_LABELS)
    if "did you mean" in text:
        return text
    return f"{text} (free-form metadata goes in {IGNORED_PREFIX}* labels, which are ignored)"


def _address_problem(address: object) -> str | None:
    if not isinstance(address, str):
        return f"{shown(address)} is not a string"
    try:
        parts = urlsplit(f"//{address}")
        port = parts.port
    except ValueError:
        return f"{shown(address)} is not host:port"
    if "@" in parts.netloc:
        # Not echoed: whatever precedes the @ is a credential.
        return "the value (not shown) holds credentials: a target file holds no secrets"
    if parts.path or parts.query or parts.fragment or not parts.hostname:
        return f"{shown(address)} is not host:port (the scheme comes from the __scheme__ label)"
    if port is None:
        return f"{shown(address)} has no port: write host:port"
    return None


def _duplicate_names(targets: Sequence[FileTarget]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for target in targets:
        if target.config.name in seen:
            problems.append(f"{target.where}: duplicate name {target.config.name!r}")
        seen.add(target.config.name)
    return problems


def read_target_file(path: str, environ: Mapping[str, str]) -> list[FileTarget]:
    """Read and parse one file: JSON for `.json`, else YAML. ConfigError names what is wrong;
    FileNotFoundError passes through (the file went away: not an error)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(path, [f"cannot read file: {reason}"]) from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(path, [f"not valid JSON: {exc.msg} (line {exc.lineno})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(path, [f"not valid YAML: {problem}{line}"]) from None
    except RecursionError:
        raise ConfigError(path, ["nested too deeply to read"]) from None
    return parse_target_file(data, path, environ)
