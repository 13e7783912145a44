"""The status page in a real browser: Debian's chromium, driven by selenium through chromedriver.

A real exporter (a subprocess) watches the Ollama double and a target nobody listens on. The
test reads the page's DOM as the browser built it: the down target at the top, a failed answer
check with the start of the answer, and hostile model names shown as text, never run. No skip:
without chromium the test fails and says what to install (scripts/test installs it).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from exporter.web.status import EXCERPT_CHARS
from tests.browser import chromium
from tests.exporter_process import ExporterProcess, series_of, value
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble
from tests.test_hardening_support import closed_port

pytestmark = pytest.mark.browser

# Runs if the page ever let markup through: the test then finds window.pwned set.
HOSTILE = "<script>window.pwned=1</script>\"q'uote:latest"
OFF_TOPIC = "I would rather not talk about fruit today. " * 20  # longer than the excerpt


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    models = [
        ModelScript("good:1b"),  # its answer mentions potassium: the check passes
        ModelScript("offtopic:1b", answer=OFF_TOPIC),
        ModelScript("broken:1b", fault=Fault.STATUS_500),
        ModelScript(HOSTILE),
    ]
    with OllamaDouble(models) as double:
        config = tmp_path_factory.mktemp("browser") / "exporter.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                targets:
                  - {{name: local, url: "{double.url}"}}
                  - {{name: gone, url: "http://127.0.0.1:{closed_port()}"}}
                prompts:
                  - id: liveness
                    text: "Why avocados?"
                    interval: 60s
                    checks: {{contains_any: [potas]}}
                probe: {{timeout: 5s, health_interval: 300ms}}
                gpu: {{enabled: false}}
                """
            ),
            encoding="utf-8",
        )
        with ExporterProcess(config) as process:
            process.samples_when(
                lambda s: (
                    value(s, "ollama_up", target="gone") == 0
                    and len(series_of(s, "ollama_probe_success")) == len(models)
                ),
                20,
                "target gone down and a finished probe of every model of local",
            )
            yield process


def test_the_page_shows_a_down_target_a_failed_check_and_hostile_names_as_text(
    browser: WebDriver, exporter: ExporterProcess, tmp_path: Path
) -> None:
    browser.get(exporter.url + "/")
    browser.save_screenshot(str(tmp_path / "status.png"))  # for a look; kept under tmp_path

    def text(element: WebElement) -> str:
        return str(element.get_attribute("textContent"))

    def row_of(table: str, first_cells: tuple[str, ...]) -> list[WebElement]:
        for row in browser.find_elements(By.CSS_SELECTOR, f"#{table} tr"):
            cells = row.find_elements(By.TAG_NAME, "td")
            if tuple(text(c) for c in cells[: len(first_cells)]) == first_cells:
                return [row, *cells]
        raise AssertionError(f"no row starting {first_cells} in #{table}")

    # The down target: named in the summary at the top and marked in words and in colour.
    summary = text(browser.find_element(By.ID, "summary"))
    assert summary.startswith("PROBLEM: 1 of 2 targets DOWN (gone)"), summary
    gone_row, *gone = row_of("targets", ("gone",))
    local_row, *local = row_of("targets", ("local",))
    assert (text(gone[1]), text(local[1])) == ("DOWN", "UP")
    assert "ConnectError" in text(gone[5])  # the last health error says why
    down_colour = gone_row.value_of_css_property("background-color")
    assert down_colour != local_row.value_of_css_property("background-color")

    # The failed check: the row says so, and the next row holds the answer's first characters.
    row, *cells = row_of("jobs", ("local", "offtopic:1b", "liveness"))
    assert text(cells[4]) == "CHECK FAILED"
    assert text(cells[5].find_element(By.CLASS_NAME, "reason")) == "contains_any"
    assert row.value_of_css_property("background-color") == down_colour  # red, not green
    excerpt = row.find_element(By.XPATH, "following-sibling::tr[1]")
    assert "excerpt" in str(excerpt.get_attribute("class"))
    assert text(excerpt.find_element(By.TAG_NAME, "pre")) == OFF_TOPIC[:EXCERPT_CHARS]

    _, *broken = row_of("jobs", ("local", "broken:1b", "liveness"))
    assert text(broken[4]) == "PROBE FAILED"
    assert text(broken[5].find_element(By.CLASS_NAME, "reason")) == "http_status"
    assert text(broken[6]).startswith("1 failed probe in a row")

    # The hostile name reads back exactly as text; its script never became an element.
    _, *hostile = row_of("jobs", ("local", HOSTILE, "liveness"))
    assert text(hostile[4]) == "OK"
    assert browser.find_elements(By.CSS_SELECTOR, "body script") == []
    assert browser.execute_script("return window.pwned === undefined") is True
    assert browser.find_element(By.ID, "as-of").text.endswith(" UTC")
