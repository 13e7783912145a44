"""Targets from files in Prometheus' file_sd format (`target_files:`), re-read when they change.

A file is a list of groups, each a list of `host:port` targets plus labels that apply to all of
them (docs/configuration.md, "Targets from files"):

    [{"targets": ["10.0.0.5:11434"], "labels": {"name": "gpu-box-1", "gpu": "true"}}]

Files are read again when their modification time, size or inode changes (TargetFiles.refresh,
polled by the service) and at every reload. A file that cannot be used (unreadable, malformed,
a refused label, a name another file or the configuration file already has) keeps its last good
content; its problem is logged once, and its TargetFileState says so for the exposition. A file
that disappears takes its targets with it. Part of the config layer: no probing, no metrics.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args
from urllib.parse import urlsplit

import yaml

from exporter.config import BackendName, Config, TargetConfig
from exporter.validation import ConfigError, at, shown, unknown_key

log = logging.getLogger(__name__)

GROUP_KEYS = ("targets", "labels")
SCHEME_LABEL = "__scheme__"
HEADER_PREFIX = "header_"
IGNORED_PREFIX = "__meta_"  # discovery metadata, by Prometheus' convention: never read
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # Prometheus' label names
# A header value in a target file is made of ${VAR} references only: such files often live in
# a ConfigMap or a repository, so the secret itself must stay in the environment.
ONLY_ENV_REFS = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*\})+")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Stamp = tuple[int, int, int, int]  # mtime_ns, size, inode, device


@dataclass(frozen=True)
class TargetFileState:
    """How one matched file's last read went, and how many targets it contributes now."""

    file: str
    ok: bool
    targets: int


@dataclass(frozen=True)
class FileTarget:
    """A target read from a file, with where the file has it (`[0].targets[1]`)."""

    where: str
    config: TargetConfig


# --- parsing ----------------------------------------------------------------------------------


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


def _backend(value: str) -> str:
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
    "backend": _backend,
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


# --- the files of a configuration, re-read on change ------------------------------------------


@dataclass
class _File:
    """One matched file: its newest read, its last good content, what it contributes now."""

    stamp: Stamp | None = None
    parsed: list[FileTarget] | None = None  # the newest read, None when it failed
    read_error: str | None = None
    good: list[FileTarget] = field(default_factory=list)  # the last content accepted
    contributed: tuple[TargetConfig, ...] = ()
    error: str | None = None  # the problem of the last refresh, None when it was accepted


def patterns_of(config: Config, config_path: str | Path | None) -> list[str]:
    """The configuration's globs, relative ones resolved against its file's directory."""
    base = Path(config_path).parent if config_path is not None else Path()
    return [os.path.normpath(os.path.join(base, p)) for p in config.target_files]


class TargetFiles:
    """The targets of `target_files:`. Not thread-safe: the service calls it under its lock."""

    def __init__(
        self, patterns: Sequence[str] = (), environ: Mapping[str, str] | None = None
    ) -> None:
        self.patterns = list(patterns)
        self._environ = os.environ if environ is None else environ
        self._files: dict[str, _File] = {}
        self._unmatched: set[str] = set()  # patterns that matched no file at the last refresh
        self.targets: tuple[TargetConfig, ...] = ()
        self.states: tuple[TargetFileState, ...] = ()

    def refresh(self, taken: Collection[str] = ()) -> bool:
        """Read the files that changed and work out every file's targets again; True when the
        targets changed. `taken` are the names of the configuration file's own targets."""
        matched = self._match()
        for path in sorted(self._files.keys() - set(matched)):
            gone = self._files.pop(path)
            log.info("target file %s is gone: its %d target(s) go", path, len(gone.contributed))
        for path in matched:
            self._read_if_changed(path)
        self._resolve(taken)
        before = self.targets
        self.targets = tuple(t for _, f in sorted(self._files.items()) for t in f.contributed)
        self.states = tuple(
            TargetFileState(path, f.error is None, len(f.contributed))
            for path, f in sorted(self._files.items())
        )
        return self.targets != before

    def _match(self) -> list[str]:
        matched: dict[str, None] = {}
        for pattern in self.patterns:
            found = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
            if not found and pattern not in self._unmatched:
                log.info("target_files: %s matches no file (yet)", pattern)
            if found:
                self._unmatched.discard(pattern)
            else:
                self._unmatched.add(pattern)
            matched.update(dict.fromkeys(found))
        return list(matched)

    def _read_if_changed(self, path: str) -> None:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return  # removed since the glob: gone at the next refresh
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev)
        record = self._files.setdefault(path, _File())
        if stamp == record.stamp:
            return
        try:
            record.parsed, record.read_error = read_target_file(path, self._environ), None
        except FileNotFoundError:
            return  # removed while read: its stamp stays old, so it is read again if it returns
        except ConfigError as exc:
            record.parsed, record.read_error = None, "; ".join(exc.problems)
        record.stamp = stamp

    def _resolve(self, taken: Collection[str]) -> None:
        """Every file's contribution: its new content if that fits, else its last good one.

        Names go first to the configuration file's own targets, then to each file's last good
        content, and only then to new content, each in path order: so a duplicate name is an
        error of the file that brings it, never of the one that had it. New content that does
        not fit is tried again at every refresh (a name another file gives up becomes free).
        """
        owners = dict.fromkeys(taken, "the configuration file")
        for path, record in sorted(self._files.items()):
            record.contributed = tuple(t.config for t in record.good if t.config.name not in owners)
            owners.update(dict.fromkeys((t.name for t in record.contributed), path))
        for path, record in sorted(self._files.items()):
            error = record.read_error
            if record.parsed is not None:
                # Accepted content clashes only with a name the configuration file took since.
                clashes = [
                    _clash(t, owners[t.config.name])
                    for t in record.parsed
                    if owners.get(t.config.name, path) != path
                ]
                error = "; ".join(clashes) or None
                if error is None and record.parsed is not record.good:
                    self._accept(path, record, owners)
            self._note(path, record, error)

    def _accept(self, path: str, record: _File, owners: dict[str, str]) -> None:
        assert record.parsed is not None
        for target in record.contributed:
            del owners[target.name]
        before = [t.config for t in record.good]
        record.good = record.parsed
        record.contributed = tuple(t.config for t in record.good)
        owners.update(dict.fromkeys((t.name for t in record.contributed), path))
        if record.error is None and list(record.contributed) != before:
            log.info("target file %s: %d target(s)", path, len(record.contributed))

    def _note(self, path: str, record: _File, error: str | None) -> None:
        """Log a file's problem once, when it starts or changes, and its recovery."""
        if error is not None and error != record.error:
            log.error(
                "target file %s: %s; keeping its last good content (%d target(s))",
                path,
                error,
                len(record.contributed),
            )
        elif error is None and record.error is not None:
            log.info("target file %s is good again: %d target(s)", path, len(record.contributed))
        record.error = error


def _clash(target: FileTarget, owner: str) -> str:
    where = owner if owner == "the configuration file" else f"target file {owner}"
    return f"{target.where}: duplicate name {target.config.name!r}, already a target of {where}"


def with_file_targets(config: Config, config_path: str | Path | None) -> Config:
    """The configuration with its files' targets read once (for the one-shot commands)."""
    if not config.target_files:
        return config
    files = TargetFiles(patterns_of(config, config_path))
    files.refresh({t.name for t in config.targets})
    return config.model_copy(update={"targets": [*config.targets, *files.targets]})
