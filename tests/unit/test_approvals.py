"""The approval lifecycle: park (lock released), approve -> gates asked again -> run,
reject, expiry, on_reject: next, cancel."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import approvals
from engine.records import Switch, new_id
from engine.service.worker import Worker

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture
def parked(engine_env, run_incident):
    marker = engine_env.root / "flushed"
    engine_env.runbook("demo", f"""
        approval_timeout: 1h
        strategies:
          - {{name: flush, action: test.touch, with: {{path: "{marker}"}},
              approval: required}}
          - {{name: after, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}
        degraded_mode: {{name: test_down}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo", target="cache-1", requested_by="pager").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    return ctx, incident, run, marker


def test_a_parked_step_holds_no_lock_and_shows_its_plan(parked):
    ctx, incident, run, marker = parked
    assert incident.state == IncidentState.REMEDIATING
    assert run.status == RunStatus.PENDING_APPROVAL
    assert ctx.store.get_lock("cache-1") is None
    [pending] = ctx.store.list_approvals()
    assert pending.run_id == run.id and pending.requested_by == "pager"
    assert pending.plan["action"] == "test.touch"
    assert pending.plan["params"]["path"] == str(marker)
    assert pending.expires_at > time.time() + 3500
    assert not marker.exists()


def test_approve_queues_then_a_worker_asks_the_gates_again_and_runs_it(parked):
    ctx, incident, run, marker = parked
    approvals.approve(ctx, run.id, by="alice", reason="looks right")
    assert ctx.store.get_run(run.id).status == RunStatus.QUEUED
    assert not marker.exists()                      # approval queues, it does not run
    Worker(ctx).run_once()
    done = ctx.store.get_run(run.id)
    assert done.status == RunStatus.SUCCEEDED and done.approved_by == "alice"
    assert marker.exists()
    assert ctx.store.get_incident(incident.id).state == IncidentState.RECOVERED
    with pytest.raises(approvals.DecisionError):
        approvals.approve(ctx, run.id, by="bob")   # decided once


def test_gates_are_asked_again_after_approval(parked):
    ctx, incident, run, marker = parked
    approvals.approve(ctx, run.id, by="alice")
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target=None,
                                until=time.time() + 60, reason="freeze"))
    Worker(ctx).run_once()
    assert not marker.exists()
    assert ctx.store.get_run(run.id).status == RunStatus.REFUSED
    assert ctx.store.get_incident(incident.id).state == IncidentState.CANCELED


def test_approved_step_deferred_by_a_busy_lock_keeps_its_approval(parked):
    ctx, incident, run, marker = parked
    approvals.approve(ctx, run.id, by="alice")
    lock = ctx.store.acquire_lock("cache-1", "someone-else", 0.5)
    Worker(ctx).run_once()
    assert ctx.store.get_run(run.id).status == RunStatus.DEFERRED
    assert not marker.exists()
    assert lock is not None
    time.sleep(0.6)                                # the other holder's lease lapses
    Worker(ctx).run_once()
    assert marker.exists()
    assert ctx.store.get_incident(incident.id).state == IncidentState.RECOVERED
    final = [r for r in ctx.store.query_runs(incident_id=incident.id)
             if r.status == RunStatus.SUCCEEDED]
    assert [r.approved_by for r in final] == ["alice"]


def test_reject_ends_the_attempt_and_records_who(parked):
    ctx, incident, run, marker = parked
    approvals.reject(ctx, run.id, by="bob", reason="not during the sale")
    rejected = ctx.store.get_run(run.id)
    assert rejected.status == RunStatus.REJECTED
    assert rejected.reason == "rejected by bob: not during the sale"
    closed = ctx.store.get_incident(incident.id)
    assert closed.state == IncidentState.CANCELED
    assert ctx.store.get_approval(run.id).decided_by == "bob"
    Worker(ctx).run_once()
    assert not marker.exists() and parked[0].store.get_incident(incident.id).state == \
        IncidentState.CANCELED


