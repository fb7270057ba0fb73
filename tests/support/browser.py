"""A real browser for the tests: headless Chromium as Debian ships it (``chromium`` and
``chromium-driver``, installed by ``make test``), driven by Selenium through
/usr/bin/chromedriver. Nothing is downloaded: Selenium Manager is never asked, the
driver's path is given.

    @pytest.mark.requires("chromium")
    def test_x(browser):                 # one browser per module, JavaScript on
        browser.get(url)
        screenshot(browser, "login")     # test-artifacts/console/login.png
        assert accessibility_problems(browser) == []

``browser_without_js`` is a second one with JavaScript off: what a page shows to a
reader whose browser runs no script. Screenshots go to ``test-artifacts/console/`` under
the repository (git-ignored; CI keeps the folder), or ``RECOVERY_TEST_ARTIFACTS``.
Selenium is imported inside the functions: without it, only the tests that need a
browser cannot run (``requires("chromium")`` says why).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.accessibility import page_problems
from tests.support.paths import ROOT

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("RECOVERY_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
WINDOW = (1280, 900)
PAGE_LOAD_TIMEOUT = 30          # seconds: a page (or a form's answer) loads within this
SCRIPT_TIMEOUT = 15             # seconds: an async script (a fetch) calls back within this
TALLEST_SCREENSHOT = 6000       # pixels: a full-page screenshot grows the window up to this


def chromium(*, javascript: bool = True, window: tuple[int, int] = WINDOW) -> WebDriver:
    """A headless Chromium of its own (a fresh profile: no cookie of another); the caller
    quits it. ``javascript=False``: no script runs on any page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", "--lang=en-US",
                     f"--window-size={window[0]},{window[1]}"):
        options.add_argument(argument)
    if os.geteuid() == 0:                         # Chromium's sandbox refuses root
        options.add_argument("--no-sandbox")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    driver.set_script_timeout(SCRIPT_TIMEOUT)
    return driver


def runs_javascript(driver: WebDriver) -> bool:
    """Whether pages loaded in ``driver`` run their scripts: a page whose one script
    rewrites its title, loaded and read back (WebDriver's own scripts run either way)."""
    driver.get("data:text/html,<html lang=en><title>off</title>"
               "<script>document.title='on'</script></html>")
    return driver.title == "on"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module, JavaScript on; quit at its end."""
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser_without_js() -> Iterator[WebDriver]:
    """A second headless Chromium whose pages run no JavaScript (checked, not assumed)."""
    driver = chromium(javascript=False)
    try:
        assert not runs_javascript(driver), "JavaScript still runs with it switched off"
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str, folder: Path = ARTIFACTS) -> Path:
    """The whole page (the window grown to the page's height, then put back) as
    ``folder/name.png``; its path, also printed (pytest shows it with the test's output)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.png"
    size = driver.get_window_size()
    width, height = size["width"], size["height"]
    page, view = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.innerHeight]")
    try:
        driver.set_window_size(width, min(height + max(0, page - view), TALLEST_SCREENSHOT))
        if not driver.save_screenshot(str(path)):
            raise AssertionError(f"no screenshot written to {path}")
    finally:
        driver.set_window_size(width, height)
    print(f"screenshot: {path}")
    return path


def accessibility_problems(driver: WebDriver) -> list[str]:
    """The page's accessibility problems (tests/support/accessibility.py), each prefixed
    by the page's address."""
    return [f"{driver.current_url}: {p}" for p in page_problems(driver.page_source)]
