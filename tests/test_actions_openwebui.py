"""The openwebui runbook against a STAND-IN for OpenWebUI (tests/openwebui_standin.py: a
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
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine import Recovery
from engine.actions.base import ActionContext
from engine.cli import main
from engine.orchestration.lifecycle import IncidentState, RunStatus
from engine.reporting.reports import degraded_modes
from engine.service import probes
from tests.openwebui_standin import DirectModelApi, OpenWebUIStandin, User
from tests.service import Served, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
EMAIL, PASSWORD = "admin@example.org", "s3cret-pw-for-the-standin"
API_KEY = "sk-standin0123456789abcdef"
USER_EMAIL, USER_PASSWORD = "user@example.org", "another-s3cret-pw"
MODE = "openwebui_unavailable"


@pytest.fixture(scope="module")
def servers():
    webui = OpenWebUIStandin(
        models=["llama3", "mistral", "phi3"], default="llama3",
        users=[User(EMAIL, PASSWORD), User(USER_EMAIL, USER_PASSWORD, role="user")],
        api_keys={API_KEY: EMAIL}).start()
    direct = DirectModelApi(["llama3", "mistral", "phi3"]).start()
    yield webui, direct
    webui.stop()
    direct.stop()


@pytest.fixture
def webui(servers, monkeypatch):
    """The stand-in, reset: every model up, llama3 the default, credentials in the env."""
    webui, direct = servers
    with webui.lock:
        webui.default_models, webui.model_order = "llama3", ["llama3", "mistral", "phi3"]
        webui.unhealthy, webui.signins = False, 0
        webui.requests.clear()
    webui.model_up(*webui.models)
    direct.down = False
    monkeypatch.setenv("OPENWEBUI_EMAIL", EMAIL)
    monkeypatch.setenv("OPENWEBUI_PASSWORD", PASSWORD)
    monkeypatch.delenv("OPENWEBUI_API_KEY", raising=False)
    return webui


@pytest.fixture
def direct(servers):
    return servers[1]


@pytest.fixture
def env(engine_env, servers):
    """The engine home: the shipped openwebui runbook, webui-1 pointing at the stand-ins."""
    webui, direct = servers
    (engine_env.root / "inventory" / "hosts.yml").write_text(f"""
all:
  hosts:
    localhost:
      ansible_connection: local
    webui-1:
      ansible_connection: local
      instance_aliases: ["webui-1:8080"]
      openwebui_url: "{webui.url}"
      openwebui_direct_api_url: "{direct.url}/v1"
      openwebui_fallback_models: [gone-model, mistral, phi3]