def test_on_reject_next_goes_on_to_the_next_strategy(engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: risky, action: test.ok, approval: required, on_reject: next}}
          - {{name: safe, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    approvals.reject(ctx, run.id, by="bob")
    Worker(ctx).run_once()
    assert ctx.store.get_incident(incident.id).state == IncidentState.RECOVERED
    assert len(engine_env.traced()) == 1


def test_unanswered_approvals_expire(engine_env, run_incident):
    engine_env.runbook("demo", """
        approval_timeout: 0.2s
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    time.sleep(0.3)
    Worker(ctx).run_once()
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.EXPIRED
    assert ctx.store.get_approval(run.id).status == "expired"
    assert ctx.store.get_incident(incident.id).state == IncidentState.CANCELED


def test_mode_approve_parks_every_step(engine_env, run_incident):
    engine_env.runbook("demo", """
        mode: approve
        strategies: [{name: harmless, action: test.ok}]
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    assert [r.status for r in ctx.store.query_runs(incident_id=incident.id)] == \
        [RunStatus.PENDING_APPROVAL]


def test_cancel_an_incident_cancels_what_waits_for_it(parked):
    ctx, incident, run, marker = parked
    said = approvals.cancel(ctx, incident.id, by="carol")
    assert "canceled run" in said and "canceled incident" in said
    assert ctx.store.get_run(run.id).status == RunStatus.CANCELED
    assert ctx.store.get_incident(incident.id).state == IncidentState.CANCELED
    assert ctx.store.list_approvals() == []


def test_an_expired_approval_cannot_be_approved_even_where_no_worker_ran(engine_env,
                                                                          run_incident):
    engine_env.runbook("demo", """
        approval_timeout: 0.1s
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    time.sleep(0.2)
    with pytest.raises(approvals.DecisionError, match="expired"):
        approvals.approve(ctx, run.id, by="alice")
    assert ctx.store.get_run(run.id).status == RunStatus.EXPIRED


def test_an_approved_run_is_timed_from_when_it_starts_not_when_it_parked(parked):
    ctx, incident, run, marker = parked
    time.sleep(0.3)
    approvals.approve(ctx, run.id, by="alice")
    Worker(ctx).run_once()
    done = ctx.store.get_run(run.id)
    assert done.status == RunStatus.SUCCEEDED
    assert done.started_at >= run.started_at + 0.3


def test_canceling_through_a_finished_run_cancels_what_waits_and_approval_is_refused(
        engine_env, run_incident):
    engine_env.runbook("demo", """
        strategies:
          - {name: a, action: test.fail}
          - {name: risky, action: test.ok, approval: required}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    runs = {r.strategy: r for r in ctx.store.query_runs(incident_id=incident.id)}
    approvals.cancel(ctx, runs["a"].id, by="carol")          # a run that already ended
    assert ctx.store.get_incident(incident.id).state == IncidentState.CANCELED
    assert ctx.store.get_run(runs["risky"].id).status == RunStatus.CANCELED
    with pytest.raises(approvals.DecisionError):
        approvals.approve(ctx, runs["risky"].id, by="alice")


def test_canceling_a_queued_run_cancels_its_approval_too(parked):
    ctx, incident, run, marker = parked
    approvals.approve(ctx, run.id, by="alice")
    approvals.cancel(ctx, incident.id, by="carol")
    assert ctx.store.get_run(run.id).status == RunStatus.CANCELED
    assert ctx.store.get_approval(run.id).status == "canceled"
    Worker(ctx).run_once()
    assert not marker.exists()


def test_rejecting_the_last_step_with_on_reject_next_exhausts_the_runbook(engine_env,
                                                                          run_incident):
    engine_env.runbook("demo", """
        strategies: [{name: only, action: test.ok, approval: required, on_reject: next}]
        degraded_mode: {name: test_down}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    approvals.reject(ctx, run.id, by="bob")
    Worker(ctx).run_once()
    closed = ctx.store.get_incident(incident.id)
    assert closed.state == IncidentState.FAILED and closed.reason.startswith("exhausted")
    assert "handles failure type" not in closed.reason
    assert ctx.store.degraded_reasons("test_down")


# -- the emergency stop (`disable --cancel-running`) --------------------------------------

class _StopArrivesNow:
    """A last gate that lets the step through, and in that instant an operator's
    emergency stop runs (the switch on, then ``stop_in_scope``): the step's gates have
    all said yes, its run is not in the store yet."""

    name = "stop_arrives_now"

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def check(self, gate_ctx):
        from engine.gates import Decision, Verdict

        self.ctx.store.add_switch(Switch(id=new_id("sw"), component=None,
                                         target=gate_ctx.target, until=time.time() + 600,
                                         created_by="carol"))
        approvals.stop_in_scope(self.ctx, None, gate_ctx.target, by="carol", reason="fire")
        return Decision(self.name, Verdict.ALLOW)


def test_the_emergency_stop_cancels_a_step_whose_gates_said_yes_but_not_begun(
        engine_env, run_incident):
    engine_env.runbook("demo", f"""
        strategies: [{{name: a, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
    """)
    ctx = engine_env.context()
    ctx.gates.gates.append(_StopArrivesNow(engine_env.context()))
    incident = run_incident(ctx, "demo", target="cache-1").incident
    assert engine_env.traced() == []                        # the step never ran
    assert incident.state == IncidentState.CANCELED
    assert incident.reason == "canceled by carol: emergency stop: fire"
    assert ctx.store.query_runs(incident_id=incident.id) == []
    assert ctx.store.get_lock("cache-1") is None            # its lease given back


def test_the_emergency_stop_cancels_an_incident_claimed_with_no_run_yet(engine_env):
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    engine_env.runbook("demo", f"""
        strategies: [{{name: a, action: test.ok, with: {{trace: "{engine_env.trace}"}}}}]
    """)
    ctx = engine_env.context()
    claimed = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-1"))
    other = open_incident(ctx, TriggerRequest(runbook="demo", target="cache-2"))
    assert claimed.claimed and other.claimed               # remediating, nothing run yet
    stopped = approvals.stop_in_scope(ctx, None, "cache-1", by="carol", reason="fire")
    assert stopped.canceled_incidents == [claimed.incident.id]
    advance(ctx, claimed.incident.id)                       # the claimer goes on: nothing
    ended = ctx.store.get_incident(claimed.incident.id)
    assert (ended.state, ended.reason) == (IncidentState.CANCELED,
                                           "canceled by carol: emergency stop: fire")
    assert engine_env.traced() == []
    assert ctx.store.get_incident(other.incident.id).state == IncidentState.REMEDIATING
