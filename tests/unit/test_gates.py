"""Safety gates: cooldown counting, kill switch with expiry and --force, deferral and
automatic retry by a worker."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.records import Switch, new_id
from engine.service.worker import Worker

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


def ok_runbook(env, cooldown="{max_attempts: 3, window: 1h, after_failure: 300s}"):
    env.runbook("demo", f"""
        strategies: [{{name: a, action: test.ok, with: {{trace: "{env.trace}"}}}}]
        cooldown: {cooldown}
    """)


def test_cooldown_counts_attempts_not_refusals_deferrals_or_checks(engine_env, run_incident):
    from engine.orchestration.planner import check_runs

    ok_runbook(engine_env)
    ctx = engine_env.context()
    for _ in range(3):
        check_runs(ctx, ctx.runbook("demo"), "localhost")  # check mode: never counts
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target=None,
                                until=time.time() + 60))
    assert run_incident(ctx, "demo").incident.state == IncidentState.CANCELED  # refused
    ctx.store.remove_switches(None, None)
    for _ in range(3):
        assert run_incident(ctx, "demo").incident.state == IncidentState.RECOVERED
    fourth = run_incident(ctx, "demo").incident
    assert fourth.state == IncidentState.OPEN
    assert "3 attempts on localhost within 3600s (max 3)" in fourth.reason
    assert len([line for line in engine_env.traced() if line.startswith("ok")]) == 3
    # another target has its own window
    assert run_incident(ctx, "demo", target="cache-1").incident.state == \
        IncidentState.RECOVERED


def test_force_passes_cooldown_and_kill_switch_on_the_record_only_for_manual_runs(
        engine_env, run_incident):
    ok_runbook(engine_env, "{max_attempts: 1, window: 1h}")
    ctx = engine_env.context()
    assert run_incident(ctx, "demo").incident.state == IncidentState.RECOVERED
    ctx.store.add_switch(Switch(id=new_id("sw"), component="demo", target=None, until=None,
                                reason="maintenance", created_by="alice"))
    refused = run_incident(ctx, "demo").incident
    assert refused.state == IncidentState.CANCELED
    assert "auto-recovery disabled for component=demo" in refused.reason
    assert "by alice: maintenance" in refused.reason
    forced = run_incident(ctx, "demo", force=True).incident
    assert forced.state == IncidentState.RECOVERED
    [run] = ctx.store.query_runs(incident_id=forced.id)
    assert run.forced
    gates = {g["gate"]: g for g in _run_json(ctx, run.id)["gates"]}
    assert "passed by --force" in gates["kill_switch"]["reason"]
    assert "passed by --force" in gates["cooldown"]["reason"]
    # --force on an alert means nothing: only an operator forces
    alert = run_incident(ctx, "demo", force=True, trigger="alert").incident
    assert alert.state == IncidentState.CANCELED


def test_kill_switch_expires_and_is_scoped(engine_env, run_incident):
    ok_runbook(engine_env)
    ctx = engine_env.context()
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target="cache-1",
                                until=time.time() + 0.5))
    assert run_incident(ctx, "demo", target="cache-1").incident.state == \
        IncidentState.CANCELED
    assert run_incident(ctx, "demo", target="cache-2").incident.state == \
        IncidentState.RECOVERED
    time.sleep(0.6)
    assert run_incident(ctx, "demo", target="cache-1").incident.state == \
        IncidentState.RECOVERED


def test_deferred_incident_is_retried_by_a_worker_when_its_time_comes(
        engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: a, action: test.fail, when: [first]}}
          - {{name: b, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}
        cooldown: {{max_attempts: 5, window: 1h, after_failure: 1s}}
        degraded_mode: {{name: test_down}}
    """)
    ctx = engine_env.context()
    # an attempt with only `a` applying fails and starts a 1 s failure cooldown
    assert run_incident(ctx, "demo", failure_type="first",
                        strategy="a").incident.state == IncidentState.FAILED
    deferred = run_incident(ctx, "demo").incident
    assert deferred.state == IncidentState.OPEN and deferred.next_try_at
    worker = Worker(ctx)
    worker.run_once()
    assert ctx.store.get_incident(deferred.id).state == IncidentState.OPEN  # not due yet
    deadline = time.time() + 5
    while time.time() < deadline:
        worker.run_once()
        if ctx.store.get_incident(deferred.id).state != IncidentState.OPEN:
            break
        time.sleep(0.1)
    retried = ctx.store.get_incident(deferred.id)
    assert retried.state == IncidentState.RECOVERED
    runs = [r.status for r in ctx.store.query_runs(incident_id=deferred.id)]
    # no failure type: both strategies apply, `a` fails again, `b` fixes it
    assert sorted(s.value for s in runs) == ["deferred", "failed", "succeeded"]
    assert not ctx.store.degraded_reasons("test_down")  # the pass cleared it


def test_refused_runs_are_never_replayed(engine_env, run_incident):
    ok_runbook(engine_env)
    ctx = engine_env.context()
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target=None,
                                until=time.time() + 0.3))
    refused = run_incident(ctx, "demo").incident
    time.sleep(0.4)
    Worker(ctx).run_once()
    assert ctx.store.get_incident(refused.id).state == IncidentState.CANCELED
    assert [r.status for r in ctx.store.query_runs(incident_id=refused.id)] == \
        [RunStatus.REFUSED]
    assert engine_env.traced() == []


