"""The engine's own alerts, against a real Alertmanager.

Labels name the condition (alertname, runbook, target, severity, source): ids and
commands are annotations, so a new incident for a target still down is the same alert.
RecoveryExhausted fires until the target recovers or an operator acknowledges it; a
decided approval's RecoveryApprovalPending resolves at once, not minutes later.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import approvals
from engine.service import notifier, probes
from tests.support.alertmanager import Alertmanager

pytestmark = pytest.mark.requires("alertmanager")

CONDITION = {"alertname", "severity", "source", "component", "runbook", "target"}


@pytest.fixture
def am(tmp_path):
    manager = Alertmanager(tmp_path / "am", "http://127.0.0.1:9/api/v1/alerts", "tok").start()
    yield manager
    manager.stop()


def firing(am: Alertmanager, name: str) -> list[dict]:
    """The alerts of that name Alertmanager has as not resolved (its /api/v2/alerts)."""
    return [a for a in am.alerts() if a["labels"]["alertname"] == name]


def flaky_runbook(env, healthy_when):
    """Fails until ``healthy_when`` exists; a probe checks the same file."""
    env.runbook("flaky", f"""
        strategies: [{{name: fix, action: test.file_exists, with: {{path: "{healthy_when}"}}}}]
        probe: {{action: test.file_exists, with: {{path: "{healthy_when}"}},
                 targets: cache-1, interval: 1s}}
    """)


def recovery(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], env=env.env(),
                          capture_output=True, text=True, timeout=60)


def test_labels_name_the_condition_and_ids_go_in_annotations(engine_env, run_incident, am):
    engine_env.write_config(alertmanagers=f'["{am.url}"]')
    engine_env.runbook("broken", "strategies: [{name: a, action: test.fail}]\n")
    engine_env.runbook("careful", """
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    exhausted = run_incident(ctx, "broken", target="cache-1").incident
    parked = run_incident(ctx, "careful", target="cache-2").incident
    [waiting] = ctx.store.query_runs(incident_id=parked.id)
    assert notifier.post(ctx) == {}
    [out] = firing(am, "RecoveryExhausted")
    assert set(out["labels"]) == CONDITION
    assert out["labels"]["runbook"] == "broken" and out["labels"]["target"] == "cache-1"
    assert out["annotations"]["incident"] == exhausted.id
    assert f"recovery ack {exhausted.id}" in out["annotations"]["command"]
    [pending] = firing(am, "RecoveryApprovalPending")
    assert set(pending["labels"]) == CONDITION
    assert pending["labels"]["target"] == "cache-2"
    assert pending["annotations"]["run"] == waiting.id
    assert pending["annotations"]["incident"] == parked.id
    assert pending["annotations"]["strategy"] == "risky"


def test_exhausted_fires_across_a_deferred_new_incident_until_the_target_recovers(
        engine_env, run_incident, am, tmp_path):
    # The deferred incident's own RecoveryCooldown: test_recovery_event_alerts.py.
    engine_env.write_config(alertmanagers=f'["{am.url}"]',
                            alertmanager="{alert_on: {cooldown: false}}")
    healthy = tmp_path / "healthy"
    flaky_runbook(engine_env, healthy)
    ctx = engine_env.context()
    first = run_incident(ctx, "flaky", target="cache-1").incident
    assert first.state == IncidentState.FAILED
    notifier.post(ctx)
    [before] = firing(am, "RecoveryExhausted")

    # Redis still down: a new incident for it, deferred by the cooldown.
    again = run_incident(ctx, "flaky", target="cache-1").incident
    assert again.id != first.id and again.state == IncidentState.OPEN
    assert "cooldown" in again.reason
    assert [a["labels"]["alertname"] for a in notifier.current_alerts(ctx)] == \
        ["RecoveryExhausted"]
    notifier.post(ctx)
    [during] = firing(am, "RecoveryExhausted")
    assert during["fingerprint"] == before["fingerprint"]    # the same alert, still firing
    assert during["annotations"]["incident"] == first.id
    assert during["endsAt"] > before["endsAt"]               # re-posted, not left to lapse

    # The target recovers (its probe passes): the alert resolves at the next post.
    healthy.touch()
    assert probes.run_due(ctx) == 1
    assert notifier.current_alerts(ctx) == []
    notifier.post(ctx)
    assert firing(am, "RecoveryExhausted") == []


def test_a_passing_verify_on_the_target_resolves_the_exhausted_alert(engine_env,
                                                                     run_incident, am,
                                                                     tmp_path):
    engine_env.write_config(alertmanagers=f'["{am.url}"]')
    healthy = tmp_path / "healthy"
    flaky_runbook(engine_env, healthy)
    ctx = engine_env.context()
    first = run_incident(ctx, "flaky", target="cache-1").incident
    notifier.post(ctx)
    assert len(firing(am, "RecoveryExhausted")) == 1
    healthy.touch()
    fixed = run_incident(ctx, "flaky", target="cache-1", force=True).incident
    assert fixed.id != first.id and fixed.state == IncidentState.RECOVERED
    notifier.post(ctx)
    assert firing(am, "RecoveryExhausted") == []


