"""The openwebui runbook against a STAND-IN for OpenWebUI (tests/support/openwebui_standin.py: a
real HTTP server speaking the subset of OpenWebUI's API the actions use, with faults to
inject; OpenWebUI itself is too heavy to install here) and a stand-in for the direct model
API behind it. The shipped runbooks/openwebui.yml is what runs.

Given an expired token, the application's registered httpx.Client gets a new one; given a
default model that does not answer, the next healthy fallback becomes the default; given
nothing left to try, the incident ends `degraded` with callers pointed at the direct model
API, until a passing probe (the default model answers, not merely /health) switches the
mode off. Credentials come from the environment
and never land under RECOVERY_HOME.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from engine import Recovery
from engine.actions.base import ActionContext
from engine.cli import main
from engine.lifecycle import IncidentState, RunStatus
from engine.reporting.reports import degraded_modes
from engine.service import probes
from tests.support.openwebui_fixtures import (
    API_KEY,
    EMAIL,
    MODE,
    PASSWORD,
    USER_EMAIL,
    USER_PASSWORD,
    assert_no_secret_under,
)


def with_probe(openwebui_env) -> None:
    """The shipped runbook with its (commented-out) probe switched on for webui-1."""
    path = openwebui_env.root / "runbooks" / "openwebui.yml"
    path.write_text(path.read_text() + "probe: {targets: webui-1, interval: 60s, "
                    "failure_type: model_unavailable}\n")


def runs(ctx, incident_id: str) -> list[tuple[str, RunStatus]]:
    found = ctx.store.query_runs(incident_id=incident_id, limit=None)
    return [(r.strategy, r.status) for r in sorted(found, key=lambda r: r.started_at)]


def action(ctx, name: str, target: str = "webui-1", **params):
    return ctx.python.call(name, ActionContext(
        component="openwebui", target=target, params=params,
        host_vars=ctx.host_vars(target), resources=ctx.resources))


# -- token_refresh (embedded) -------------------------------------------------------------

def test_an_expired_token_is_refreshed_on_the_applications_own_client(openwebui_env, webui):
    recovery = Recovery.from_config(openwebui_env.config_path)
    client = httpx.Client(base_url=webui.url, timeout=5,
                          headers={"Authorization": f"Bearer {webui.issue(EMAIL)}"})
    try:
        recovery.resources.register("openwebui", client, target="webui-1")
        assert client.get("/api/models").status_code == 200
        webui.expire_tokens()
        assert client.get("/api/models").status_code == 401      # the application's symptom
        incident = recovery.trigger("openwebui", "auth_expired", target="webui-1").wait(30)
        assert incident.state == IncidentState.RECOVERED, incident.reason
        assert client.get("/api/models").status_code == 200      # the same client works again
        assert webui.signins == 1
        ctx = recovery.context
        assert runs(ctx, incident.id) == [("token_refresh", RunStatus.SUCCEEDED)]
        assert "signed in again" in incident.reason and EMAIL in incident.reason
        assert "verified by openwebui.session_valid" in incident.reason
        assert not recovery.degraded(MODE)
    finally:
        recovery.close()
        client.close()
    assert_no_secret_under(openwebui_env.home, PASSWORD, *webui.issued)


def test_wrong_credentials_leave_the_client_as_it_was_and_the_incident_degrades(
        openwebui_env, webui, monkeypatch):
    monkeypatch.setenv("OPENWEBUI_PASSWORD", "not-the-password")
    recovery = Recovery.from_config(openwebui_env.config_path)
    stale = webui.issue(EMAIL)
    client = httpx.Client(base_url=webui.url, headers={"Authorization": f"Bearer {stale}"})
    try:
        recovery.resources.register("openwebui", client, target="webui-1")
        webui.expire_tokens()
        incident = recovery.trigger("openwebui", "auth_expired", target="webui-1").wait(30)
        assert incident.state == IncidentState.DEGRADED
        assert runs(recovery.context, incident.id) == [
            ("token_refresh", RunStatus.FAILED), ("graceful_degradation", RunStatus.SUCCEEDED)]
        [refresh] = [r for r in recovery.context.store.query_runs(incident_id=incident.id)
                     if r.strategy == "token_refresh"]
        assert "sign-in as admin@example.org refused: HTTP 400" in refresh.reason
        assert client.headers["Authorization"] == f"Bearer {stale}"   # untouched
        assert recovery.degraded(MODE)
    finally:
        recovery.close()
        client.close()
    assert_no_secret_under(openwebui_env.home, "not-the-password", *webui.issued)


def test_token_refresh_is_skipped_where_no_client_is_registered(openwebui_env, webui,
                                                                run_incident):
    ctx = openwebui_env.context()
    opened = run_incident(ctx, "openwebui", "webui-1", failure_type="unauthorized")
    assert runs(ctx, opened.incident.id) == [
        ("token_refresh", RunStatus.SKIPPED), ("graceful_degradation", RunStatus.SUCCEEDED)]
    assert opened.incident.state == IncidentState.DEGRADED
    assert webui.signins == 0


def test_a_model_that_hangs_is_passed_over_and_a_healthy_default_is_left_alone(
        openwebui_env, webui, monkeypatch):
    monkeypatch.delenv("OPENWEBUI_EMAIL")
    monkeypatch.delenv("OPENWEBUI_PASSWORD")
    monkeypatch.setenv("OPENWEBUI_API_KEY", API_KEY)          # an admin's API key instead
    ctx = openwebui_env.context()
    result = action(ctx, "openwebui.model_failover", answer_within=5)
    assert result.ok and result.data["switched"] is False and webui.default_models == "llama3"
    webui.model_down("llama3", hang=1.0)                       # slower than answer_within
    result = action(ctx, "openwebui.model_failover", answer_within=0.3)
    assert result.ok, result.summary
    assert webui.default_models == "mistral"
    assert result.data["tried"]["llama3"] == "no answer within 0.3s"
    assert webui.signins == 0                                  # the key, no sign-in
    assert action(ctx, "openwebui.default_model_answers").ok


def test_model_failover_needs_an_admin_and_a_fallback_list(openwebui_env, webui, monkeypatch):
    ctx = openwebui_env.context()
    monkeypatch.setenv("OPENWEBUI_EMAIL", USER_EMAIL)
    monkeypatch.setenv("OPENWEBUI_PASSWORD", USER_PASSWORD)
    refused = action(ctx, "openwebui.model_failover")
    assert not refused.ok and "must be an admin" in refused.summary
    no_list = action(ctx, "openwebui.model_failover", target="localhost")
    assert no_list.not_applicable and "openwebui_fallback_models" in no_list.summary
    # A host without fallbacks is not applicable whatever else the step says (a duration
    # its action cannot read included): skipped, never a failure that degrades the app.
    spelled = action(ctx, "openwebui.model_failover", target="localhost", answer_within="10s")
    assert spelled.not_applicable and "openwebui_fallback_models" in spelled.summary
    assert webui.default_models == "llama3"


# -- graceful_degradation -----------------------------------------------------------------

def test_nothing_answers_the_incident_ends_degraded_until_a_probe_passes(
        openwebui_env, webui, direct_api, run_incident):
    with_probe(openwebui_env)
    webui.model_down("llama3", "mistral", "phi3")
    ctx = openwebui_env.context()
    opened = run_incident(ctx, "openwebui", "webui-1", failure_type="model_unavailable")
    incident = opened.incident
    assert incident.state == IncidentState.DEGRADED, incident.reason
    assert runs(ctx, incident.id) == [("model_failover", RunStatus.FAILED),
                                      ("graceful_degradation", RunStatus.SUCCEEDED)]
    assert f"callers use the direct model API at {direct_api.url}/v1" in incident.reason
    assert webui.default_models == "llama3"                    # nothing healthy to switch to
    [mode] = [m for m in degraded_modes(ctx.store, ctx.config.degraded_modes, ctx.runbooks)
              if m["mode"] == MODE]
    assert mode["active"] and mode["capabilities"] == {"chat_ui": False,
                                                       "direct_model_api": True}
    assert {r["target"] for r in mode["reasons"]} == {"webui-1"}
    assert any("switched to degraded service" in r["reason"] for r in mode["reasons"])
    # OpenWebUI itself is up (/health 200) but the default model still does not answer:
    # a probe must not switch the mode off, chat would still fail.
    assert httpx.get(webui.url + "/health", timeout=5).status_code == 200
    assert probes.run_due(ctx, time.time()) == 1
    assert ctx.store.degraded_reasons(MODE)
    webui.model_up("llama3")                                   # the default answers again
    assert probes.run_due(ctx, time.time() + 61) == 1          # a passing probe
    assert ctx.store.degraded_reasons(MODE) == []


def test_an_application_reads_the_mode_and_its_health_check_switches_it_off(
        openwebui_env, webui, direct_api):
    recovery = Recovery.from_config(openwebui_env.config_path)
    try:
        webui.unhealthy = True
        incident = recovery.trigger("openwebui", "service_down", target="webui-1").wait(30)
        assert incident.state == IncidentState.DEGRADED
        assert recovery.degraded(MODE)
        assert f"{direct_api.url}/v1" in incident.reason
        webui.unhealthy = False
        assert recovery.healthy("openwebui", "webui-1") >= 1
        assert not recovery.degraded(MODE)
    finally:
        recovery.close()


def test_with_the_direct_api_down_too_there_is_nothing_to_degrade_to(
        openwebui_env, webui, direct_api, run_incident):
    direct_api.down = True
    ctx = openwebui_env.context()
    plan = action(ctx, "openwebui.graceful_degradation")
    assert plan.ok is False and "does not answer either" in plan.summary
    opened = run_incident(ctx, "openwebui", "webui-1", failure_type="service_down")
    assert opened.incident.state == IncidentState.FAILED
    assert ctx.store.degraded_reasons(MODE)                    # exhausted: the mode is on


# -- recovery test, and the whole path from an alert ----------------------------------------

@pytest.mark.parametrize("failure_type,strategy", [
    ("auth_expired", "token_refresh"), ("unauthorized", "token_refresh"),
    ("model_unavailable", "model_failover"), ("timeout", "model_failover"),
    ("service_down", "graceful_degradation")])
def test_recovery_test_names_the_strategy_for_each_failure_type(openwebui_env, capsys,
                                                                 failure_type, strategy):
    assert main(["--config", str(openwebui_env.config_path), "test", "-c", "openwebui", "-f",
                 failure_type, "-t", "webui-1", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["first_step"] == strategy and plan["target"] == "webui-1"


def test_model_failover_plans_whether_it_changes_the_configuration(openwebui_env, webui,
                                                                   run_incident):
    """The plan asks the default for one token: healthy, nothing would change (and a step
    whose approval asks `changes_config: true` runs without a person); down, it would
    (and the step parks for approval, nothing switched)."""
    ctx = openwebui_env.context()
    planned = ctx.python.call("openwebui.model_failover", ActionContext(
        component="openwebui", target="webui-1", host_vars=ctx.host_vars("webui-1")),
        plan=True)
    assert planned.ok and planned.data["facts"] == {"changes_config": False}, planned.summary
    path = openwebui_env.root / "runbooks" / "openwebui.yml"
    path.write_text(path.read_text().replace(
        "    action: openwebui.model_failover    # remote scope",
        "    approval: {when: [{fact: changes_config, is_true: true}]}\n"
        "    action: openwebui.model_failover    # remote scope"))
    ctx = openwebui_env.context()
    assert ctx.runbook("openwebui").strategy("model_failover").approval_when
    healthy = run_incident(ctx, "openwebui", "webui-1", failure_type="model_unavailable")
    assert healthy.incident.state == IncidentState.RECOVERED, healthy.incident.reason
    assert runs(ctx, healthy.incident.id) == [("model_failover", RunStatus.SUCCEEDED)]
    assert ctx.store.list_approvals("pending") == []
    webui.model_down("llama3")
    opened = run_incident(ctx, "openwebui", "webui-1", failure_type="model_unavailable")
    [approval] = ctx.store.list_approvals("pending")
    assert approval.strategy == "model_failover"
    assert "changes_config = true (rule: changes_config is true)" in approval.reason
    assert opened.incident.state == IncidentState.REMEDIATING
    assert webui.default_models == "llama3"                    # nothing switched meanwhile
