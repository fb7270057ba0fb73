"""The operator console in a real browser (headless Chromium driven by Selenium) against
a live ``recovery serve``: an operator logs in, a real alert posted to the webhook parks a
step that needs approval, the Approvals page shows it with its plan, the operator
approves it with a reason, and the run's record appears in History and on its own page
with the host's outcome, the job events and the output. A viewer reads every page and
finds no form but logout; the POSTs an operator's forms send, forged from the viewer's
session, are refused with and without the CSRF token. Every page passes the basic
accessibility checks (tests/support/accessibility.py), its palette included, and reads
with JavaScript off.

Screenshots of each page go to test-artifacts/console/ (tests/support/browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.accessibility import contrast_problems
from tests.support.browser import accessibility_problems, screenshot
from tests.support.console_site import (
    PAGES,
    SESSION_COOKIE,
    ConsoleSite,
    console_site,
    csrf_token,
    forged_post,
    login,
    logout,
    path_of,
    post_forms,
    script_post,
)

pytestmark = [pytest.mark.slow, pytest.mark.requires("chromium")]

SHOWN = 10            # seconds: an element a page should show appears within this
PLAN_FIELD = "say_hello.yml"     # the playbook the parked step's plan names
TITLE = "InfraFabric Recovery"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    with console_site(tmp_path_factory.mktemp("console")) as live:
        yield live


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def texts(driver, selector: str) -> list[str]:
    return [e.text for e in by_css(driver, selector)]


def until(driver, predicate, what: str):
    """``predicate(driver)`` once it is true (bounded: SHOWN seconds); an element
    replaced under it while a page loads is read again."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, SHOWN, ignored_exceptions=(
            StaleElementReferenceException,)).until(predicate)
    except TimeoutException:
        raise AssertionError(f"{what}, on {driver.current_url}: headings "
                             f"{texts(driver, 'h1, h2')}") from None


def one(driver, selector: str):
    """The one element ``selector`` finds on the page (waited for, bounded)."""
    found = until(driver, lambda d: by_css(d, selector), f"nothing matches {selector!r}")
    assert len(found) == 1, f"{len(found)} elements match {selector!r}"
    return found[0]


def heading(driver, text: str) -> None:
    """The page's ``<h1>`` reads ``text`` (the page a click led to has loaded)."""
    until(driver, lambda d: texts(d, "h1") == [text], f"no <h1>{text}</h1>")


def go(driver, site: ConsoleSite, path: str, title: str) -> None:
    driver.get(site.url + path)
    heading(driver, title)


def nav(driver, path: str, title: str) -> None:
    """A link of the main navigation followed."""
    one(driver, f"nav[aria-label=Main] a[href='{path}']").click()
    heading(driver, title)


def accessible(driver) -> None:
    assert accessibility_problems(driver) == []


def session(driver) -> httpx.Cookies:
    cookies = httpx.Cookies()
    for cookie in driver.get_cookies():
        cookies.set(cookie["name"], cookie["value"])
    return cookies


def own_resources(driver, site: ConsoleSite) -> list[str]:
    """Every stylesheet, script and image the page loads: none from another origin (the
    console fetches nothing from the internet)."""
    found = []
    for selector, attribute in (("link[href]", "href"), ("script[src]", "src"),
                                ("img[src]", "src")):
        found += [e.get_attribute(attribute) for e in by_css(driver, selector)]
    foreign = [u for u in found if not (u.startswith(site.url + "/") or u.startswith("data:"))]
    assert foreign == [], f"fetched from elsewhere: {foreign}"
    return found


# -- logging in ----------------------------------------------------------------------------

def login_form(client: httpx.Client, site: ConsoleSite) -> str:
    """The login page read by a plain HTTP client; the CSRF token its form carries."""
    page = client.get(site.url + "/login")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page.text)
    assert found, page.text
    return found.group(1)


