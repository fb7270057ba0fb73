"""The console's pages as docs/console.md shows them: ``make screenshots`` (or
``python -m tests.support.console_screenshots [FOLDER]``, docs/console by default).

A live service on a throwaway home (tests/support/console_site.py), given something to
show: a run approved and ended, a step waiting for approval, a kill switch; then each page
taken in headless Chromium, whole, as an operator sees it (``login``, ``now``,
``approvals``, ``history``, ``run``, ``charts``) and the Approvals page as a viewer sees
it (``approvals-viewer``: no buttons). Run it again when a page changes, and commit the
PNGs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from tests.support.browser import chromium, screenshot
from tests.support.console_site import PAGES, console_site, login, logout
from tests.support.paths import ROOT

DEFAULT_FOLDER = ROOT / "docs" / "console"
# Every picture it takes (docs/console.md shows each): the pages as an operator sees them,
# a run's page, and the Approvals page as a viewer sees it.
SHOTS = ("login", *PAGES, "run", "approvals-viewer")


def take(folder: Path) -> list[Path]:
    """Every page's screenshot written into ``folder``; their paths."""
    taken: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="console-shots-") as root, \
            console_site(Path(root)) as site:
        if httpx.get(site.url + "/login", timeout=10).status_code == 404:
            raise SystemExit("no console in this tree: GET /login answers 404")
        done = site.park("cache-1")
        answer = site.api("POST", f"/api/v1/approvals/{done}",
                          json={"decision": "approve", "reason": "disk checked, go"})
        assert answer.status_code == 200, answer.text
        site.finished(done)
        site.park("cache-2")                             # left waiting for approval
        switched = site.recovery("disable", "--component", "greeter", "--for", "2h",
                                 "--reason", "maintenance window")
        assert switched.returncode == 0, switched.stderr

        driver = chromium()
        try:
            driver.get(site.url + "/login")
            taken.append(screenshot(driver, "login", folder))
            login(driver, site.url, site.operator_token)
            for name, path in PAGES.items():
                driver.get(site.url + path)
                taken.append(screenshot(driver, name, folder))
                if name == "history":
                    driver.get(f"{site.url}/runs/{done}")
                    taken.append(screenshot(driver, "run", folder))
            logout(driver)
            login(driver, site.url, site.viewer_token)
            driver.get(site.url + "/approvals")
            taken.append(screenshot(driver, "approvals-viewer", folder))
        finally:
            driver.quit()
    assert sorted(p.stem for p in taken) == sorted(SHOTS), taken
    return taken


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else DEFAULT_FOLDER
    for path in take(folder.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
