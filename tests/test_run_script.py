"""scripts/run, the README's quick start: it installs on a fresh clone, and only when needed.

The real script runs on a copy of the project's sources, with `python3` and the venv's python
replaced by stubs that record what they were asked to do: no network, no real venv, a few
milliseconds a run. The stub pip "installs" by writing the entry point, as pip would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `python3` on the PATH: answers the venv module check and creates a venv of stubs.
PYTHON3_STUB = """#!/usr/bin/env bash
echo "python3 $*" >>"$RUN_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    cp "$VENV_PYTHON_STUB" "$3/bin/python"
fi
"""

# The venv's python: `-m pip install` writes the console script that pip would install.
VENV_PYTHON_STUB = """#!/usr/bin/env bash
echo "venv-python $*" >>"$RUN_LOG"
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    bin=$(dirname "$0")
    printf '#!/usr/bin/env bash\\necho "exporter $*"\\n' >"$bin/ollama-probe-exporter"
    chmod +x "$bin/ollama-probe-exporter"
fi
"""


class Clone:
    """A copy of what scripts/run reads, with stub interpreters; runs the real script."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "scripts").mkdir(parents=True)
        shutil.copy2(REPO / "scripts" / "run", root / "scripts" / "run")
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
        shutil.copytree(
            REPO / "exporter", root / "exporter", ignore=shutil.ignore_patterns("*.pyc")
        )
        stubs = root / "stubs"
        stubs.mkdir()
        self._write_executable(stubs / "python3", PYTHON3_STUB)
        self._write_executable(stubs / "venv-python", VENV_PYTHON_STUB)
        self.log = root / "calls.log"
        self.env = {
            **os.environ,
            "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
            "RUN_LOG": str(self.log),
            "VENV_PYTHON_STUB": str(stubs / "venv-python"),
        }

    @staticmethod
    def _write_executable(path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)

    def run(self, *args: str) -> list[str]:
        """Run scripts/run; the calls it made to the interpreters, in order."""
        self.log.write_text("", encoding="utf-8")
        result = subprocess.run(
            [str(self.root / "scripts" / "run"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"exporter {' '.join(args)}\n"  # the exporter ran, with the args
        return self.log.read_text(encoding="utf-8").splitlines()


INSTALL = "venv-python -m pip install -q --disable-pip-version-check ."


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    return Clone(tmp_path / "clone")


def test_a_fresh_clone_gets_a_venv_and_an_install(clone: Clone) -> None:
    calls = clone.run("--version")
    assert "python3 -m venv .venv" in calls
    assert calls[-1] == INSTALL


def test_a_second_start_does_not_install_again(clone: Clone) -> None:
    clone.run("--version")
    assert clone.run("--web.listen-address=:10435") == []


@pytest.mark.parametrize(
    "change",
    ["a source file", "a new source file", "pyproject.toml", "the entry point is gone"],
)
def test_a_change_to_what_is_installed_installs_again(clone: Clone, change: str) -> None:
    clone.run()
    if change == "a source file":
        with (clone.root / "exporter" / "cli.py").open("a", encoding="utf-8") as f:
            f.write("# edited\n")
    elif change == "a new source file":
        (clone.root / "exporter" / "extra.py").write_text("", encoding="utf-8")
    elif change == "pyproject.toml":
        with (clone.root / "pyproject.toml").open("a", encoding="utf-8") as f:
            f.write("# edited\n")
    else:
        (clone.root / ".venv" / "bin" / "ollama-probe-exporter").unlink()
    assert clone.run() == [INSTALL]
    assert clone.run() == []


def test_bytecode_written_by_a_run_does_not_install_again(clone: Clone) -> None:
    clone.run()
    cache = clone.root / "exporter" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "cli.cpython-311.pyc").write_bytes(b"\0")
    assert clone.run() == []