def _run_json(ctx, run_id):
    from engine.artifacts import RunArtifacts

    return RunArtifacts(ctx.artifacts_dir, run_id).read_run_json()


def test_forced_is_what_a_gate_did_not_words_in_a_reason(engine_env, run_incident):
    ok_runbook(engine_env)
    ctx = engine_env.context()
    ctx.store.add_switch(Switch(id=new_id("sw"), component="demo", target="cache-1",
                                until=time.time() + 60, reason="never use --force here"))
    run_incident(ctx, "demo", target="cache-1")
    ctx.store.remove_switches("demo", "cache-1")
    assert run_incident(ctx, "demo", target="cache-1").incident.state == \
        IncidentState.RECOVERED
    assert [r.forced for r in ctx.store.query_runs(target="cache-1")] == [False, False]


# -- --force belongs to the operator's attempt, never to what comes after it -----------------

def _alert_runbook(env) -> None:
    env.runbook("demo", f"""
        match: [alertname="DemoDown"]
        target: "{{{{ labels.instance }}}}"
        strategies: [{{name: a, action: test.ok, with: {{trace: "{env.trace}"}}}}]
        verify: {{action: test.ok, interval: 0.05s, deadline: 0.2s}}
        cooldown: {{max_attempts: 1, window: 1h}}
    """)


def test_a_forced_take_over_is_not_inherited_by_the_alert_that_reopens_the_incident(
        engine_env, run_incident):
    """The operator forced a run on an alert's deferred incident (the cooldown held it);
    later a kill switch covers the target and the same alert fires again: the reopened
    incident is refused, and the refusal is the alert's, not the operator's."""
    _alert_runbook(engine_env)
    ctx = engine_env.context()
    labels = {"alertname": "DemoDown", "instance": "cache-1"}

    def fire():
        return run_incident(ctx, None, target=None, trigger="alert", labels=labels,
                            fingerprint="fp-1", requested_by="alertmanager:recovery").incident

    assert run_incident(ctx, "demo", target="cache-1").incident.state == \
        IncidentState.RECOVERED                              # the cooldown's one attempt
    time.sleep(0.25)   # past that fix's verify window: the alert is a new signal
    deferred = fire()
    assert deferred.state == IncidentState.OPEN and "cooldown" in deferred.reason
    taken = run_incident(ctx, "demo", target="cache-1", force=True,
                         requested_by="cli:root").incident
    assert taken.id == deferred.id and taken.state == IncidentState.RECOVERED
    forced, deferred_run = ctx.store.query_runs(incident_id=taken.id)   # newest first
    assert (deferred_run.status, deferred_run.trigger) == (RunStatus.DEFERRED, "alert")
    assert (forced.trigger, forced.requested_by, forced.forced) == ("manual", "cli:root", True)
    assert not taken.forced                      # the attempt is over: so is its --force

    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target="cache-1",
                                until=time.time() + 600, created_by="cli:root"))
    time.sleep(0.25)                             # past the verify window: a new signal
    again = fire()
    assert again.id == deferred.id and again.state == IncidentState.CANCELED
    assert "auto-recovery disabled" in again.reason
    refused = ctx.store.query_runs(incident_id=again.id)[0]
    assert refused.status == RunStatus.REFUSED
    assert (refused.trigger, refused.requested_by, refused.forced, refused.fingerprint) == \
        ("alert", "alertmanager:recovery", False, "fp-1")
    gates = {g["gate"]: g for g in _run_json(ctx, refused.id)["gates"]}
    assert gates["kill_switch"]["verdict"] == "refuse"
    assert "--force" not in gates["kill_switch"]["reason"]
    assert len(engine_env.traced()) == 2                    # nothing ran the third time


def test_a_forced_run_deferred_by_a_lock_is_retried_without_force(engine_env, run_incident):
    """--force passes the kill switch and the cooldown, never a lock: the step the lock
    deferred is retried by a worker later, and that retry is not forced."""
    _alert_runbook(engine_env)
    ctx = engine_env.context()
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target="cache-1",
                                until=time.time() + 600))
    held = ctx.store.acquire_lock("cache-1", "someone-else", 0.5)
    assert held is not None
    deferred = run_incident(ctx, "demo", target="cache-1", force=True,
                            requested_by="cli:root").incident
    assert deferred.state == IncidentState.OPEN and "locked" in deferred.reason
    assert not deferred.forced
    worker = Worker(ctx)
    deadline = time.time() + 5
    while time.time() < deadline and \
            ctx.store.get_incident(deferred.id).state == IncidentState.OPEN:
        worker.run_once()
        time.sleep(0.1)
    retried = ctx.store.get_incident(deferred.id)
    assert retried.state == IncidentState.CANCELED and "auto-recovery disabled" in retried.reason
    statuses = [(r.status, r.forced) for r in ctx.store.query_runs(incident_id=deferred.id)]
    assert statuses == [(RunStatus.REFUSED, False), (RunStatus.DEFERRED, True)]
    assert engine_env.traced() == []