@pytest.mark.slow
def test_an_operator_acknowledges_an_exhausted_alert(engine_env, run_incident, am,
                                                     tmp_path):
    engine_env.write_config(alertmanagers=f'["{am.url}"]')
    flaky_runbook(engine_env, tmp_path / "never")
    ctx = engine_env.context()
    first = run_incident(ctx, "flaky", target="cache-1").incident
    deferred = run_incident(ctx, "flaky", target="cache-1").incident
    notifier.post(ctx)
    assert len(firing(am, "RecoveryExhausted")) == 1

    unknown = recovery(engine_env, "ack", "inc-nope")
    assert unknown.returncode == 2 and "no incident inc-nope" in unknown.stderr
    wrong = recovery(engine_env, "ack", deferred.id)      # the open one: nothing to ack
    assert wrong.returncode == 4
    assert first.id in wrong.stderr                        # it names the one that fires
    done = recovery(engine_env, "--as", "alice", "ack", first.id)
    assert done.returncode == 0, done.stderr
    assert "acknowledged" in done.stdout and "alice" in done.stdout
    [event] = [e for e in ctx.store.list_events() if e.action == "ack"]
    assert event.actor == "alice" and event.detail["incident_id"] == first.id

    notifier.post(ctx)
    assert firing(am, "RecoveryExhausted") == []
    twice = recovery(engine_env, "ack", first.id)
    assert twice.returncode == 4 and "already acknowledged" in twice.stderr
    # The deferred incident goes on; if it is exhausted too, the alert fires again.
    assert ctx.store.get_incident(deferred.id).state == IncidentState.OPEN


DECISIONS = {
    "approve": lambda ctx, run: approvals.approve(ctx, run.id, by="alice"),
    "reject": lambda ctx, run: approvals.reject(ctx, run.id, by="alice"),
    "cancel": lambda ctx, run: approvals.cancel(ctx, run.id, by="alice"),
    "expire": lambda ctx, run: approvals.expire_due(ctx, run.started_at + 86400 * 2),
}


@pytest.mark.parametrize("decision", sorted(DECISIONS))
def test_a_decided_approval_resolves_at_once_in_alertmanager(engine_env, run_incident, am,
                                                            decision):
    from engine.service.worker import Worker

    engine_env.write_config(alertmanagers=f'["{am.url}"]',
                            alertmanager="{notify_interval: 60s}")
    engine_env.runbook("careful", """
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    parked = run_incident(ctx, "careful", target="cache-2").incident
    [run] = ctx.store.query_runs(incident_id=parked.id)
    assert run.status == RunStatus.PENDING_APPROVAL
    worker = Worker(ctx)
    worker.run_once()
    assert len(firing(am, "RecoveryApprovalPending")) == 1
    DECISIONS[decision](ctx, run)
    worker.run_once()            # well within notify_interval: posted because it changed
    assert firing(am, "RecoveryApprovalPending") == []


def test_a_restarted_service_still_resolves_what_the_last_one_posted(engine_env,
                                                                    run_incident, am):
    engine_env.write_config(alertmanagers=f'["{am.url}"]')
    engine_env.runbook("careful", """
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    parked = run_incident(ctx, "careful", target="cache-2").incident
    notifier.post(ctx)
    assert len(firing(am, "RecoveryApprovalPending")) == 1
    approvals.cancel(ctx, parked.id, by="alice")
    ctx.store.close()
    restarted = engine_env.context()      # another process: it knows only the store
    notifier.post(restarted)
    assert firing(am, "RecoveryApprovalPending") == []


def test_an_exhausted_alert_outlives_its_pruned_incident_and_can_still_be_acked(
        engine_env, run_incident):
    import time

    from engine.orchestration import exhaustion

    engine_env.runbook("broken", "strategies: [{name: a, action: test.fail}]\n")
    ctx = engine_env.context()
    gone = run_incident(ctx, "broken", target="cache-1").incident
    ctx.store.delete_before(time.time() + 1)          # retention took the incident row
    assert ctx.store.get_incident(gone.id) is None
    assert [e.incident_id for e in exhaustion.current(ctx)] == [gone.id]
    assert exhaustion.acknowledge(ctx, gone.id, by="carol").target == "cache-1"
    assert exhaustion.current(ctx) == []
    with pytest.raises(exhaustion.UnknownIncident):
        exhaustion.acknowledge(ctx, gone.id, by="carol")
