"""Smoke run of the benchmarks at their tiny size: each must run and report its figures.

Benchmarks are not timed tests, so nothing here checks a target; the numbers of a quick run on
a busy CI machine mean nothing. What must hold: `benches/run --quick` exits 0, every benchmark
produces its figures without raising, and RESULTS.md is written with every section. The
benchmarks run as a subprocess: tests never import benches (the benchmarks' own checks live in
benches/test_benches.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXPECTED = {
    "fidelity": ("|exporter total - double| (1 target)", "|exporter TTFT - double| (1 target)"),
    "scrape_cost": ("same series as the baseline (1x3x1)",),
    "footprint": (
        "RSS [image and scripts/run]",
        "anonymous memory outside thread stacks [image and scripts/run]",
        "served text [image and scripts/run]",
        "idle CPU between probes [image and scripts/run]",
        "RSS [plain, no allocator settings]",
    ),
    "scheduler": (
        "start lag, external (double's receipt - logged plan)",
        "runs skipped or doubled",
    ),
    "cost_to_ollama": ("/api/show (model details)", "duty cycle, exporter vs double"),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("benches")
    result = subprocess.run(
        [str(REPO / "benches" / "run"), "--quick", "--out", str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_benchmark_reports_its_figures(quick_run: Path, name: str) -> None:
    saved = json.loads((quick_run / "results" / f"{name}.json").read_text())
    figures = {f["name"]: f for f in saved["section"]["figures"]}
    assert not [n for n in figures if n.startswith("error")], saved["section"]["notes"]
    for expected in EXPECTED[name]:
        assert expected in figures, sorted(figures)
        assert figures[expected]["value"]
        assert figures[expected]["ok"] is None  # quick mode carries no verdicts


def test_results_file_has_every_section(quick_run: Path) -> None:
    text = (quick_run / "RESULTS.md").read_text()
    assert "## Machine and run" in text and "benches/run --quick" in text
    for name in EXPECTED:
        assert f"(`{name}`)" in text