""")
    shutil.copy(ROOT / "runbooks" / "openwebui.yml", engine_env.root / "runbooks")
    engine_env.config_path.write_text(
        "home: var\nrunbooks: runbooks\nplaybooks: playbooks\ninventory: inventory\n"
        "lock: {lease: 3s}\nworkers: {poll_interval: 0.2s, threads: 2}\n"
        "degraded_modes:\n"
        f"  {MODE}:\n"
        "    description: OpenWebUI does not answer; callers use the direct model API.\n"
        "    capabilities: {chat_ui: false, direct_model_api: true}\n")
    engine_env.home = engine_env.root / "var"
    return engine_env


def with_probe(env) -> None:
    """The shipped runbook with its (commented-out) probe switched on for webui-1."""
    path = env.root / "runbooks" / "openwebui.yml"
    path.write_text(path.read_text() + "probe: {targets: webui-1, interval: 60s, "
                    "failure_type: model_unavailable}\n")


def assert_no_secret_under(home: Path, *secrets: str) -> None:
    for path in home.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for secret in secrets:
                assert secret not in text, f"a secret landed in {path}"


def runs(ctx, incident_id: str) -> list[tuple[str, RunStatus]]:
    found = ctx.store.query_runs(incident_id=incident_id, limit=None)
    return [(r.strategy, r.status) for r in sorted(found, key=lambda r: r.started_at)]


def action(ctx, name: str, target: str = "webui-1", **params):
    return ctx.python.call(name, ActionContext(
        component="openwebui", target=target, params=params,
        host_vars=ctx.host_vars(target), resources=ctx.resources))


# -- token_refresh (embedded) -------------------------------------------------------------

def test_an_expired_token_is_refreshed_on_the_applications_own_client(env, webui):
    recovery = Recovery.from_config(env.config_path)
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
    assert_no_secret_under(env.home, PASSWORD, *webui.issued)


def test_wrong_credentials_leave_the_client_as_it_was_and_the_incident_degrades(
        env, webui, monkeypatch):
    monkeypatch.setenv("OPENWEBUI_PASSWORD", "not-the-password")
    recovery = Recovery.from_config(env.config_path)
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
    assert_no_secret_under(env.home, "not-the-password", *webui.issued)


def test_token_refresh_is_skipped_where_no_client_is_registered(env, webui, run_incident):
    ctx = env.context()
    opened = run_incident(ctx, "openwebui", "webui-1", failure_type="unauthorized")
    assert runs(ctx, opened.incident.id) == [
        ("token_refresh", RunStatus.SKIPPED), ("graceful_degradation", RunStatus.SUCCEEDED)]
    assert opened.incident.state == IncidentState.DEGRADED
    assert webui.signins == 0


# -- model_failover (remote) --------------------------------------------------------------

def test_model_failover_from_the_cli_switches_the_default_to_the_next_healthy_model(
        env, webui):
    webui.model_down("llama3", "mistral")
    environ = env.env()
    check = subprocess.run(
        [sys.executable, "-m", "engine", "recover", "-c", "openwebui", "-s", "model_failover",
         "-t", "webui-1", "--check"], env=environ, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "would ask the default model 'llama3'" in check.stdout
    assert webui.default_models == "llama3"                   # --check changed nothing
    done = subprocess.run(
        [sys.executable, "-m", "engine", "recover", "-c", "openwebui", "-s", "model_failover",
         "-t", "webui-1"], env=environ, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert webui.default_models == "phi3"
    assert webui.model_order == ["llama3", "mistral", "phi3"]  # kept as it was
    assert "default model switched from 'llama3'" in done.stdout
    ctx = env.context()
    [run] = [r for r in ctx.store.query_runs(component="openwebui") if not r.check_mode]
    record = json.loads((env.home / "artifacts" / run.id / "run.json").read_text())
    assert record["result"]["previous"] == "llama3" and record["result"]["default"] == "phi3"
    assert record["result"]["tried"]["gone-model"] == "not offered by this OpenWebUI"
    assert "HTTP 500" in record["result"]["tried"]["mistral"]
    assert_no_secret_under(env.home, PASSWORD, *webui.issued)


def test_a_model_that_hangs_is_passed_over_and_a_healthy_default_is_left_alone(env, webui,
                                                                              monkeypatch):
    monkeypatch.delenv("OPENWEBUI_EMAIL")
    monkeypatch.delenv("OPENWEBUI_PASSWORD")
    monkeypatch.setenv("OPENWEBUI_API_KEY", API_KEY)          # an admin's API key instead
    ctx = env.context()
    result = action(ctx, "openwebui.model_failover", answer_within=5)
    assert result.ok and result.data["switched"] is False and webui.default_models == "llama3"
    webui.model_down("llama3", hang=1.0)                       # slower than answer_within
    result = action(ctx, "openwebui.model_failover", answer_within=0.3)
    assert result.ok, result.summary
    assert webui.default_models == "mistral"
    assert result.data["tried"]["llama3"] == "no answer within 0.3s"
    assert webui.signins == 0                                  # the key, no sign-in
    assert action(ctx, "openwebui.default_model_answers").ok


def test_model_failover_needs_an_admin_and_a_fallback_list(env, webui, monkeypatch):
    ctx = env.context()
    monkeypatch.setenv("OPENWEBUI_EMAIL", USER_EMAIL)
    monkeypatch.setenv("OPENWEBUI_PASSWORD", USER_PASSWORD)
    refused = action(ctx, "openwebui.model_failover")
    assert not refused.ok and "must be an admin" in refused.summary
    no_list = action(ctx, "openwebui.model_failover", target="localhost")
    assert no_list.not_applicable and "openwebui_fallback_models" in no_list.summary
    assert webui.default_models == "llama3"


# -- graceful_degradation -----------------------------------------------------------------

def test_nothing_answers_the_incident_ends_degraded_until_a_probe_passes(
        env, webui, direct, run_incident):
    with_probe(env)
    webui.model_down("llama3", "mistral", "phi3")
    ctx = env.context()
    opened = run_incident(ctx, "openwebui", "webui-1", failure_type="model_unavailable")
    incident = opened.incident
    assert incident.state == IncidentState.DEGRADED, incident.reason
    assert runs(ctx, incident.id) == [("model_failover", RunStatus.FAILED),
                                      ("graceful_degradation", RunStatus.SUCCEEDED)]
    assert f"callers use the direct model API at {direct.url}/v1" in incident.reason
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


def test_an_application_reads_the_mode_and_its_health_check_switches_it_off(env, webui,
                                                                           direct):
    recovery = Recovery.from_config(env.config_path)
    try:
        webui.unhealthy = True
        incident = recovery.trigger("openwebui", "service_down", target="webui-1").wait(30)
        assert incident.state == IncidentState.DEGRADED
        assert recovery.degraded(MODE)
        assert f"{direct.url}/v1" in incident.reason
        webui.unhealthy = False
        assert recovery.healthy("openwebui", "webui-1") >= 1
        assert not recovery.degraded(MODE)
    finally:
        recovery.close()


def test_with_the_direct_api_down_too_there_is_nothing_to_degrade_to(env, webui, direct,
                                                                     run_incident):
    direct.down = True
    ctx = env.context()
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
def test_recovery_test_names_the_strategy_for_each_failure_type(env, capsys, failure_type,
                                                                 strategy):
    assert main(["--config", str(env.config_path), "test", "-c", "openwebui", "-f",
                 failure_type, "-t", "webui-1", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["first_step"] == strategy and plan["target"] == "webui-1"


def test_an_alert_through_the_service_switches_the_default_model(env, webui, tmp_path):
    webui.model_down("llama3")
    served = Served(env, tmp_path / "home", free_port(), "--workers", "1")
    try:
        served.start()
        served.wait_ready()
        alert = {"labels": {"alertname": "OpenWebUIModelUnavailable", "severity": "critical",
                            "instance": "webui-1:8080", "component": "openwebui"},
                 "annotations": {}, "startsAt": "2024-05-01T03:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "owui-e2e",
                 "generatorURL": "", "status": "firing"}
        body = {"version": "4", "groupKey": "{}:{}", "status": "firing",
                "receiver": "infra-recovery", "groupLabels": {}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0,
                "alerts": [alert]}
        answer = httpx.post(served.url + "/api/v1/alerts", json=body, timeout=5,
                            headers={"Authorization": f"Bearer {served.token}"})
        assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
        assert wait_for(lambda: webui.default_models == "mistral", 30), served.stderr()[-2000:]
        operator = (served.home / "operator.token").read_text().strip()
        degraded = wait_for(lambda: (r := served.get(
            "/api/v1/degraded", headers={"Authorization": f"Bearer {operator}"})) is not None
            and r.status_code == 200 and r.json(), 10)
        assert MODE in [m["mode"] for m in degraded["modes"]]
        assert MODE not in degraded["active"]
    finally:
        served.terminate()
    assert_no_secret_under(served.home, PASSWORD, *webui.issued)
