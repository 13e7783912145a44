"""`compare` end to end: `python -m exporter compare` against the Ollama double.

The seed report's three models are scripted at clearly different speeds, and a fourth model,
bielik-11b-twin, exactly like bielik-11b: the same script and the same cycle of extra delays,
so the two samples are the same set of durations up to the machine's noise. The report must
order the three, call every pair of them `faster`, and call the twins indistinguishable, in
each output. Every expectation is computed from the script or from the report itself.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.browser import chromium
from tests.exporter_process import REPO, exporter_env, wait_until
from tests.fakes.ollama_double import ModelScript, OllamaDouble, listed_name

ROUNDS, PER_VISIT, SEED = 4, 3, 20261205
JITTER = (0.0, 0.03, 0.015, 0.045)  # shared by every model: spread with a known answer
BIELIK = ModelScript("bielik-11b", token_interval=0.015, extra_delays=JITTER)
MODELS = [
    ModelScript("mistral:7b", token_interval=0.003, extra_delays=JITTER),
    BIELIK,
    replace(BIELIK, name="bielik-11b-twin", digest=""),
    ModelScript("gemma3:12b", token_interval=0.03, extra_delays=JITTER),
]
# The order the scripts make, by the names the server lists (":latest" added where untagged).
BY_SPEED = [listed_name(n) for n in ("mistral:7b", "bielik-11b", "gemma3:12b")]
TWINS = {listed_name("bielik-11b"), listed_name("bielik-11b-twin")}


def _config(path: Path, url: str, extra_targets: str = "") -> Path:
    path.write_text(
        f"""
targets:
  - name: lab
    url: {url}
    gpu: false
{extra_targets}
prompts:
  - id: avocado
    text: "What are the health benefits of avocado?"
    checks: {{contains_any: [potassium]}}
""",
        encoding="utf-8",
    )
    return path


def compare(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "compare", "--config.file", str(config), *args],
        cwd=REPO,
        env=env or exporter_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(MODELS) as server:
        yield server


@pytest.fixture(scope="module")
def config(double: OllamaDouble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _config(tmp_path_factory.mktemp("compare") / "config.yaml", double.url)


RUN = ("--rounds", str(ROUNDS), "--per-visit", str(PER_VISIT), "--seed", str(SEED))


@pytest.fixture(scope="module")
def as_json(config: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = compare(config, *RUN, "--output", "json")
    return done, json.loads(done.stdout)


def test_json_orders_the_models_and_tells_the_twins_apart_from_the_rest(
    as_json: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    done, report = as_json
    assert done.returncode == 0, done.stderr
    assert (report["rounds"], report["per_visit"], report["seed"]) == (ROUNDS, PER_VISIT, SEED)
    assert f"seed {SEED}" in done.stderr
    assert report["targets"] == [{"name": "lab", "up": True, "error": None}]
    results = {r["model"]: r for r in report["results"]}
    assert set(results) == {listed_name(m.name) for m in MODELS}
    for r in results.values():
        # Every probe is either warm (n) or a cold start; none failed, every check passed.
        assert r["n"] + r["cold_starts"] == ROUNDS * PER_VISIT
        assert r["failures"] == {}
        assert r["checks"]["passed"] == r["checks"]["total"] == ROUNDS * PER_VISIT
        lo, hi = r["duration_seconds"]["ci95"]
        assert lo <= r["duration_seconds"]["median"] <= hi
    medians = {m: results[m]["duration_seconds"]["median"] for m in BY_SPEED}
    assert sorted(medians, key=medians.__getitem__) == BY_SPEED
    verdicts = {frozenset((c["faster"], c["slower"])): c for c in report["comparisons"]}
    for i, fast in enumerate(BY_SPEED):
        for slow in BY_SPEED[i + 1 :]:
            pair = verdicts[frozenset((fast, slow))]
            assert (pair["faster"], pair["slower"], pair["verdict"]) == (fast, slow, "faster")
            assert pair["ci95"][0] > 1 and pair["p_value"] < 0.05
    twins = verdicts[frozenset(TWINS)]
    assert twins["verdict"] == "indistinguishable"
    assert twins["ci95"][0] <= 1 <= twins["ci95"][1]
    assert report["recommendations"] and "mistral:7b" in report["recommendations"][0]


def test_markdown_shows_the_same_order_and_verdicts(config: Path) -> None:
    done = compare(config, *RUN)  # markdown to stdout is the default
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("# Model comparison\n")
    listed = [row[0] for row in _rows(text, "## Summary: lab, prompt avocado")]
    # Fastest first; the twins sit between in either order.
    assert (listed[0], set(listed[1:3]), listed[3]) == (BY_SPEED[0], TWINS, BY_SPEED[2])
    verdicts = {frozenset(row[2:4]): row[6] for row in _rows(text, "## Pairs")}
    assert verdicts[frozenset(TWINS)] == "indistinguishable"
    assert verdicts[frozenset((BY_SPEED[0], BY_SPEED[2]))] == "faster"


def _rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table under `heading`, header and rule left out."""
    body = markdown.split(heading + "\n", 1)[1].split("\n#", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in lines[1:]]


