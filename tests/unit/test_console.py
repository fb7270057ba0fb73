"""The console (webhook.console) through Flask's test client on a real store: the login
session and its cookie, CSRF on every POST, what a viewer and an operator see and may
do, an approval decided from the page, history's filters, a run's page from the real
artifacts of a real playbook run, the count of approvals waiting in every title, and
each page's outline (one h1, headings in order, a label on every control)."""

from __future__ import annotations

import os
import stat
import time

import pytest

from engine.config import load_config
from engine.lifecycle import IncidentState, RunStatus
from engine.records import Switch
from engine.security.tokens import TOKENS_FILE, TokenFile
from tests.support.console_app import METRICS, VERA, Console, outline
from tests.support.steps import HELLO, park_a_step
from tests.support.webhook_app import ALICE, BOB, WEBHOOK

PAGES = ("/", "/approvals", "/history", "/charts")
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def console(engine_env) -> Console:
    return Console(load_config(engine_env.config_path))


@pytest.fixture
def parked(engine_env, run_incident):
    ctx, incident, run, marker = park_a_step(engine_env, run_incident)
    return Console(ctx.config, context=ctx), incident, run, marker


def text(answer) -> str:
    return answer.get_data(as_text=True)


# -- the session ----------------------------------------------------------------------------


def test_login_keeps_a_signed_httponly_strict_session_and_logout_ends_it(console):
    assert console.get("/").status_code == 303
    answer = console.login(ALICE)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("recovery_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert ALICE not in cookie
    page = console.get("/")
    assert page.status_code == 200 and "<h1>Now</h1>" in text(page)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert "alice (operator)" in text(page)
    out = console.post("/logout")
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert console.get("/").status_code == 303


def test_the_cookie_is_secure_over_https(engine_env):
    console = Console(load_config(engine_env.config_path), base_url="https://localhost")
    assert "Secure" in console.login(VERA).headers["Set-Cookie"]


def test_a_wrong_token_is_a_401_and_a_token_of_another_role_a_403(console):
    wrong = console.login("not-a-token-0123456789abcdef")
    assert wrong.status_code == 401
    assert 'role="alert"' in text(wrong) and "<h1>Log in</h1>" in text(wrong)
    for token, role in ((WEBHOOK, "webhook"), (METRICS, "metrics")):
        refused = console.login(token)
        assert refused.status_code == 403 and f"is a {role} token" in text(refused)
    assert console.get("/").status_code == 303         # no session from any of them


def test_a_page_without_a_session_goes_to_login_and_back_after_it(console):
    answer = console.get("/history?status=failed")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/login?next=/history?status%3Dfailed"
    back = console.login(VERA, next_page="/history?status=failed")
    assert back.headers["Location"] == "/history?status=failed"


def test_a_removed_token_logs_its_session_out_at_once(console, engine_env):
    console.login(VERA)
    assert console.get("/").status_code == 200
    TokenFile(console.ctx.config.home / TOKENS_FILE).remove("vera")
    assert console.get("/").status_code == 303
    assert console.get("/").status_code == 303


def test_the_session_key_is_kept_private_and_shared_by_every_app_of_the_home(console,
                                                                             engine_env):
    secret = console.ctx.config.home / "console.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    console.login(ALICE)
    cookie = console.client.get_cookie("recovery_session").value
    other = Console(load_config(engine_env.config_path))     # another worker, a restart
    other.client.set_cookie("recovery_session", cookie)
    assert other.get("/").status_code == 200
    os.chmod(secret, 0o644)
    with pytest.raises(Exception, match="chmod 600"):
        Console(load_config(engine_env.config_path))


# -- CSRF and roles -------------------------------------------------------------------------


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(parked):
    console, _, run, _ = parked
    console.login(ALICE)
    form = {"decision": "approve", "reason": "forged"}
    assert console.post(f"/approvals/{run.id}", form, csrf=False).status_code == 400
    wrong = console.post(f"/approvals/{run.id}", {**form, "csrf_token": "x" * 43})
    assert wrong.status_code == 400 and "CSRF" in text(wrong)
    assert console.store.get_approval(run.id).status == "pending"
    login = Console(console.ctx.config)
    assert login.client.post("/login", data={"token": ALICE}).status_code == 400


def test_a_viewer_sees_everything_and_no_form_that_changes_anything(parked):
    console, incident, run, _ = parked
    console.login(VERA)
    for path in (*PAGES, f"/runs/{run.id}"):
        page = console.get(path)
        assert page.status_code == 200, path
        assert outline(text(page)).post_forms() == ["/logout"], path
    assert f'data-run-id="{run.id}"' in text(console.get("/approvals"))
    csrf = console.csrf()
    for path, form in ((f"/approvals/{run.id}", {"decision": "approve"}),
                       (f"/incidents/{incident.id}/cancel", {}),
                       ("/switches/disable", {"for": "1h"}),
                       ("/switches/enable", {}), ("/locks/unlock", {"target": "cache-1"})):
        refused = console.post(path, {**form, "csrf_token": csrf})
        assert refused.status_code == 403, path
        assert "role viewer" in text(refused)
        assert console.post(path, form, csrf=False).status_code == 400   # forged: refused too
    assert console.store.get_approval(run.id).status == "pending"
    assert not console.store.active_switches(time.time())


# -- approvals ----------------------------------------------------------------------------


def test_an_operator_approves_a_parked_step_from_the_page(parked):
    console, incident, run, marker = parked
    console.login(ALICE)
    page = text(console.get("/approvals"))
    assert outline(page).title == "(1) InfraFabric Recovery — Approvals"
    assert f'<article class="approval" data-run-id="{run.id}"' in page
    assert "action test.touch" in page and str(marker) in page
    assert f'<form method="post" action="/approvals/{run.id}"' in page
    assert f'<label for="reason-{run.id}">Reason</label>' in page
    decided = console.post(f"/approvals/{run.id}", {"decision": "approve",
                                                   "reason": "looks right"})
    assert decided.status_code == 303 and decided.headers["Location"] == "/approvals"
    after = text(console.get("/approvals"))
    assert 'class="flash" role="status"' in after and f"approved run {run.id}" in after
    assert outline(after).title == "InfraFabric Recovery — Approvals"
    approval = console.store.get_approval(run.id)
    assert (approval.status, approval.decided_by, approval.reason) == (
        "approved", "alice", "looks right")
    assert console.store.get_run(run.id).status == RunStatus.QUEUED
    again = console.post(f"/approvals/{run.id}", {"decision": "reject"})
    assert again.status_code == 303
    assert 'class="flash error" role="alert"' in text(console.get("/approvals"))
    assert console.store.get_approval(run.id).decided_by == "alice"


def test_rejecting_from_the_page_records_who_and_why(parked):
    console, incident, run, _ = parked
    console.login(BOB)
    console.post(f"/approvals/{run.id}", {"decision": "reject", "reason": "not now"})
    assert console.store.get_run(run.id).reason == "rejected by bob: not now"
    assert console.post("/approvals/run-nope", {"decision": "approve"}).status_code == 404
    bad = console.post(f"/approvals/{run.id}", {"decision": "maybe"})
    assert bad.status_code == 400 and "text/html" in bad.content_type


def test_every_page_title_counts_the_approvals_waiting(parked):
    console, *_ = parked
    console.login(VERA)
    for path in PAGES:
        assert outline(text(console.get(path))).title.startswith("(1) InfraFabric Recovery — ")


# -- Now: incidents, switches, locks --------------------------------------------------------


def test_now_shows_the_open_incident_and_an_operator_cancels_it(parked):
    console, incident, run, _ = parked
    console.login(ALICE)
    page = text(console.get("/"))
    for section in ("pending", "incidents", "degraded", "switches", "cooldowns"):
        assert f'id="{section}"' in page, section
    assert incident.id in page and "flush" in page and "cache-1" in page
    assert "test_down" in page
    answer = console.post(f"/incidents/{incident.id}/cancel")
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    assert console.store.get_incident(incident.id).state == IncidentState.CANCELED
    assert incident.id not in text(console.get("/")).split('id="incidents"')[1].split(
        "</section>")[0]


def test_an_operator_disables_and_enables_auto_recovery_and_breaks_a_lock(console):
    console.login(ALICE)
    bad = console.post("/switches/disable", {"for": "soon"})
    assert bad.status_code == 303 and "for:" in text(console.get("/"))
    assert not console.store.active_switches(time.time())
    console.post("/switches/disable", {"target": "cache-1", "for": "30m", "reason": "maint"})
    [switch] = console.store.active_switches(time.time())
    assert (switch.target, switch.reason, switch.created_by) == ("cache-1", "maint", "alice")
    page = text(console.get("/"))
    assert "maint" in page and "Enable target=cache-1" in page.replace("target cache-1",
                                                                      "target=cache-1")
    console.post("/switches/enable", {"target": "cache-1", "component": ""})
    assert not console.store.active_switches(time.time())
    assert console.store.acquire_lock("cache-1", "someone", 60) is not None
    assert "Unlock cache-1" in text(console.get("/"))
    console.post("/locks/unlock", {"target": "cache-1"})
    assert console.store.get_lock("cache-1") is None
    assert "broke the lock on cache-1" in text(console.get("/"))
    actions = [e.action for e in console.store.list_events(limit=10)]
    assert {"disable", "enable", "unlock"} <= set(actions)


def test_a_switch_or_unlock_from_the_page_names_the_host_an_alias_names(engine_env):
    """An alert's instance label is often an alias (``cache-1.example:9121``); the gates
    compare a switch with the host the inventory names, so a switch kept under the alias
    would stop nothing while the page said auto-recovery was off (the CLI and the API
    resolve it the same way)."""
    engine_env.runbook("cache", "component: cache\nstrategies: [{name: a, action: test.ok}]\n")
    console = Console(load_config(engine_env.config_path))
    console.login(ALICE)
    console.post("/switches/disable", {"component": "cache", "target": "cache-1.example:9121",
                                       "for": "30m"})
    [switch] = console.store.active_switches(time.time())
    assert (switch.component, switch.target) == ("cache", "cache-1")
    assert switch.covers("cache", "cache-1")
    console.post("/switches/enable", {"component": "cache", "target": "cache-1.example:9121"})
    assert not console.store.active_switches(time.time())
    assert console.store.acquire_lock("cache-1", "someone", 60) is not None
    console.post("/locks/unlock", {"target": "cache-1.example:9121"})
    assert console.store.get_lock("cache-1") is None
    assert "broke the lock on cache-1" in text(console.get("/"))

    gone = Switch(id="sw-gone", component="retired", target="cache-1.example:9121",
                  until=None, reason="", created_by="bob", created_at=time.time())
    console.store.add_switch(gone)    # kept as typed before, or of a runbook since removed
    console.post("/switches/enable", {"component": "retired",
                                      "target": "cache-1.example:9121"})
    assert not console.store.active_switches(time.time())


def test_a_path_of_the_console_that_is_no_page_answers_an_html_page(console):
    """A browser at a mistyped address, or at an action's address by GET, gets a page
    saying so with the console's headers, not the API's JSON; the API keeps its JSON,
    and so does a client that prefers it (curl's */* included)."""
    console.login(VERA)
    for path, status in (("/nope", 404), ("/switches/disable", 405), ("/runs/a/b", 404)):
        answer = console.get(path, headers=BROWSER)
        assert answer.status_code == status, path
        assert answer.mimetype == "text/html" and "<h1>" in text(answer), path
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert console.get("/api/v1/nope", headers=BROWSER).is_json
    assert console.get("/healthz/nope", headers=BROWSER).is_json
    assert console.get("/nope", headers={"Accept": "*/*"}).is_json


# -- history, a run, charts -------------------------------------------------------------------

@pytest.fixture
def played(engine_env, run_incident):
    """A real playbook run (ansible-runner) and an action run of another component."""
    engine_env.playbook("hello.yml", HELLO)
    engine_env.runbook("hello", "strategies: [{name: hello, playbook: hello.yml}]\n")
    engine_env.runbook("other", "component: other\nstrategies: [{name: fine, action: test.ok}]\n")
    ctx = engine_env.context()
    opened = run_incident(ctx, "hello", target="localhost")
    [run] = ctx.store.query_runs(incident_id=opened.incident.id)
    assert run.status == RunStatus.SUCCEEDED, run.reason
    run_incident(ctx, "other", target="localhost")
    return Console(ctx.config, context=ctx), run


def test_history_filters_by_component_status_target_and_time(played):
    console, run = played
    console.login(VERA)
    every = text(console.get("/history"))
    assert f'<a href="/runs/{run.id}">' in every and every.count('<a href="/runs/') == 2
    mine = text(console.get("/history?component=hello"))
    assert f'<a href="/runs/{run.id}">' in mine and mine.count('<a href="/runs/') == 1
    assert text(console.get("/history?status=failed")).count('<a href="/runs/') == 0
    assert text(console.get("/history?target=nowhere")).count('<a href="/runs/') == 0
    assert text(console.get("/history?since=1h")).count('<a href="/runs/') == 2
    future = int(time.time()) + 3600
    assert text(console.get(f"/history?since={future}")).count('<a href="/runs/') == 0
    bad = console.get("/history?since=yesterday-ish")
    assert bad.status_code == 400 and 'role="alert"' in text(bad)


def test_a_runs_page_shows_its_hosts_events_and_output_from_its_artifacts(played):
    console, run = played
    console.login(VERA)
    page = text(console.get(f"/runs/{run.id}"))
    assert f"<h1>Run {run.id}</h1>" in page
    hosts = page.split('<table id="hosts">')[1].split("</table>")[0]
    assert "localhost" in hosts and "ok" in hosts
    timeline = page.split('<ol id="timeline">')[1].split("</ol>")[0]
    assert "playbook_on_start" in timeline and "runner_on_ok" in timeline
    assert timeline.index("playbook_on_start") < timeline.index("runner_on_ok")
    assert "say something" in timeline
    stdout = page.split('<pre id="stdout">')[1].split("</pre>")[0]
    assert "hello from localhost" in stdout
    assert "succeeded" in page.split('<dl id="summary">')[1].split("</dl>")[0]
    for gate in ("cooldown", "lock"):
        assert gate in page.split('id="gates"')[1].split("</section>")[0]
    missing = console.get("/runs/run-nope")
    assert missing.status_code == 404 and "text/html" in missing.content_type


def test_charts_draw_runs_per_component_and_time_to_recover(played):
    console, run = played
    console.login(VERA)
    page = text(console.get("/charts?days=7"))
    assert "<h2 id=\"chart-1\">hello</h2>" in page and ">other</h2>" in page
    assert page.count('<rect class="bar succeeded"') == 2
    assert page.count('<circle class="dot"') == 2          # two incidents recovered
    assert "<script" not in page and "http" not in page.split("<main>")[1]


# -- every page's outline -------------------------------------------------------------------


def test_every_page_has_one_h1_headings_in_order_labels_and_the_main_nav(played, parked):
    console, run = played
    approvals = parked[0]
    approvals.login(ALICE)
    console.login(ALICE)
    wanted = {"Now": "/", "Approvals": "/approvals", "History": "/history",
              "Charts": "/charts"}
    for who, path in ((console, p) for p in (*PAGES, f"/runs/{run.id}")):
        check(who.get(path), path, wanted)
    check(approvals.get("/approvals"), "/approvals with one", wanted)
    check(approvals.get("/"), "/ with one", wanted)
    login = Console(console.ctx.config).get("/login")
    shape = outline(text(login))
    assert shape.lang == "en" and [h for h, _ in shape.headings].count(1) == 1
    assert not shape.unlabeled() and shape.ids.get("token") == "input"


def check(answer, path: str, nav: dict[str, str]) -> None:
    assert answer.status_code == 200, path
    shape = outline(text(answer))
    assert shape.lang == "en", path
    assert [level for level, _ in shape.headings].count(1) == 1, (path, shape.headings)
    assert shape.headings[0][0] == 1, path
    assert not shape.skipped_levels(), (path, shape.skipped_levels())
    assert not shape.unlabeled(), (path, shape.unlabeled())
    assert shape.nav_label == "Main", path
    assert {k: v for k, v in shape.nav_links.items() if k in nav} == nav, path
    assert "Log out" in shape.buttons and all(b.strip() for b in shape.buttons), path


def test_what_an_alert_carries_is_shown_escaped(engine_env, run_incident):
    engine_env.runbook("other", "component: other\nstrategies: [{name: fine, action: test.ok}]\n")
    ctx = engine_env.context()
    opened = run_incident(ctx, "other", target="localhost",
                          labels={"alertname": "<script>alert(1)</script>"})
    [run] = ctx.store.query_runs(incident_id=opened.incident.id)
    console = Console(ctx.config, context=ctx)
    console.login(VERA)
    page = text(console.get(f"/runs/{run.id}"))
    alert = page.split('id="alert"')[1].split("</section>")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in alert
    assert "<script" not in page


@pytest.mark.parametrize("where", ["//evil.example/", "/\t/evil.example/", "https://evil.example/",
                                   "/\\evil.example", "javascript:alert(1)"])
def test_after_login_only_a_path_here_is_followed(console, where):
    assert console.login(VERA, next_page=where).headers["Location"] == "/"
