"""The program's entry point (`ollama-probe-exporter`, `python -m exporter`).

It sets up the process before the command line runs: glibc's tunables must be in the
environment when the process starts (exporter.memory), and nothing else may have started a
thread yet. Tests call exporter.cli.main in their own process and never come here.
"""

from __future__ import annotations

from exporter.memory import restart_with_tunables


def main() -> None:
    restart_with_tunables()
    from exporter.cli import main as run  # after the restart: no work is done twice

    raise SystemExit(run())