@pytest.mark.browser
def test_html_is_written_to_the_file_asked_for(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = compare(
        config, "--rounds", "1", "--per-visit", "2", "--output", "html", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert f"wrote {out}" in done.stderr
    page = out.read_text(encoding="utf-8")
    assert page.lower().startswith("<!doctype html>")
    assert "<svg" in page and "mistral:7b" in page
    with chromium() as browser:
        browser.get(out.as_uri())
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        charts = browser.find_elements(By.TAG_NAME, "svg")
        assert severe == []
        assert browser.title == "Model comparison"
        assert charts and all(c.size["width"] > 100 and c.size["height"] > 100 for c in charts)


def test_a_down_target_is_reported_and_fails_the_run(double: OllamaDouble, tmp_path: Path) -> None:
    closed = "  - name: gone\n    url: http://127.0.0.1:9\n    gpu: false"
    config = _config(tmp_path / "config.yaml", double.url, closed)
    done = compare(
        config, "--rounds", "1", "--per-visit", "1", "--output", "json", "--target", "gone"
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(t["name"], t["up"]) for t in report["targets"]] == [("gone", False)]
    assert report["targets"][0]["error"]
    assert report["results"] == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--prompt", "nope"), "unknown --prompt nope (the configuration has: avocado)"),
        (("--target", "elsewhere"), "unknown --target elsewhere (the configuration has: lab)"),
        (("--rounds", "0"), "must be at least 1"),
    ],
)
def test_bad_selections_exit_2_naming_what_exists(
    config: Path, args: tuple[str, ...], said: str
) -> None:
    done = compare(config, *args)
    assert done.returncode == 2
    assert said in done.stderr
    assert done.stdout == ""


def test_without_the_report_extra_it_says_what_to_install(config: Path, tmp_path: Path) -> None:
    # A numpy that cannot be imported, first on the path: as if the extra was never installed.
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')\n"
    )
    env = exporter_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    done = compare(config, env=env)
    assert done.returncode == 2
    assert "pip install 'ollama-probe-exporter[report]'" in done.stderr
    assert "numpy" in done.stderr


def test_progress_on_a_terminal_and_silence_when_piped(config: Path) -> None:
    args = ("--rounds", "2", "--per-visit", "1", "--seed", "1", "--output", "json")
    piped = compare(config, *args)
    assert piped.returncode == 0
    assert "round " not in piped.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "exporter", "compare", "--config.file", str(config), *args],
        cwd=REPO,
        env=exporter_env(),
        stdout=subprocess.PIPE,
        stderr=follower,
    ) as proc:
        os.close(follower)
        seen = _read_all(leader)
        assert proc.wait(timeout=60) == 0
    total = 2 * len(MODELS)
    assert "round 1/2" in seen and "round 2/2" in seen
    assert f"{total}/{total} probes" in seen
    assert "ETA" in seen


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:  # the child closed its end: EIO on Linux
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def test_an_interrupted_run_says_so_in_a_line_and_exits_130(
    double: OllamaDouble, config: Path
) -> None:
    before = _generations(double)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exporter",
            "compare",
            "--config.file",
            str(config),
            "--rounds",
            "1000",
            "--output",
            "json",
        ],
        cwd=REPO,
        env=exporter_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        wait_until(lambda: _generations(double) > before + 2, 30, "probes of the run")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted, no report written" in err
    assert "Traceback" not in err
    assert out == ""


def _generations(double: OllamaDouble) -> int:
    return len(double.requests("/api/chat")) + len(double.requests("/api/generate"))
