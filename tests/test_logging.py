"""Every log record is one line, so `grep` and log shippers never see half a record.

A failed reload lists its problems on several lines and a traceback always spans several: the
formatter writes their line breaks as `\\n`. Checked through the real process (a reload of a
broken file by POST /-/reload and by SIGHUP) and on the formatter with an exception.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import textwrap
from pathlib import Path

from exporter.cli import OneLineFormatter
from tests.exporter_process import ExporterProcess, wait_until
from tests.test_hardening_support import closed_port

RECORD = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S.*"
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_failed_reload_is_logged_as_one_line_per_record(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        f"""\
        targets: [{{name: local, url: "http://127.0.0.1:{closed_port()}"}}]
        prompts: [{{id: liveness, text: hi}}]
        probe: {{health_interval: 300ms}}
        gpu: {{enabled: false}}
        """,
    )
    with ExporterProcess(config) as exporter:
        assert exporter.get("/-/healthy").status_code == 200
        write(config, "probe: {intervall: 5m}\ntargets: [{name: a, url: x, max_models: lots}]\n")
        reply = exporter.post("/-/reload")
        assert reply.status_code == 500
        exporter.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: exporter.stderr.count("reload failed") >= 2, 10, "two failed reloads")
        lines = list(exporter.lines)
    problems = [
        f"{config}: targets[0].max_models: 'lots' is not an integer",
        f"{config}: probe: unknown key 'intervall', did you mean 'interval'?",
        f"{config}: targets[0].url: 'x' does not start with http:// or https://",
    ]
    assert all(line.endswith("\n") for line in lines)
    assert [line for line in lines if not RECORD.fullmatch(line.rstrip("\n"))] == []
    failed = [line for line in lines if "reload failed" in line]
    assert len(failed) == 2
    for line in failed:
        assert " ERROR " in line
        assert all(problem in line for problem in problems), line
    # The HTTP reply keeps one problem per line for a human reading it.
    assert [p for p in problems if f"  {p}\n" not in reply.text + "\n"] == []


def test_a_traceback_is_part_of_its_record() -> None:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "exporter.test", logging.ERROR, __file__, 1, "probe of %s\r\nfailed", ("m",), exc_info
    )
    text = OneLineFormatter(FORMAT).format(record)
    assert "\n" not in text and "\r" not in text
    assert RECORD.fullmatch(text)
    head, *rest = text.split("\\n")
    assert head.endswith("ERROR exporter.test: probe of m")
    assert rest[0] == "failed" and rest[1] == "Traceback (most recent call last):"
    assert rest[-2:] == ["ValueError: first line", "second line"]
