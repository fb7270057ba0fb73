"""Against a real Alertmanager: a silence created after an alert arrived stops its step;
an unreachable Alertmanager defers (or, configured so, allows); the engine's own alerts
show up there and are never remediated."""

from __future__ import annotations

import pytest

from engine.alerts.routing import match_runbook
from engine.lifecycle import IncidentState, RunStatus
from engine.service import notifier
from tests.support.alertmanager import Alertmanager, free_port

pytestmark = pytest.mark.requires("alertmanager")

LABELS = {"alertname": "DemoDown", "instance": "cache-1", "severity": "critical"}


@pytest.fixture
def am(tmp_path):
    manager = Alertmanager(tmp_path / "am", "http://127.0.0.1:9/api/v1/alerts", "tok").start()
    yield manager
    manager.stop()


def demo_runbook(env, marker):
    env.runbook("demo", f"""
        match: [alertname="DemoDown"]
        strategies: [{{name: touch, action: test.touch, with: {{path: "{marker}"}}}}]
        degraded_mode: {{name: test_down}}
    """)


def test_a_silence_created_after_the_alert_arrived_stops_its_step(engine_env, run_incident,
                                                                  am):
    engine_env.write_config(alertmanagers=f'["{am.url}"]')
    marker = engine_env.root / "touched"
    demo_runbook(engine_env, marker)
    ctx = engine_env.context()
    am.fire(LABELS)
    am.silence({"alertname": "DemoDown", "instance": "cache-1"})
    opened = run_incident(ctx, None, target=None, trigger="alert", labels=LABELS)
    assert opened.incident.state == IncidentState.OPEN      # deferred, still open
    assert "silenced in Alertmanager" in opened.incident.reason
    assert not marker.exists()
    [run] = ctx.store.query_runs(incident_id=opened.incident.id)
    assert run.status == RunStatus.DEFERRED
    # an alert that is not silenced goes ahead, through the same gate
    other = dict(LABELS, instance="cache-2")
    am.fire(other)
    assert run_incident(ctx, None, target=None, trigger="alert",
                        labels=other).incident.state == IncidentState.RECOVERED
    # manual runs are not alerts: no silence applies to them
    assert run_incident(ctx, "demo", target="cache-2").incident.state == \
        IncidentState.RECOVERED


@pytest.mark.parametrize("policy", ["defer", "allow"])
def test_an_unreachable_alertmanager_defers_or_allows_as_configured(engine_env, run_incident,
                                                                    policy):
    nobody = f"http://127.0.0.1:{free_port()}"
    engine_env.write_config(alertmanagers=f'["{nobody}"]',
                            alertmanager=f"{{when_unreachable: {policy}, timeout: 0.5s}}")
    marker = engine_env.root / "touched"
    demo_runbook(engine_env, marker)
    ctx = engine_env.context()
    incident = run_incident(ctx, None, target=None, trigger="alert", labels=LABELS).incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    gates = {g["gate"]: g for g in _run_json(ctx, run.id)["gates"]}
    assert "cannot check silences" in gates["silence"]["reason"]
    if policy == "defer":
        assert incident.state == IncidentState.OPEN and not marker.exists()
    else:
        assert incident.state == IncidentState.RECOVERED and marker.exists()


def test_outgoing_alerts_reach_alertmanager_and_are_never_remediated(engine_env, run_incident,
                                                                     am):
    engine_env.write_config(alertmanagers=f'["{am.url}"]')
    engine_env.runbook("broken", """
        priority: critical
        strategies: [{name: a, action: test.fail}]
        degraded_mode: {name: test_down}
    """)
    engine_env.runbook("careful", """
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    assert run_incident(ctx, "broken", target="cache-1").incident.state == \
        IncidentState.FAILED
    parked = run_incident(ctx, "careful", target="cache-2").incident
    [waiting] = ctx.store.query_runs(incident_id=parked.id)
    assert notifier.post(ctx) == {}
    posted = {a["labels"]["alertname"]: a for a in am.alerts()}
    shown = {name: alert["labels"] for name, alert in posted.items()}
    assert shown["RecoveryExhausted"]["target"] == "cache-1"
    assert shown["RecoveryExhausted"]["severity"] == "P0"    # the runbook's priority
    assert shown["RecoveryDegradedMode"]["mode"] == "test_down"
    assert posted["RecoveryApprovalPending"]["annotations"]["run"] == waiting.id
    assert {labels["source"] for labels in shown.values()} == {"infra-recovery"}
    # no runbook takes the engine's own alerts, even one matching everything
    engine_env.runbook("greedy", "match: []\nstrategies: [{name: a, action: test.ok}]\n")
    ctx = engine_env.context()
    for labels in shown.values():
        assert match_runbook(ctx.runbooks, labels) is None


def test_outgoing_alerts_stop_when_the_condition_ends(engine_env, run_incident):
    engine_env.runbook("careful", """
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "careful", target="cache-2").incident
    assert [a["labels"]["alertname"] for a in notifier.current_alerts(ctx)] == \
        ["RecoveryApprovalPending"]
    from engine.orchestration import approvals

    approvals.cancel(ctx, incident.id, by="carol")
    assert notifier.current_alerts(ctx) == []


def _run_json(ctx, run_id):
    from engine.artifacts import RunArtifacts

    return RunArtifacts(ctx.artifacts_dir, run_id).read_run_json()


def test_a_worker_posts_the_engines_alerts_at_most_once_per_interval(engine_env,
                                                                     run_incident, am):
    from engine.service.worker import Worker

    engine_env.write_config(alertmanagers=f'["{am.url}"]',
                            alertmanager="{notify_interval: 60s}")
    engine_env.runbook("careful", """
        strategies: [{name: risky, action: test.ok, approval: required}]
    """)
    ctx = engine_env.context()
    run_incident(ctx, "careful", target="cache-2")
    worker = Worker(ctx)
    worker.run_once()
    assert [a["labels"]["alertname"] for a in am.alerts()] == ["RecoveryApprovalPending"]
    posted = ctx.store.get_value("notify_posted_at")
    worker.run_once()
    assert ctx.store.get_value("notify_posted_at") == posted    # not again within 60 s
