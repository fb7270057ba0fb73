"""The engine's alerts for every recovery event, against a real Alertmanager whose
receiver is a test HTTP server (what people would be told), grouped as docs/operations.md
recommends (``group_by: [alertname, runbook]``).

RecoverySucceeded is told once (not by the next pass, a restarted process, or another
one); RecoveryActionInProgress lasts as long as a destructive step runs; RecoveryCooldown
while the cooldown holds a target back; each is switchable; severity follows the
runbook's priority; a dead Alertmanager costs a failed post (counted), never a
remediation.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest

from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import approvals
from engine.reporting.metrics import render_text
from engine.service import notifier
from tests.support.alert_receiver import AlertReceiver
from tests.support.alertmanager import Alertmanager
from tests.support.service import free_port, wait_for

pytestmark = pytest.mark.requires("alertmanager")

CONDITION = {"alertname", "severity", "source", "component", "runbook", "target"}
EXTERNAL = "https://recovery.example.test:9797"


@pytest.fixture
def receiver():
    with AlertReceiver() as server:
        yield server


@pytest.fixture
def am(tmp_path, receiver):
    manager = Alertmanager(tmp_path / "am", f"{receiver.url}/hook", "tok",
                           repeat_interval="1h", group_by=("alertname", "runbook")).start()
    yield manager
    manager.stop()


def configure(engine_env, *urls: str, **alertmanager: str) -> None:
    settings = ", ".join(["notify_interval: 60s", "timeout: 1s",
                          *(f"{k}: {v}" for k, v in alertmanager.items())])
    engine_env.write_config(alertmanagers="[" + ", ".join(f'"{u}"' for u in urls) + "]",
                            alertmanager=f"{{{settings}}}", external_url=EXTERNAL)


def names(batch: list[dict]) -> list[str]:
    return [a["labels"]["alertname"] for a in batch]


def in_am(am: Alertmanager, name: str) -> list[dict]:
    return [a for a in am.alerts() if a["labels"]["alertname"] == name]


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def settled(receiver: AlertReceiver, name: str, status: str, count: int) -> list[dict]:
    """Wait (bounded) until the receiver was told ``count`` of them, then a few group
    intervals more, so that a duplicate would have arrived too."""
    wait_for(lambda: len(receiver.told(name, status)) >= count, timeout=15)
    time.sleep(3)
    return receiver.told(name, status)


def test_a_recovery_is_told_once_grouped_per_runbook(engine_env, run_incident, am,
                                                     receiver):
    configure(engine_env, am.url, receiver.url,
              severity_by_priority="{critical: page}")
    engine_env.runbook("fixable", "priority: critical\n"
                       "strategies: [{name: restart, action: test.ok}]\n")
    ctx = engine_env.context()
    one = run_incident(ctx, "fixable", target="cache-1").incident
    two = run_incident(ctx, "fixable", target="cache-2").incident
    assert one.state == two.state == IncidentState.RECOVERED
    assert notifier.post(ctx) == {}
    [batch] = receiver.engine_posts()
    told = {a["labels"]["target"]: a for a in batch
            if a["labels"]["alertname"] == "RecoverySucceeded"}
    assert sorted(told) == ["cache-1", "cache-2"]
    alert = told["cache-1"]
    assert set(alert["labels"]) == CONDITION
    assert alert["labels"]["severity"] == "page" and alert["labels"]["source"] == "infra-recovery"
    [run] = ctx.store.query_runs(incident_id=one.id)
    assert alert["annotations"]["incident"] == one.id
    assert alert["annotations"]["run"] == run.id
    assert alert["annotations"]["link"] == f"{EXTERNAL}/api/v1/runs/{run.id}"
    closed = ctx.store.get_incident(one.id).closed_at
    assert epoch(alert["endsAt"]) == pytest.approx(closed + 300, abs=1)   # a few minutes on

    # Not again: the next pass, nor another process (it knows only the store).
    notifier.post(ctx)
    ctx.store.close()
    notifier.post(engine_env.context())
    assert all("RecoverySucceeded" not in names(b) for b in receiver.engine_posts()[1:])

    # People are told once, both targets in one notification (grouped by runbook).
    assert len(settled(receiver, "RecoverySucceeded", "firing", 2)) == 2
    [notification] = [n for n in receiver.notifications()
                      if "RecoverySucceeded" in names(n["alerts"])]
    assert notification["groupLabels"] == {"alertname": "RecoverySucceeded",
                                           "runbook": "fixable"}


def test_a_destructive_step_is_in_progress_until_it_ends(engine_env, run_incident, am,
                                                         receiver, tmp_path):
    configure(engine_env, am.url)
    release = tmp_path / "release"
    engine_env.runbook("careful", f"""
        priority: high
        strategies: [{{name: rebuild, action: test.wait_for_file, idempotent: false,
                      with: {{release: "{release}", seconds: 30}}}}]
    """)
    engine_env.runbook("quick", f"""
        priority: high
        strategies: [{{name: reconnect, action: test.wait_for_file,
                      with: {{release: "{release}", seconds: 30}}}}]
    """)
    ctx = engine_env.context()
    steps = [threading.Thread(target=run_incident, args=(ctx, name), kwargs={"target": t})
             for name, t in (("careful", "cache-1"), ("quick", "cache-2"))]
    for step in steps:
        step.start()
    try:
        assert wait_for(lambda: len(ctx.store.query_runs(status=RunStatus.RUNNING.value)) == 2,
                        timeout=15)
        notifier.post(ctx)
        [alert] = in_am(am, "RecoveryActionInProgress")   # the reconnect is not destructive
        assert set(alert["labels"]) == CONDITION
        assert alert["labels"]["target"] == "cache-1" and alert["labels"]["severity"] == "P1"
        assert alert["annotations"]["strategy"] == "rebuild"
        assert alert["annotations"]["link"].startswith(f"{EXTERNAL}/api/v1/runs/run")
        notifier.post(ctx)                              # re-posted: the same alert
        assert len(settled(receiver, "RecoveryActionInProgress", "firing", 1)) == 1
    finally:
        release.touch()
        for step in steps:
            step.join(30)
    notifier.post(ctx)
    assert in_am(am, "RecoveryActionInProgress") == []
    assert len(settled(receiver, "RecoveryActionInProgress", "resolved", 1)) == 1
    assert len(receiver.told("RecoveryActionInProgress", "firing")) == 1


def test_an_approved_step_is_in_progress_and_a_pending_one_is_not(engine_env, run_incident,
                                                                 am, tmp_path):
    configure(engine_env, am.url)
    release = tmp_path / "release"
    engine_env.runbook("careful", f"""
        strategies: [{{name: restart, action: test.wait_for_file, approval: required,
                      with: {{release: "{release}", seconds: 30}}}}]
    """)
    ctx = engine_env.context()
    parked = run_incident(ctx, "careful", target="cache-1").incident
    [run] = ctx.store.query_runs(incident_id=parked.id)
    notifier.post(ctx)
    assert in_am(am, "RecoveryActionInProgress") == []
    assert len(in_am(am, "RecoveryApprovalPending")) == 1
    approvals.approve(ctx, run.id, by="alice")
    from engine.service.worker import Worker

    worker = Worker(ctx)
    resumed = threading.Thread(target=lambda: worker.run_once(duties=False))
    resumed.start()
    try:
        assert wait_for(lambda: ctx.store.get_run(run.id).status == RunStatus.RUNNING,
                        timeout=15)
        notifier.post(ctx)
        [alert] = in_am(am, "RecoveryActionInProgress")
        assert alert["annotations"]["run"] == run.id
        assert alert["labels"]["severity"] == "P2"          # the default priority: medium
    finally:
        release.touch()
        resumed.join(30)
    notifier.post(ctx)
    assert in_am(am, "RecoveryActionInProgress") == []


def test_cooldown_and_degraded_mode_fire_while_they_hold_and_resolve(engine_env,
                                                                    run_incident, am):
    configure(engine_env, am.url)
    engine_env.runbook("broken", """
        priority: low
        strategies: [{name: a, action: test.fail}]
        cooldown: {max_attempts: 1, window: 1h, after_failure: 1h}
        degraded_mode: {name: test_down, when: exhausted}
    """)
    ctx = engine_env.context()
    first = run_incident(ctx, "broken", target="cache-1").incident
    held = run_incident(ctx, "broken", target="cache-1").incident
    assert held.state == IncidentState.OPEN and "cooldown" in held.reason
    notifier.post(ctx)
    [cooling] = in_am(am, "RecoveryCooldown")
    assert set(cooling["labels"]) == CONDITION
    assert cooling["labels"]["severity"] == "P3"
    assert cooling["annotations"]["incident"] == held.id
    assert epoch(cooling["annotations"]["next_attempt"]) > time.time() + 3000
    [degraded] = in_am(am, "RecoveryDegradedMode")
    assert degraded["labels"]["mode"] == "test_down"
    assert degraded["labels"]["severity"] == "P3"     # the runbook that declares the mode
    assert degraded["annotations"]["incident"] == first.id

    approvals.cancel(ctx, held.id, by="alice")       # nothing waits for the cooldown now
    done = subprocess.run([sys.executable, "-m", "engine", "degraded", "--off", "test_down"],
                          env=engine_env.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    notifier.post(ctx)
    assert in_am(am, "RecoveryCooldown") == []
    assert in_am(am, "RecoveryDegradedMode") == []
    assert len(in_am(am, "RecoveryExhausted")) == 1


def test_each_event_can_be_switched_off(engine_env, run_incident, receiver):
    configure(engine_env, receiver.url,
              alert_on="{recovery: false, cooldown: false, degraded_mode: false, "
                       "exhaustion: false, in_progress: false}")
    engine_env.runbook("broken", """
        strategies: [{name: a, action: test.fail}]
        cooldown: {max_attempts: 1, window: 1h}
        degraded_mode: {name: test_down, when: exhausted}
    """)
    engine_env.runbook("fixable", "strategies: [{name: restart, action: test.ok}]\n")
    ctx = engine_env.context()
    run_incident(ctx, "broken", target="cache-1")
    run_incident(ctx, "broken", target="cache-1")
    assert run_incident(ctx, "fixable", target="cache-2").incident.state == \
        IncidentState.RECOVERED
    assert notifier.post(ctx) == {}
    assert receiver.engine_posts() == []


def test_a_dead_alertmanager_costs_a_counted_post_never_a_remediation(engine_env,
                                                                      run_incident,
                                                                      receiver):
    from engine.service.worker import Worker

    dead = f"http://127.0.0.1:{free_port()}"
    configure(engine_env, dead)
    engine_env.runbook("fixable", "strategies: [{name: restart, action: test.ok}]\n")
    ctx = engine_env.context()
    fixed = run_incident(ctx, "fixable", target="cache-1").incident
    assert fixed.state == IncidentState.RECOVERED
    Worker(ctx).run_once()                 # the duties pass posts, fails, goes on
    assert set(notifier.post(ctx)) == {dead}
    text = render_text(ctx)
    assert "infra_recovery_outgoing_alerts_failed_total 2.0" in text

    # Not told yet: an Alertmanager that answers later still hears of the recovery.
    configure(engine_env, receiver.url)
    assert notifier.post(engine_env.context()) == {}
    [batch] = receiver.engine_posts()
    assert names(batch) == ["RecoverySucceeded"]