def test_the_login_page_takes_a_person_s_token_and_refuses_the_others(browser, site):
    browser.delete_all_cookies()
    browser.get(site.url + "/approvals")                  # not logged in: sent to log in
    heading(browser, "Log in")
    assert path_of(browser, site.url).startswith("/login?next=")
    screenshot(browser, "login")
    accessible(browser)

    login(browser, site.url, "not-a-token-0123456789")
    heading(browser, "Log in")
    assert one(browser, "p.error[role=alert]").text
    login(browser, site.url, site.served.token)           # the webhook's: not a person's
    heading(browser, "Log in")
    assert one(browser, "p.error[role=alert]").text
    browser.get(site.url + "/")                           # and not logged in by them
    heading(browser, "Log in")

    with httpx.Client() as client:                        # the statuses behind those pages
        csrf = login_form(client, site)
        wrong = client.post(site.url + "/login", data={"token": "nope", "csrf_token": csrf})
        assert wrong.status_code == 401
        csrf = login_form(client, site)
        machine = client.post(site.url + "/login",
                              data={"token": site.served.token, "csrf_token": csrf})
        assert machine.status_code == 403
        forged = client.post(site.url + "/login", data={"token": site.viewer_token})
        assert forged.status_code == 400                  # no CSRF token: not logged in


# -- an operator approves a parked step -----------------------------------------------------

def test_an_operator_approves_a_parked_step_and_watches_it_to_its_record(browser, site):
    run_id = site.park("cache-1")
    login(browser, site.url, site.operator_token)
    heading(browser, "Now")
    assert path_of(browser, site.url) == "/"
    pending = len(site.pending())
    assert browser.title.startswith(f"({pending}) {TITLE}"), browser.title
    assert "cache-1" in one(browser, "#pending").text
    for section in ("#incidents", "#degraded", "#switches", "#cooldowns"):
        one(browser, section)
    screenshot(browser, "now")
    accessible(browser)
    stylesheets = [u for u in own_resources(browser, site) if u.endswith(".css")]
    assert stylesheets, "the page links no stylesheet"
    for url in stylesheets:                               # the palette as served
        css = httpx.get(url, cookies=session(browser), timeout=10)
        assert css.status_code == 200
        assert contrast_problems(css.text) == [], url

    nav(browser, "/approvals", "Approvals")
    article = one(browser, f"article.approval[data-run-id='{run_id}']")
    assert "cache-1" in article.find_element("css selector", "h2").text
    assert PLAN_FIELD in article.find_element("css selector", "pre.plan").text
    assert "alertmanager" in article.text                 # who (what) asked
    screenshot(browser, "approvals")
    accessible(browser)
    reason = one(browser, f"#reason-{run_id}")
    reason.send_keys("seen in the browser test")
    one(browser, f"form[action='/approvals/{run_id}'] button[value=approve]").click()
    heading(browser, "Approvals")
    assert path_of(browser, site.url) == "/approvals"
    assert one(browser, "p.flash[role=status]").text
    assert not by_css(browser, f"article.approval[data-run-id='{run_id}']")

    run = site.finished(run_id)
    assert run["status"] == "succeeded", run
    [decided] = [a for a in site.api("GET", "/api/v1/approvals?status=approved").json()[
        "approvals"] if a["run_id"] == run_id]
    assert (decided["decided_by"], decided["reason"]) == ("operator",
                                                          "seen in the browser test")

    nav(browser, "/history", "History")
    link = one(browser, f"#runs a[href='/runs/{run_id}']")
    row = link.find_element("xpath", "./ancestor::tr")
    assert "succeeded" in row.text and "greeter" in row.text, row.text
    screenshot(browser, "history")
    accessible(browser)
    go(browser, site, "/history?component=nothing-by-that-name", "History")
    assert not by_css(browser, f"#runs a[href='/runs/{run_id}']")     # the filter filters
    go(browser, site, "/history?component=greeter&status=succeeded", "History")
    one(browser, f"#runs a[href='/runs/{run_id}']").click()

    heading(browser, f"Run {run_id}")
    assert "succeeded" in one(browser, "dl#summary").text
    assert "test-alert" in one(browser, "#alert").text
    assert "approv" in one(browser, "#gates").text.lower()
    [host] = by_css(browser, "table#hosts tbody tr") or by_css(browser, "table#hosts tr")[1:]
    assert "cache-1" in host.text and "ok" in host.text.split(), host.text
    events = [e.text for e in by_css(browser, "ol#timeline > li")]
    assert any("Say hello" in e for e in events), events
    assert "hello from cache-1" in one(browser, "pre#stdout").text
    screenshot(browser, "run")
    accessible(browser)

    nav(browser, "/charts", "Charts")
    assert by_css(browser, "svg"), "no chart drawn"
    assert "greeter" in browser.find_element("css selector", "main, body").text
    screenshot(browser, "charts")
    accessible(browser)

    logout(browser)
    heading(browser, "Log in")
    browser.get(site.url + "/")                           # the session is gone
    heading(browser, "Log in")


