"""The comparison's HTML: the document's sections, escaped, with one inline SVG per summary.

The report is real: synthetic observations through `analyse`, three models with distinct
speeds, one whose name is markup, and a down target whose error is markup too. The markup is
checked as text, then read in Debian's chromium from a file:// path, as someone opening the
saved report would.
"""

from __future__ import annotations

import html
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from exporter.compare.analysis import Report, analyse
from exporter.compare.document import sections
from exporter.compare.html import render_html
from exporter.compare.observations import Observation
from exporter.probe_command import TargetState
from tests.browser import chromium

HOSTILE_MODEL = '<script>alert(1)</script>&"'
HOSTILE_ERROR = "connection refused: <b>127.0.0.1:9</b> & 'no route'"
# (model, median warm duration in s, median tokens/s): distinct enough to order them.
MODELS = (("gemma3:12b", 4.0, 38.0), ("mistral:7b", 2.0, 61.0), ("bielik-11b", 6.5, 29.0))
ROUNDS = 30
ROOT = Path(__file__).resolve().parents[1]
ALLOWED_URLS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def _observations(seed: int = 7) -> list[Observation]:
    rng = random.Random(seed)
    out: list[Observation] = []
    for i in range(ROUNDS):
        for model, duration, rate in MODELS:
            out.append(_probe(rng, "lab", model, "capital", i, duration, rate))
        if i < 8:  # a second prompt, so the page has two charts
            out.append(_probe(rng, "lab", "mistral:7b", "json", i, 3.0, 55.0))
            out.append(_probe(rng, "lab", HOSTILE_MODEL, "json", i, 5.0, 20.0))
    # The hostile model never reports a first token: its TTFT panel row is empty (n=0).
    out = [replace(o, ttft_s=None) if o.model == HOSTILE_MODEL else o for o in out]
    out.append(Observation("lab", "gemma3:12b", "capital", 2e9, "timeout", 120.0))
    return out


def _probe(
    rng: random.Random, target: str, model: str, prompt: str, i: int, duration: float, rate: float
) -> Observation:
    cold = i == 0  # every model's first probe loads it
    took = duration * rng.lognormvariate(0.0, 0.15) + (3.0 if cold else 0.0)
    return Observation(
        target=target,
        model=model,
        prompt=prompt,
        finished_at=1.7e9 + i * 60,
        reason=None,
        duration_s=took,
        ttft_s=0.1 * duration * rng.lognormvariate(0.0, 0.2),
        tokens_per_second=rate * rng.lognormvariate(0.0, 0.05),
        load_s=3.0 if cold else 0.0,
        cold_start=cold,
        characters=400 + rng.randrange(100),
        words=70 + rng.randrange(20),
        checks={"mentions": rng.random() > 0.05},
    )


def build_report() -> Report:
    """The report every test here reads; a function so a fresh process can build it too."""
    figures, comparisons, recommendations = analyse(_observations(), seed=3, resamples=400)
    return Report(
        method="Probes made for this comparison, in shuffled rounds.",
        rounds=ROUNDS,
        per_visit=1,
        seed=3,
        targets=[TargetState("lab", True), TargetState("gone", False, HOSTILE_ERROR)],
        results=figures,
        comparisons=comparisons,
        recommendations=recommendations,
        notes=["Synthetic observations; a `note` with <angle> brackets."],
        generated_at=1.7e9,
    )


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report()


@pytest.fixture(scope="module")
def page(report: Report) -> str:
    return render_html(report)


def test_data_from_servers_is_text_never_markup(page: str) -> None:
    assert "<script" not in page.lower()
    assert "<b>" not in page
    assert html.escape(HOSTILE_MODEL) in page
    assert html.escape(HOSTILE_ERROR) in page
    assert "&lt;angle&gt;" in page  # a note from the report: a bullet, escaped
    assert "<code>faster</code>" in page  # the method paragraph's backticks


def test_every_section_title_appears_as_a_heading(report: Report, page: str) -> None:
    for s in sections(report):
        assert f"<h{s.level}>{html.escape(s.title)}</h{s.level}>" in page


def test_one_chart_per_summary_in_a_figure_with_its_caption(report: Report, page: str) -> None:
    charted = [s for s in sections(report) if s.charts_for is not None]
    assert len(charted) == 2
    assert page.count("<svg") == len(charted)
    assert page.count("<figure>") == page.count("<figcaption") == len(charted)
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


def test_captions_list_the_models_in_the_summary_tables_order(report: Report, page: str) -> None:
    captions = re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", page, flags=re.DOTALL)
    charted = [s for s in sections(report) if s.charts_for is not None]
    for section, caption in zip(charted, captions, strict=True):
        models = [html.escape(row[0]) for row in section.tables[0].rows]
        positions = [caption.index(f"{m} (") for m in models]
        assert positions == sorted(positions), caption
    capital = next(c for c in captions if "prompt capital" in c)
    assert all(f"{m} (n={ROUNDS - 1})" in capital for m, _, _ in MODELS)
    json = next(c for c in captions if "prompt json" in c)
    assert f"{html.escape(HOSTILE_MODEL)} (duration n=7, TTFT n=0, tokens/s n=7)" in json


def test_nothing_is_fetched_from_the_network(page: str) -> None:
    assert set(re.findall(r"""https?://[^\s"'<>)]*""", page)) <= ALLOWED_URLS
    for needle in ("<link", "<img", "<iframe", " src=", "@import", "url(http", "<metadata"):
        assert needle not in page


def test_ids_are_unique_across_the_inlined_charts(page: str) -> None:
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids))
    referenced = set(re.findall(r'(?:xlink:href="#|url\(#)([^")]+)', page))
    assert referenced and referenced <= set(ids)


def test_the_same_report_renders_to_the_same_bytes(report: Report, page: str) -> None:
    assert render_html(report) == page
    # Another process, with another hash seed, renders the same bytes too.
    script = (
        "import sys; from tests.test_compare_html import build_report;"
        "from exporter.compare.html import render_html;"
        "sys.stdout.write(render_html(build_report()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    other = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert other.stdout == page


def test_the_page_stays_small(page: str) -> None:
    assert len(page.encode()) < 1_500_000


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.mark.browser
def test_chromium_shows_the_page_offline_without_errors(
    browser: WebDriver, report: Report, page: str, tmp_path: Path
) -> None:
    saved = tmp_path / "comparison.html"
    saved.write_text(page, encoding="utf-8")
    browser.get(saved.as_uri())
    parts = sections(report)

    assert browser.title == parts[0].title
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - reading it is the check
    assert browser.execute_script("return document.scripts.length") == 0

    boxes = browser.execute_script(
        "return [...document.querySelectorAll('svg')]"
        ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; })"
    )
    assert len(boxes) == sum(s.charts_for is not None for s in parts)
    assert all(w > 100 and h > 100 for w, h in boxes), boxes

    tables = browser.find_elements(By.TAG_NAME, "table")
    expected = [len(t.rows) + 1 for s in parts for t in s.tables]
    assert [len(t.find_elements(By.TAG_NAME, "tr")) for t in tables] == expected
    cells = {c.text for c in browser.find_elements(By.CSS_SELECTOR, "td")}
    assert HOSTILE_MODEL in cells
    assert any(HOSTILE_ERROR in li.text for li in browser.find_elements(By.TAG_NAME, "li"))
