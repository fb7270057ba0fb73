"""A live ``recovery serve`` set up for the console, and what a person does in it with a
browser: the browser tests (tests/integration/test_console_browser.py) and the docs'
screenshots (tests/support/console_screenshots.py) use the same one.

The service runs a runbook, ``guarded``, whose one step plays a local playbook (a
``debug`` task: harmless, with a per-host outcome) and needs approval: each test alert
for a host parks that step, as a destructive step would park. It holds an operator token
(the first start's) and a viewer token (``recovery token add --role viewer``).

    with console_site(tmp_path) as site:
        run_id = site.park("cache-1")          # an alert in; the step waits for approval
        login(driver, site.url, site.operator_token)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.alerts import alert_payload
from tests.support.engine_env import EngineEnv
from tests.support.service import GRACE, Served, free_port, post_alerts, wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

RUNBOOK = "guarded"
PLAYBOOK = "say_hello.yml"
GREETING = "hello from"                  # in the playbook's output, then "<host>"
SAY_HELLO = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: Say hello
          ansible.builtin.debug:
            msg: "hello from {{ inventory_hostname }}"
"""
PARK_BOUND = 60.0        # seconds: an alert in, its step parked for approval
RUN_BOUND = 120.0        # seconds: an approved step played and verified on a loaded machine
FINAL = ("succeeded", "failed", "partial", "canceled", "refused", "skipped", "timed_out")
SESSION_COOKIE = "recovery_session"
# Pages of the console (docs/console.md): the screenshot's name -> its path.
PAGES = {"now": "/", "approvals": "/approvals", "history": "/history", "charts": "/charts"}


@dataclass
class ConsoleSite:
    """The service, its engine home and the two tokens a person logs in with."""

    served: Served
    env: EngineEnv
    operator_token: str
    viewer_token: str

    @property
    def url(self) -> str:
        return self.served.url

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """An HTTP API call with the operator's token."""
        return httpx.request(method, self.served.url + path, timeout=30, **kw,
                             headers={"Authorization": f"Bearer {self.operator_token}"})

    def pending(self) -> list[dict]:
        answer = self.api("GET", "/api/v1/approvals")
        assert answer.status_code == 200, answer.text
        return answer.json()["approvals"]

    def park(self, host: str) -> str:
        """A test alert for ``host`` posted to the webhook as Alertmanager posts it; the
        run id of the step it parked for approval (bounded wait)."""
        assert post_alerts(self.served, alert_payload(self.env.root, host))["accepted"] == 1
        parked = wait_for(lambda: [a for a in self.pending() if a["target"] == host],
                          PARK_BOUND, every=0.2)
        assert parked, f"no approval asked for {host}:\n{self.served.stderr()[-3000:]}"
        return parked[0]["run_id"]

    def run(self, run_id: str) -> dict:
        """The run's record as the HTTP API gives it."""
        answer = self.api("GET", f"/api/v1/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()["run"]

    def finished(self, run_id: str) -> dict:
        """The run's record once it has ended (bounded wait)."""
        ended = wait_for(lambda: (r := self.run(run_id)) and r["status"] in FINAL and r,
                         RUN_BOUND, every=0.5)
        assert ended, f"run {run_id} not ended: {self.run(run_id)}\n" \
                      f"{self.served.stderr()[-3000:]}"
        return ended

    def recovery(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", *args],
                              env=self.served.environ(), capture_output=True, text=True,
                              timeout=60)


def prepare(root: Path) -> EngineEnv:
    """An engine home in ``root`` with the ``guarded`` runbook and its playbook."""
    env = EngineEnv(root)
    env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                     "graceful_timeout: 2s}")
    env.playbook(PLAYBOOK, SAY_HELLO)
    env.runbook(RUNBOOK, f"""
        component: greeter
        match:
          - alertname="test-alert"
        target: "{{{{ labels.instance }}}}"
        strategies:
          - name: say_hello
            playbook: {PLAYBOOK}
            approval: required
    """)
    return env


@contextmanager
def console_site(root: Path) -> Iterator[ConsoleSite]:
    """The service started on a fresh home in ``root``, ready, with a viewer token
    issued; everything it started is killed at the end, even on a failure."""
    env = prepare(root)
    served = Served(env, root / "home", free_port())
    try:
        served.start()
        served.wait_ready()
        site = ConsoleSite(served, env, (served.home / "operator.token").read_text().strip(),
                           "")
        added = site.recovery("token", "add", "vera", "--role", "viewer", "--json")
        assert added.returncode == 0, added.stderr
        site.viewer_token = json.loads(added.stdout)["token"]
        yield site
    finally:
        served.terminate()


# -- what a person does in the console with a browser -------------------------------------

def login(driver: WebDriver, url: str, token: str) -> None:
    """The login form filled in and sent; the page it leads to is loaded on return."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(url + "/login")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()


def logout(driver: WebDriver) -> None:
    """The logout form of the page sent (it needs no JavaScript)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] [type=submit]").click()


def path_of(driver: WebDriver, url: str) -> str:
    """The path (and query) the browser is at, without the service's address."""
    return driver.current_url.removeprefix(url)


def post_forms(driver: WebDriver) -> list[str]:
    """The action of every ``<form method="post">`` on the page."""
    from selenium.webdriver.common.by import By

    return [form.get_attribute("action") or ""
            for form in driver.find_elements(By.CSS_SELECTOR, "form")
            if (form.get_attribute("method") or "get").lower() == "post"]


def csrf_token(driver: WebDriver) -> str:
    """The CSRF token the page's forms carry (the logout form has one on every page)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "input[name=csrf_token]").get_attribute(
        "value") or ""


FETCH = """
const [path, fields, done] = arguments;
fetch(path, {method: "POST", credentials: "same-origin", redirect: "manual",
             body: new URLSearchParams(fields)})
  .then(r => done({status: r.status, type: r.type}))
  .catch(e => done({status: -1, error: String(e)}));
"""


def script_post(driver: WebDriver, path: str, fields: dict[str, str]) -> dict:
    """A POST sent by script from the page the browser is on: the console's
    Content-Security-Policy (``default-src 'none'``) stops it in the browser, so an
    injected script could not send one. ``{"status": -1, "error": ...}`` when blocked."""
    return driver.execute_async_script(FETCH, path, fields)


def forged_post(driver: WebDriver, base_url: str, path: str,
                fields: dict[str, str]) -> int:
    """A POST forged outside the browser with the browser's own session cookie (what a
    person holding a viewer's session could send): the server's answer, not followed."""
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    answer = httpx.post(base_url + path, data=fields, cookies=cookies,
                        follow_redirects=False, timeout=30)
    return answer.status_code
