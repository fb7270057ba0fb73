"""Safety gates: cooldown counting, kill switch with expiry and --force, deferral and
automatic retry by a worker."""

from __future__ import annotations

import time

from engine.lifecycle import IncidentState, RunStatus
from engine.records import Switch, new_id
from engine.worker import Worker


def ok_runbook(env, cooldown="{max_attempts: 3, window: 1h, after_failure: 300s}"):
    env.runbook("demo", f"""
        strategies: [{{name: a, action: test.ok, with: {{trace: "{env.trace}"}}}}]
        cooldown: {cooldown}
    """)


def test_cooldown_counts_attempts_not_refusals_deferrals_or_checks(engine_env, run_incident):
    from engine.planner import check_runs

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
