"""Targets from files in Prometheus' file_sd format (`target_files:`), re-read when they change.

Files are read again when their modification time, size or inode changes (TargetFiles.refresh,
polled by the service) and at every reload; the format is exporter.target_file_format's. A file
that cannot be used (unreadable, malformed, a refused label, a name another file or the
configuration file already has) keeps its last good content; its problem is logged once, and its
TargetFileState says so for the exposition. A file that disappears takes its targets with it.
Part of the config layer: no probing, no metrics.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.config import Config, TargetConfig
from exporter.target_file_format import FileTarget, read_target_file
from exporter.validation import ConfigError

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int]  # mtime_ns, size, inode, device


@dataclass(frozen=True)
class TargetFileState:
    """How one matched file's last read went, and how many targets it contributes now."""

    file: str
    ok: bool
    targets: int


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