# -- a viewer reads, and changes nothing ---------------------------------------------------

def operator_actions(browser, site: ConsoleSite, run_id: str) -> set[str]:
    """The paths the operator's POST forms send to, on every page but the login."""
    login(browser, site.url, site.operator_token)
    heading(browser, "Now")
    actions: set[str] = set()
    for title, path in [*((t.capitalize(), p) for t, p in PAGES.items()),
                        (f"Run {run_id}", f"/runs/{run_id}")]:
        go(browser, site, path, title)
        actions |= {a.removeprefix(site.url) for a in post_forms(browser)}
    logout(browser)
    heading(browser, "Log in")
    return actions - {"/logout", "/login"}


def test_a_viewer_reads_every_page_and_a_forged_post_is_refused(browser, site):
    run_id = site.park("cache-2")
    actions = operator_actions(browser, site, run_id)
    assert f"/approvals/{run_id}" in actions, actions

    login(browser, site.url, site.viewer_token)
    heading(browser, "Now")
    cookie = browser.get_cookie(SESSION_COOKIE)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    for title, path in [*((t.capitalize(), p) for t, p in PAGES.items()),
                        (f"Run {run_id}", f"/runs/{run_id}")]:
        go(browser, site, path, title)
        assert post_forms(browser) == [site.url + "/logout"], (path, post_forms(browser))
        accessible(browser)
    go(browser, site, "/approvals", "Approvals")
    article = one(browser, f"article.approval[data-run-id='{run_id}']")
    assert PLAN_FIELD in article.find_element("css selector", "pre.plan").text
    assert not by_css(browser, "button[value=approve], button[value=reject]")
    screenshot(browser, "viewer-approvals")

    fields = {"decision": "approve", "reason": "forged", "component": "greeter",
              "target": "cache-2", "for": "1h"}
    csrf = csrf_token(browser)                            # the viewer's own, from logout
    refused = {}
    for action in sorted(actions):
        refused[action] = (forged_post(browser, site.url, action, fields),
                           forged_post(browser, site.url, action,
                                       {**fields, "csrf_token": csrf}))
    assert refused == {action: (400, 403) for action in actions}
    blocked = script_post(browser, f"/approvals/{run_id}", {**fields, "csrf_token": csrf})
    assert blocked["status"] == -1, blocked        # the page's own policy stops a script
    assert [a["run_id"] for a in site.pending() if a["run_id"] == run_id] == [run_id]
    assert site.run(run_id)["status"] == "pending_approval"

    logout(browser)
    heading(browser, "Log in")


# -- reading without JavaScript ------------------------------------------------------------

def test_every_page_reads_without_javascript(browser_without_js, site):
    driver = browser_without_js
    run_id = site.park("localhost")
    login(driver, site.url, site.viewer_token)            # a plain form: no script needed
    heading(driver, "Now")
    assert "localhost" in one(driver, "#pending").text
    go(driver, site, "/approvals", "Approvals")
    article = one(driver, f"article.approval[data-run-id='{run_id}']")
    assert PLAN_FIELD in article.find_element("css selector", "pre.plan").text
    go(driver, site, "/history", "History")
    one(driver, f"#runs a[href='/runs/{run_id}']").click()
    heading(driver, f"Run {run_id}")
    assert "pending" in one(driver, "dl#summary").text.lower()
    go(driver, site, "/charts", "Charts")
    assert by_css(driver, "svg"), "the charts need JavaScript to show"
    screenshot(driver, "charts-without-javascript")
    logout(driver)
    heading(driver, "Log in")
