"""The attempt: escalation through strategies, verify, degraded modes, exhaustion.

Given a runbook and a failure, these tests assert the incident's end state, the runs
recorded (status and reason), and what really ran (the trace file).

The tests of what the store keeps (degraded modes, cooldowns, switches, locks, incidents,
the run index) run on each state backend (``both_backends``, tests/support/state_backends.py).
"""

from __future__ import annotations

import json
import time

import pytest

from engine.lifecycle import IncidentState, RunStatus


def statuses(ctx, incident_id):
    runs = ctx.store.query_runs(incident_id=incident_id, limit=None)
    return [(r.strategy, r.status.value) for r in sorted(runs, key=lambda r: r.started_at)]


def test_escalates_to_the_next_strategy_and_recovers(engine_env, run_incident):
    healthy = engine_env.root / "healthy"
    healthy.touch()
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: first, action: test.fail, with: {{trace: "{engine_env.trace}"}}}}
          - {{name: second, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}
          - {{name: third, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}
        verify: {{action: test.file_exists, with: {{path: "{healthy}"}}, interval: 0.05s,
                  deadline: 2s}}
        degraded_mode: {{name: test_down}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    assert incident.state == IncidentState.RECOVERED
    assert "recovered by second" in incident.reason
    assert statuses(ctx, incident.id) == [("first", "failed"), ("second", "succeeded")]
    assert [line.split()[0] for line in engine_env.traced()] == ["fail", "ok"]  # third never ran
    assert incident.attempts == 1
    assert not ctx.store.degraded_reasons("test_down")
    attempts = ctx.store.attempts_since("demo", "localhost", 0)
    assert [a.outcome.value for a in attempts] == ["recovered"]


def test_a_step_that_succeeds_but_fails_verify_is_a_failed_step(engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: only, action: test.ok}}
        verify: {{action: test.file_exists, with: {{path: "{engine_env.root / 'never'}"}},
                  interval: 0.05s, deadline: 0.3s}}
        degraded_mode: {{name: test_down}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    assert incident.state == IncidentState.FAILED
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.FAILED
    assert "verify failed" in run.reason
    events = list(ctx_artifacts(ctx, run.id).read_events())
    assert any(e["event"] == "verify_check" and not e["event_data"]["ok"] for e in events)


@pytest.mark.both_backends
def test_exhaustion_switches_degraded_mode_on_and_starts_the_failure_cooldown(
        engine_env, run_incident):
    engine_env.runbook("demo", """
        strategies:
          - {name: a, action: test.fail}
          - {name: b, action: test.fail}
        degraded_mode: {name: test_down}
        cooldown: {max_attempts: 3, window: 1h, after_failure: 300s}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    assert incident.state == IncidentState.FAILED
    assert incident.reason.startswith("exhausted")
    [reason] = ctx.store.degraded_reasons("test_down")
    assert reason.incident_id == incident.id and not reason.manual

    again = run_incident(ctx, "demo").incident
    assert again.id != incident.id
    assert again.state == IncidentState.OPEN          # deferred, still open
    assert again.next_try_at is not None and "failed at" in again.reason
    [deferred] = ctx.store.query_runs(incident_id=again.id)
    assert deferred.status == RunStatus.DEFERRED
    # deferred runs are not attempts
    assert len(ctx.store.attempts_since("demo", "localhost", 0)) == 1


@pytest.mark.both_backends
def test_failing_mode_degrades_at_the_first_failure_and_a_pass_clears_it(
        engine_env, run_incident):
    engine_env.runbook("demo", """
        strategies:
          - {name: a, action: test.fail}
          - {name: b, action: test.ok}
        degraded_mode: {name: test_down, when: failing}
    """)
    ctx = engine_env.context()
    seen = []
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    opened = open_incident(ctx, TriggerRequest(runbook="demo", target="localhost"))

    def on_run(run):
        if run.strategy == "b" and run.status == RunStatus.RUNNING:
            seen.append(bool(ctx.store.degraded_reasons("test_down")))

    incident = advance(ctx, opened.incident.id, on_run=on_run)
    assert seen == [True]                # on while b was running, after a failed
    assert incident.state == IncidentState.RECOVERED
    assert ctx.store.degraded_reasons("test_down") == []


@pytest.mark.both_backends
def test_a_manual_degraded_mode_survives_a_passing_verify(engine_env, run_incident):
    from engine.records import DegradedReason

    engine_env.runbook("demo", """
        strategies: [{name: a, action: test.ok}]
        degraded_mode: {name: test_down}
    """)
    ctx = engine_env.context()
    ctx.store.add_degraded(DegradedReason(mode="test_down", key="manual", manual=True,
                                          created_by="alice"))
    assert run_incident(ctx, "demo").incident.state == IncidentState.RECOVERED
    assert [r.created_by for r in ctx.store.degraded_reasons("test_down")] == ["alice"]


@pytest.mark.both_backends
def test_graceful_degradation_ends_degraded_not_recovered(engine_env, run_incident):
    engine_env.runbook("demo", """
        strategies:
          - {name: a, action: test.fail}
          - {name: degrade, action: test.ok, degrades: true}
        degraded_mode: {name: test_down}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    assert incident.state == IncidentState.DEGRADED
    assert ctx.store.degraded_reasons("test_down")


def test_when_picks_strategies_by_failure_type(engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: for_timeouts, action: test.ok, when: [connection_timeout],
              with: {{trace: "{engine_env.trace}"}}}}
          - {{name: for_disk, action: test.ok, when: [disk_full],
              with: {{trace: "{engine_env.trace}"}}}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo", failure_type="disk_full").incident
    assert statuses(ctx, incident.id) == [("for_disk", "succeeded")]
    # A failure type nothing handles: refused and recorded; nothing failed, so no
    # degraded mode and no cooldown.
    nothing = run_incident(ctx, "demo", target="cache-1", failure_type="corruption").incident
    assert nothing.state == IncidentState.CANCELED
    assert "handles failure type 'corruption'" in nothing.reason
    [refused] = ctx.store.query_runs(incident_id=nothing.id)
    assert refused.status == RunStatus.REFUSED
    assert ctx.store.degraded_reasons() == []
    assert ctx.store.attempts_since("demo", "cache-1", 0) == []


def test_unimplemented_and_unregistered_embedded_actions_are_skipped_never_successes(
        engine_env, run_incident):
    engine_env.runbook("demo", """
        strategies:
          - {name: later, action: test.later}
          - {name: embedded, action: test.bump}
        degraded_mode: {name: test_down}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    runs = {r.strategy: r for r in ctx.store.query_runs(incident_id=incident.id)}
    assert runs["later"].status == RunStatus.SKIPPED
    assert "not implemented" in runs["later"].reason
    assert runs["embedded"].status == RunStatus.SKIPPED
    assert "nothing registered" in runs["embedded"].reason
    assert incident.state == IncidentState.FAILED   # exhausted, not recovered


def test_embedded_action_acts_on_the_registered_resource(engine_env, run_incident):
    engine_env.runbook("demo", "strategies: [{name: bump, action: test.bump}]\n")
    ctx = engine_env.context()
    counter = {"n": 41}
    ctx.resources.register("counter", counter)
    assert run_incident(ctx, "demo").incident.state == IncidentState.RECOVERED
    assert counter["n"] == 42


def test_observe_mode_records_the_plan_and_changes_nothing(engine_env, run_incident):
    marker = engine_env.root / "changed"
    engine_env.runbook("demo", f"""
        mode: observe
        strategies: [{{name: touch, action: test.touch, with: {{path: "{marker}"}}}}]
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    assert not marker.exists()
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.REFUSED
    assert "observe mode" in run.reason and "would run touch" in run.reason
    assert incident.state == IncidentState.CANCELED
    assert ctx.store.attempts_since("demo", "localhost", 0) == []


def test_check_mode_plans_records_and_counts_nothing(engine_env):
    from engine.orchestration.planner import check_runs

    marker = engine_env.root / "changed"
    engine_env.runbook("demo", f"""
        strategies: [{{name: touch, action: test.touch, with: {{path: "{marker}"}},
                       approval: required}}]
        cooldown: {{max_attempts: 1, window: 1h}}
    """)
    ctx = engine_env.context()
    runbook = ctx.runbook("demo")
    for _ in range(3):
        [run] = check_runs(ctx, runbook, "localhost")
        assert run.status == RunStatus.SUCCEEDED and run.check_mode
    assert not marker.exists()
    assert ctx.store.attempts_since("demo", "localhost", 0) == []
    assert ctx.store.list_incidents() == []
    stdout = ctx_artifacts(ctx, run.id).read_stdout()
    assert "would touch" in stdout


def test_unknown_target_is_refused_and_recorded_never_guessed(engine_env, run_incident):
    engine_env.runbook("demo", "strategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    for hostile in ("all", "cache-*", "{{ lookup('pipe','id') }}", "evil.example:9121"):
        opened = run_incident(ctx, "demo", target=hostile)
        assert opened.incident is None
        assert opened.refusal.startswith("unknown target")
        run = ctx.store.get_run(opened.refused_run)
        assert run.status == RunStatus.REFUSED
    assert ctx.store.list_incidents() == []


def test_alert_labels_resolve_through_aliases(engine_env, run_incident):
    engine_env.runbook("demo", "strategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    opened = run_incident(ctx, "demo", target=None, trigger="alert",
                          labels={"instance": "cache-1.example:9121", "alertname": "X"})
    assert opened.incident.target == "cache-1"


@pytest.mark.both_backends
def test_one_open_incident_per_runbook_and_target(engine_env):
    from engine.orchestration.triggers import TriggerRequest, open_incident

    engine_env.runbook("demo", "strategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    first = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-1"))
    second = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-1",
                                               trigger="alert"))
    assert first.claimed and first.created
    assert second.incident.id == first.incident.id and not second.claimed
    other = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-2"))
    assert other.incident.id != first.incident.id


def test_artifacts_follow_the_runner_layout(engine_env, run_incident):
    engine_env.runbook("demo", "strategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    folder = ctx.artifacts_dir / run.id
    assert (folder / "status").read_text() == "successful"
    assert (folder / "rc").read_text() == "0"
    assert "ok" in (folder / "stdout").read_text()
    record = json.loads((folder / "run.json").read_text())
    assert record["incident_id"] == incident.id and record["status"] == "succeeded"
    assert [g["gate"] for g in record["gates"]] == [
        "kill_switch", "observe", "cooldown", "approval", "lock", "fleet"]
    assert record["runbook_sha256"] == ctx.runbook("demo").sha256
    events = sorted((folder / "job_events").iterdir(),
                    key=lambda p: int(p.name.split("-", 1)[0]))
    assert [json.loads(p.read_text())["event"] for p in events] == [
        "action_start", "action_result", "verify_check"]


def ctx_artifacts(ctx, run_id):
    from engine.artifacts import RunArtifacts

    return RunArtifacts(ctx.artifacts_dir, run_id)


@pytest.mark.both_backends
def test_retention_removes_old_artifacts_and_their_index_rows_only(engine_env, run_incident):
    from engine.service.retention import prune

    engine_env.runbook("demo", "strategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    old = run_incident(ctx, "demo", target="cache-1").incident
    [old_run] = ctx.store.query_runs(incident_id=old.id)
    later = time.time() + ctx.config.retention - 5       # old_run is just inside retention
    assert prune(ctx, now=later) == 0
    assert (ctx.artifacts_dir / old_run.id).is_dir()
    recent = run_incident(ctx, "demo", target="cache-2").incident
    [recent_run] = ctx.store.query_runs(incident_id=recent.id)
    ctx.store.update_run(recent_run.id, finished_at=later)  # as if it finished much later
    assert prune(ctx, now=later + 10) == 1
    assert not (ctx.artifacts_dir / old_run.id).exists()
    assert ctx.store.get_run(old_run.id) is None
    assert (ctx.artifacts_dir / recent_run.id).is_dir()
    assert ctx.store.get_run(recent_run.id) is not None


def test_observe_mode_records_the_whole_escalation_it_would_run(engine_env, run_incident):
    engine_env.runbook("demo", """
        mode: observe
        strategies:
          - {name: first, action: test.ok}
          - {name: second, action: test.touch, with: {path: "/nonexistent/x"}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    plan = ctx_artifacts(ctx, run.id).read_run_json()["plan"]
    assert [p["strategy"] for p in plan] == ["first", "second"]
    assert plan[1]["action"] == "test.touch"


@pytest.mark.both_backends
def test_a_canceled_step_is_canceled_not_failed_and_degrades_nothing(engine_env):
    import threading

    from engine.orchestration import approvals
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    engine_env.runbook("demo", f"""
        strategies:
          - {{name: nap, action: test.sleep, with: {{seconds: 20, trace: "{engine_env.trace}"}}}}
          - {{name: after, action: test.ok}}
        degraded_mode: {{name: test_down, when: failing}}
    """)
    ctx = engine_env.context()
    opened = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-1"))
    worker = threading.Thread(target=advance, args=(ctx, opened.incident.id))
    worker.start()
    deadline = time.time() + 10
    while not engine_env.traced() and time.time() < deadline:
        time.sleep(0.05)
    approvals.cancel(ctx, opened.incident.id, by="carol")
    worker.join(10)
    incident = ctx.store.get_incident(opened.incident.id)
    assert incident.state == IncidentState.CANCELED and incident.reason == "canceled by carol"
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.CANCELED
    assert ctx.store.degraded_reasons("test_down") == []
    assert [a.outcome.value for a in ctx.store.attempts_since("demo", "cache-1", 0)] == \
        ["canceled"]
    counters = {(c.strategy, c.outcome): c.value for c in ctx.store.counters()}
    assert counters == {("nap", "canceled"): 1}


def test_an_operator_taking_over_runs_the_strategy_asked_for(engine_env, run_incident):
    from engine.records import Incident, new_id

    engine_env.runbook("demo", f"""
        strategies:
          - {{name: first, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}
          - {{name: second, action: test.fail}}
    """)
    ctx = engine_env.context()
    # an incident deferred partway through an attempt, at its second step
    waiting, _ = ctx.store.open_incident(Incident(
        id=new_id("inc"), runbook="demo", component="demo", target="cache-1",
        state=IncidentState.OPEN, step=1, attempt_id="att-x", next_try_at=time.time() + 600))
    taken = run_incident(ctx, "demo", target="cache-1", strategy="first").incident
    assert taken.id == waiting.id and taken.state == IncidentState.RECOVERED
    assert engine_env.traced()[0].startswith("ok")


@pytest.mark.both_backends
def test_a_repeated_signal_retries_a_deferred_incident_once_due_without_a_worker(
        engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies: [{{name: a, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
        cooldown: {{max_attempts: 1, window: 0.5s}}
    """)
    ctx = engine_env.context()
    assert run_incident(ctx, "demo", trigger="alert").incident.state == IncidentState.RECOVERED
    deferred = run_incident(ctx, "demo", trigger="alert").incident
    assert deferred.state == IncidentState.OPEN
    assert run_incident(ctx, "demo", trigger="alert").incident.state == IncidentState.OPEN
    time.sleep(0.6)
    retried = run_incident(ctx, "demo", trigger="alert").incident
    assert retried.id == deferred.id and retried.state == IncidentState.RECOVERED
    assert len(engine_env.traced()) == 2


@pytest.mark.both_backends
def test_an_embedded_alias_is_the_same_target_for_switches_locks_and_resources(
        engine_env, run_incident):
    from engine.records import Switch, new_id

    engine_env.runbook("demo", "strategies: [{name: bump, action: test.bump}]\n")
    ctx = engine_env.context()
    counter = {"n": 0}
    ctx.resources.register("counter", counter, target="cache-1.example:9121")
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target="cache-1",
                                until=time.time() + 60))
    refused = run_incident(ctx, "demo", target="cache-1.example:9121").incident
    assert refused.target == "cache-1" and refused.state == IncidentState.CANCELED
    ctx.store.remove_switches(None, "cache-1")
    done = run_incident(ctx, "demo", target="cache-1.example:9121").incident
    assert done.state == IncidentState.RECOVERED and counter["n"] == 1


@pytest.mark.both_backends
def test_a_step_does_not_start_on_an_incident_canceled_while_its_gates_were_asked(
        engine_env, run_incident):
    from engine.gates import Gate
    from engine.orchestration import approvals

    marker = engine_env.root / "changed"
    engine_env.runbook("demo", f"""
        strategies: [{{name: touch, action: test.touch, with: {{path: "{marker}"}}}}]
    """)
    ctx = engine_env.context()

    class CanceledMeanwhile(Gate):
        """Stands for an operator's `recovery cancel` landing while the gates run."""
        name = "meanwhile"

        def check(self, gate_ctx):
            approvals.cancel(ctx, gate_ctx.incident.id, by="carol")
            return self.allow()

    ctx.gates.gates.insert(0, CanceledMeanwhile())
    incident = run_incident(ctx, "demo", target="cache-1").incident
    assert incident.state == IncidentState.CANCELED and not marker.exists()
    assert ctx.store.query_runs(incident_id=incident.id) == []
    assert ctx.store.attempts_since("demo", "cache-1", 0) == []
    assert ctx.store.get_lock("cache-1") is None
    assert list(ctx.artifacts_dir.iterdir()) == []


@pytest.mark.both_backends
def test_a_passing_verify_clears_degraded_even_if_the_alert_resolved_meanwhile(engine_env):
    import threading

    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    engine_env.runbook("demo", f"""
        strategies:
          - {{name: a, action: test.fail}}
          - {{name: b, action: test.sleep, with: {{seconds: 1, trace: "{engine_env.trace}"}}}}
        degraded_mode: {{name: test_down, when: failing}}
    """)
    ctx = engine_env.context()
    opened = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-1"))
    t = threading.Thread(target=advance, args=(ctx, opened.incident.id))
    t.start()
    deadline = time.time() + 10
    while not engine_env.traced() and time.time() < deadline:
        time.sleep(0.02)
    assert ctx.store.degraded_reasons("test_down")          # on after `a` failed
    ctx.store.update_incident(opened.incident.id, state=IncidentState.RESOLVED)
    t.join(15)
    assert ctx.store.get_incident(opened.incident.id).state == IncidentState.RESOLVED
    assert ctx.store.degraded_reasons("test_down") == []     # b's verify passed


def test_a_timed_out_action_is_told_to_stop(engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: nap, action: test.sleep, timeout: 0.3s,
              with: {{seconds: 30, trace: "{engine_env.trace}"}}}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.FAILED and "timed out" in run.reason
    deadline = time.time() + 3
    while time.time() < deadline and not any("stopped" in t for t in engine_env.traced()):
        time.sleep(0.05)
    assert [t.split()[0] for t in engine_env.traced()] == ["sleep-start", "sleep-stopped"]


def test_a_resource_registered_under_the_alias_wins_over_an_untargeted_one(
        engine_env, run_incident):
    engine_env.runbook("demo", "strategies: [{name: bump, action: test.bump}]\n")
    ctx = engine_env.context()
    anywhere, aliased = {"n": 0}, {"n": 0}
    ctx.resources.register("counter", anywhere)
    ctx.resources.register("counter", aliased, target="cache-1.example:9121")
    assert run_incident(ctx, "demo", target="cache-1").incident.state == \
        IncidentState.RECOVERED
    assert (anywhere["n"], aliased["n"]) == (0, 1)


@pytest.mark.both_backends
def test_a_still_firing_alert_reopens_its_recovered_incident_after_the_verify_window(
        engine_env, run_incident):
    engine_env.runbook("demo", f"""
        match: [alertname="DemoDown"]
        strategies: [{{name: a, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
        verify: {{action: test.ok, interval: 0.05s, deadline: 0.4s}}
        cooldown: {{max_attempts: 2, window: 1h}}
    """)
    ctx = engine_env.context()
    labels = {"alertname": "DemoDown", "instance": "cache-1"}

    def fire():
        return run_incident(ctx, None, target=None, trigger="alert", labels=labels,
                            fingerprint="fp-1").incident

    first = fire()
    assert first.state == IncidentState.RECOVERED and first.attempts == 1
    soon = fire()                                   # within the verify window: no new signal
    assert soon.id == first.id and soon.state == IncidentState.RECOVERED
    time.sleep(0.45)
    again = fire()                                  # the fix did not hold
    assert again.id == first.id and again.state == IncidentState.RECOVERED
    assert again.attempts == 2 and len(engine_env.traced()) == 2
    time.sleep(0.45)
    third = fire()                                  # within the cooldown: deferred
    assert third.id == first.id and third.state == IncidentState.OPEN
    assert "cooldown" in third.reason and len(engine_env.traced()) == 2


@pytest.mark.both_backends
def test_a_repeat_sent_before_the_fix_was_verified_does_not_reopen(engine_env, run_incident):
    engine_env.runbook("demo", f"""
        match: [alertname="DemoDown"]
        strategies: [{{name: a, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
        verify: {{action: test.ok, interval: 0.05s, deadline: 0.3s}}
    """)
    ctx = engine_env.context()
    labels = {"alertname": "DemoDown", "instance": "cache-1"}
    sent = time.time()                        # journaled now, processed late (a backlog)
    first = run_incident(ctx, None, target=None, trigger="alert", labels=labels,
                         fingerprint="fp-1").incident
    time.sleep(0.35)
    late = run_incident(ctx, None, target=None, trigger="alert", labels=labels,
                        fingerprint="fp-1", received_at=sent).incident
    assert late.id == first.id and late.state == IncidentState.RECOVERED
    assert len(engine_env.traced()) == 1      # not reopened by an old delivery
