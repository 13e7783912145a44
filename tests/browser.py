"""A real headless browser for the tests that read pages as a user's browser builds them.

Debian's chromium driven through its own chromedriver, offline. No skip: without chromium the
test fails and says what to install (scripts/test installs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """Headless chromium with its console kept, so a test can read `get_log("browser")`."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
            "(scripts/test does)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1800,1400")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        # Selenium Manager would otherwise look online for a driver; Debian's is the one wanted.
        env.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(
            service=DriverService(executable_path=str(CHROMEDRIVER)), options=options
        )
    try:
        yield driver
    finally:
        driver.quit()
