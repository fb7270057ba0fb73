"""The HTTP API beyond the webhook, in the app (Flask's test client) on a real SQLite
store: incidents and runs read, a manual run handed to a real engine worker (202 once
the gates answered, 409 when one refuses or defers, 400 for bad usage), cancel, kill
switches with their expiry, unlock, degraded modes for an app, and what an app
credential may not do (another component, force, approve)."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.service.worker import Worker
from tests.support.webhook_app import AS_ALICE, AS_APP, AS_VIEWER, Service


@pytest.fixture
def demo(engine_env):
    """A runbook ``demo`` (the app's component) whose one step touches a file, and the
    app on it."""
    marker = engine_env.root / "touched"
    engine_env.runbook("demo", f"""
        component: demo
        strategies:
          - {{name: touch, action: test.touch, with: {{path: "{marker}"}}}}
        degraded_mode: {{name: test_down}}
    """)
    engine_env.runbook("other", "strategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    return Service(ctx.config, context=ctx), marker


@pytest.fixture
def worker(engine_env):
    """A real engine worker on its own context (as a service's worker process has)."""
    running = Worker(engine_env.context(), intake=False).start()
    yield running
    assert running.stop(timeout=20)


def recover(service, headers=AS_ALICE, **body):
    return service.client.post("/api/v1/recover", headers=headers, json=body)


def until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("not within the bound")


# -- manual runs -----------------------------------------------------------------------------


def test_a_manual_run_is_handed_to_a_worker_and_answered_once_the_gates_let_it_start(
        demo, worker):
    service, marker = demo
    answer = recover(service, component="demo", target="cache-1")
    assert answer.status_code == 202, answer.json
    incident_id, run_id = answer.json["incident_id"], answer.json["run_id"]
    assert run_id and answer.json["outcome"] in ("running", "succeeded")
    run = service.store.get_run(run_id)
    assert (run.incident_id, run.trigger, run.requested_by) == (incident_id, "manual", "alice")
    assert until(lambda: service.store.get_incident(incident_id).state
                 == IncidentState.RECOVERED)
    assert marker.exists()
    one = service.client.get(f"/api/v1/incidents/{incident_id}", headers=AS_VIEWER).json
    assert [r["id"] for r in one["runs"]] == [run_id]
    [attempt] = one["attempts"]
    assert attempt["runs"] == [run_id] and attempt["last_status"] == "succeeded"
    assert any(e["kind"] == "gate" for e in one["timeline"])
    detail = service.client.get(f"/api/v1/runs/{run_id}", headers=AS_VIEWER).json
    assert detail["run"]["status"] == "succeeded"
    assert [(h["host"], h["outcome"]) for h in detail["hosts"]] == [("cache-1", "ok")]
    assert [e["kind"] for e in detail["timeline"]][-1] == "run"


def test_a_kill_switch_refuses_a_manual_run_with_its_gate_and_force_passes_it(demo, worker):
    service, marker = demo
    made = service.client.post("/api/v1/switches", headers=AS_ALICE,
                               json={"component": "demo", "reason": "maintenance"})
    assert made.status_code == 201
    refused = recover(service, component="demo", target="cache-1")
    assert refused.status_code == 409, refused.json
    assert refused.json["gate"] == "kill_switch" and "maintenance" in refused.json["reason"]
    assert refused.json["retry_at"] is None and refused.json["run_id"]
    assert not marker.exists()
    forced = recover(service, component="demo", target="cache-1", force=True)
    assert forced.status_code == 202, forced.json
    assert service.store.get_run(forced.json["run_id"]).forced


def test_an_app_triggers_its_own_component_as_a_probe_and_nothing_else(demo, worker):
    service, _ = demo
    other = recover(service, AS_APP, component="other", target="cache-1")
    assert other.status_code == 403
    assert "'demo' only" in other.json["error"] and "'other'" in other.json["error"]
    forced = recover(service, AS_APP, component="demo", target="cache-1", force=True)
    assert forced.status_code == 403 and "may not force" in forced.json["error"]
    mine = recover(service, AS_APP, component="demo", target="cache-1")
    assert mine.status_code == 202, mine.json
    assert service.store.get_run(mine.json["run_id"]).trigger == "probe"
    service.client.post("/api/v1/switches", headers=AS_ALICE, json={"target": "cache-2"})
    refused = recover(service, AS_APP, component="demo", target="cache-2")
    assert refused.status_code == 409 and refused.json["gate"] == "kill_switch"
    again = recover(service, AS_APP, component="demo", target="cache-2")   # a probe's
    assert again.status_code == 409, again.json     # refusal, counted into the first's
    assert again.json["run_id"] == refused.json["run_id"]
    assert service.store.get_run(refused.json["run_id"]).count == 2
    approve = service.client.post("/api/v1/approvals/run-x", headers=AS_APP,
                                  json={"decision": "approve"})
    assert approve.status_code == 403
    assert service.client.get("/api/v1/degraded", headers=AS_APP).status_code == 200
    assert service.client.get("/api/v1/incidents", headers=AS_APP).status_code == 403


@pytest.mark.parametrize(("body", "words"), [
    ({}, "component: required"),
    ({"component": "nope"}, "no runbook for 'nope'"),
    ({"component": "demo", "strategy": "nope"}, "has no strategy 'nope'"),
    ({"component": "demo", "force": "yes"}, "force: true or false"),
    ({"component": "demo", "when": "now"}, "unknown field(s) when"),
])
def test_bad_usage_of_recover_is_a_400_with_the_reason(demo, body, words):
    service, _ = demo
    answer = recover(service, **body)
    assert answer.status_code == 400 and words in answer.json["error"], answer.json


def test_an_unknown_target_is_refused_and_recorded(demo):
    service, _ = demo
    answer = recover(service, component="demo", target="nowhere")
    assert answer.status_code == 409 and answer.json["gate"] == "target"
    assert service.store.get_run(answer.json["run_id"]).status == RunStatus.REFUSED


def test_check_mode_changes_nothing_and_opens_no_incident(demo):
    service, marker = demo
    answer = recover(service, component="demo", target="cache-1", check=True)
    assert answer.status_code == 202, answer.json
    assert answer.json["outcome"] == "check" and answer.json["incident_id"] is None
    run_id = answer.json["run_id"]
    assert until(lambda: service.store.get_run(run_id).status.is_final)
    assert service.store.get_run(run_id).check_mode
    assert not marker.exists() and service.store.list_incidents() == []


# -- incidents and runs -------------------------------------------------------------------


def test_incidents_are_listed_with_filters_and_bad_filters_are_400s(demo, run_incident):
    service, _ = demo
    first = run_incident(service.ctx, "demo", target="cache-1").incident
    second = run_incident(service.ctx, "other", target="cache-2").incident
    listed = service.client.get("/api/v1/incidents", headers=AS_VIEWER).json["incidents"]
    assert [i["id"] for i in listed] == [second.id, first.id]

    def ids(**query):
        answer = service.client.get("/api/v1/incidents", headers=AS_VIEWER, query_string=query)
        assert answer.status_code == 200, answer.json
        return [i["id"] for i in answer.json["incidents"]]

    assert ids(component="demo") == [first.id]
    assert ids(target="cache-2") == [second.id]
    assert ids(state="recovered", limit=1) == [second.id]
    assert ids(open="true") == []
    for bad in ({"state": "sleeping"}, {"open": "maybe"}, {"limit": "0"}):
        assert service.client.get("/api/v1/incidents", headers=AS_VIEWER,
                                  query_string=bad).status_code == 400
    assert service.client.get("/api/v1/incidents/inc-nope",
                              headers=AS_VIEWER).status_code == 404
    assert service.client.get("/api/v1/runs/run-nope", headers=AS_VIEWER).status_code == 404


# -- cancel, switches, unlock -----------------------------------------------------------------


def test_cancel_ends_an_open_incident_and_an_unknown_id_is_a_404(demo):
    service, _ = demo
    service.client.post("/api/v1/switches", headers=AS_ALICE, json={"component": "demo"})
    from engine.orchestration.triggers import TriggerRequest, open_incident

    incident = open_incident(service.ctx, TriggerRequest(runbook="demo",
                                                         target="cache-1")).incident
    assert service.client.post("/api/v1/cancel/inc-nope", headers=AS_ALICE).status_code == 404
    answer = service.client.post(f"/api/v1/cancel/{incident.id}", headers=AS_ALICE,
                                 json={"reason": "not now"})
    assert answer.status_code == 200 and answer.json["by"] == "alice"
    closed = service.store.get_incident(incident.id)
    assert closed.state == IncidentState.CANCELED and "alice: not now" in closed.reason
    again = service.client.post(f"/api/v1/cancel/{incident.id}", headers=AS_ALICE)
    assert again.status_code == 200 and again.json["said"]   # nothing left: said so


def test_a_kill_switch_lasts_an_hour_unless_told_and_never_only_when_said(demo):
    service, _ = demo
    post = service.client.post
    hour = post("/api/v1/switches", headers=AS_ALICE, json={"target": "cache-1"}).json
    switch = hour["switch"]
    assert switch["until"] == pytest.approx(switch["created_at"] + 3600)
    assert switch["created_by"] == "alice"
    never = post("/api/v1/switches", headers=AS_ALICE,
                 json={"component": "demo", "for": "never", "reason": "r"}).json["switch"]
    assert never["until"] is None
    for bad in ({"for": "0s"}, {"for": "soon"}, {"component": "nope"}, {"scope": "all"}):
        assert post("/api/v1/switches", headers=AS_ALICE, json=bad).status_code == 400, bad
    listed = service.client.get("/api/v1/switches", headers=AS_VIEWER).json["switches"]
    assert {s["id"] for s in listed} == {switch["id"], never["id"]}
    gone = service.client.delete(f"/api/v1/switches/{switch['id']}", headers=AS_ALICE)
    assert gone.status_code == 200 and [s["id"] for s in gone.json["removed"]] == [switch["id"]]
    assert service.client.delete(f"/api/v1/switches/{switch['id']}",
                                 headers=AS_ALICE).status_code == 404
    actions = [e.action for e in service.store.list_events(limit=10)]
    assert "disable" in actions and "enable" in actions


def test_unlock_breaks_a_lock_recorded_with_who_and_leaves_another_components_alone(demo):
    service, _ = demo
    post = service.client.post
    assert post("/api/v1/unlock", headers=AS_ALICE, json={}).status_code == 400
    none = post("/api/v1/unlock", headers=AS_ALICE, json={"target": "cache-1"})
    assert none.status_code == 200 and none.json["broken"] is None
    service.store.acquire_lock("cache-1", "somebody", 600, component="demo")
    other = post("/api/v1/unlock", headers=AS_ALICE,
                 json={"target": "cache-1", "component": "other"})
    assert other.status_code == 409 and "held for component demo" in other.json["error"]
    broken = post("/api/v1/unlock", headers=AS_ALICE,
                  json={"target": "cache-1.example:9121"})   # an alias names its host
    assert broken.status_code == 200 and broken.json["target"] == "cache-1"
    assert broken.json["broken"]["holder"] == "somebody" and broken.json["by"] == "alice"
    assert service.store.get_lock("cache-1") is None


def test_a_step_a_gate_defers_is_a_409_with_the_time_it_will_be_retried(demo, worker):
    service, marker = demo
    service.store.acquire_lock("cache-1", "somebody", 600, component="demo")
    deferred = recover(service, component="demo", target="cache-1")
    assert deferred.status_code == 409, deferred.json
    assert deferred.json["error"] == "deferred" and deferred.json["gate"] == "lock"
    assert deferred.json["retry_at"] > time.time()
    incident = service.store.get_incident(deferred.json["incident_id"])
    assert incident.state == IncidentState.OPEN and not marker.exists()
