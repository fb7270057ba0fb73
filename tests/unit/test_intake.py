"""The intake: a journaled alert opens or attaches to its incident, a resolve closes it,
nothing accepted is lost, one poison alert blocks nothing. Real SQLite store, real engine."""

from __future__ import annotations

import os
import time

import pytest

from engine.alerts import intake
from engine.alerts.alert import Alert
from engine.alerts.intake import drain, resolve
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.orchestration import approvals
from engine.records import DegradedReason
from engine.service.worker import Worker
from tests.support.alertmanager import iso_at
from tests.support.alerts import STARTS, alert, journal

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


def wait_for(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def only_incident(ctx):
    [incident] = ctx.store.list_incidents()
    return incident


def touch_runbook(engine_env, more: str):
    """The demo runbook, its one step creating a file (and tracing it), with ``more``
    (a line of YAML); the file's path."""
    marker = engine_env.root / "fixed"
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: fix, action: test.touch,
              with: {{path: "{marker}", trace: "{engine_env.trace}"}}}}
        {more}
    """)
    return marker


@pytest.fixture
def touching(engine_env):
    """A runbook whose one step creates a file (and traces it)."""
    marker = touch_runbook(engine_env, "degraded_mode: {name: test_down}")
    return engine_env.context(), marker


@pytest.fixture
def sleeping(engine_env):
    """A runbook whose step sleeps 1.5 s, saying when it started."""
    started = engine_env.root / "started"
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: wait, action: test.sleep,
              with: {{seconds: 1.5, started: "{started}", trace: "{engine_env.trace}"}}}}
    """)
    return engine_env.context(), started


@pytest.fixture
def parking(engine_env):
    """A runbook whose step waits for approval."""
    marker = engine_env.root / "flushed"
    engine_env.runbook("demo", f"""
        approval_timeout: 1h
        strategies:
          - {{name: flush, action: test.touch,
              with: {{path: "{marker}", trace: "{engine_env.trace}"}}, approval: required}}
        degraded_mode: {{name: test_down}}
    """)
    return engine_env.context(), marker


# -- firing ---------------------------------------------------------------------------
def test_a_firing_alert_opens_one_incident_and_runs_its_steps(touching, engine_env):
    ctx, marker = touching
    journal(ctx, alert())
    assert drain(ctx) == 1
    incident = only_incident(ctx)
    assert incident.state == IncidentState.RECOVERED
    assert (incident.runbook, incident.target) == ("demo", "cache-1")  # alias resolved
    assert incident.trigger == "alert" and incident.fingerprint == "fp-demo"
    assert incident.requested_by == "alertmanager:web\\.hook"
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.SUCCEEDED
    assert run.trigger == "alert" and run.fingerprint == "fp-demo"
    assert marker.read_text() == "cache-1"
    assert len(engine_env.traced()) == 1
    assert ctx.store.intake_depth(time.time())[0] == 0


def test_a_repeat_while_the_attempt_runs_attaches_and_starts_nothing(sleeping, engine_env):
    ctx, started = sleeping
    worker = Worker(ctx)
    try:
        journal(ctx, alert())
        worker.run_once(wait=False)             # the step goes to the worker's pool
        assert wait_for(started.exists)
        incident = only_incident(ctx)
        assert incident.state == IncidentState.REMEDIATING   # run_once did not wait for it
        # Alertmanager re-fires the same alert with a new startsAt: a new dedup key
        journal(ctx, alert(starts_at="2024-05-01T10:01:00.000000Z"))
        assert worker.run_once(wait=False) >= 1
        assert ctx.store.intake_depth(time.time())[0] == 0
        assert worker.wait_idle(10)
    finally:
        worker.stop()
    assert only_incident(ctx).state == IncidentState.RECOVERED
    assert len(ctx.store.attempts_since("demo", "cache-1", 0)) == 1
    assert [r.status for r in ctx.store.query_runs(incident_id=incident.id)] == \
        [RunStatus.SUCCEEDED]
    assert [line.split()[0] for line in engine_env.traced()] == ["sleep-start", "sleep-end"]


def test_the_engines_own_alerts_are_never_remediated(touching, engine_env):
    ctx, marker = touching
    journal(ctx, alert(alertname="RecoveryExhausted", source="infra-recovery"),
            alert("resolved", fingerprint="fp-own-2", source="infra-recovery"))
    assert drain(ctx) == 2
    assert ctx.store.list_incidents() == [] and ctx.store.query_runs() == []
    assert not marker.exists() and engine_env.traced() == []
    assert ctx.store.intake_depth(time.time())[0] == 0


def test_an_alert_for_an_unknown_instance_is_refused_and_recorded(touching, engine_env):
    ctx, marker = touching
    journal(ctx, alert(instance="db-9.example:9121"))
    assert drain(ctx) == 1
    assert ctx.store.list_incidents() == []
    [run] = ctx.store.query_runs()
    assert run.status == RunStatus.REFUSED and run.trigger == "alert"
    assert run.fingerprint == "fp-demo" and "unknown target" in run.reason
    assert not marker.exists()


def test_an_alert_no_runbook_matches_is_acknowledged(touching, engine_env):
    ctx, _ = touching
    journal(ctx, Alert(status="firing", labels={"alertname": "Other", "instance": "cache-1"},
                       starts_at=STARTS, fingerprint="fp-other"))
    assert drain(ctx) == 1
    assert ctx.store.list_incidents() == [] and ctx.store.query_runs() == []
    assert ctx.store.intake_depth(time.time())[0] == 0


# -- resolved -------------------------------------------------------------------------
def test_a_resolve_closes_the_incident_and_cancels_its_pending_approval(parking,
                                                                        engine_env):
    ctx, marker = parking
    journal(ctx, alert())
    drain(ctx)
    incident = only_incident(ctx)
    [parked] = ctx.store.query_runs(incident_id=incident.id)
    assert parked.status == RunStatus.PENDING_APPROVAL
    ctx.store.add_degraded(DegradedReason(mode="test_down", key="incident:earlier",
                                          target="cache-1", reason="earlier failure",
                                          since=time.time()))
    traced = engine_env.traced()

    journal(ctx, alert("resolved"))
    assert drain(ctx) == 1
    closed = ctx.store.get_incident(incident.id)
    assert closed.state == IncidentState.RESOLVED and closed.closed_at
    assert "alert resolved (fingerprint fp-demo)" in closed.reason
    assert ctx.store.get_run(parked.id).status == RunStatus.CANCELED
    approval = ctx.store.get_approval(parked.id)
    assert approval.status == "canceled" and approval.reason == "alert resolved"
    with pytest.raises(approvals.DecisionError):
        approvals.approve(ctx, parked.id, by="alice")
    Worker(ctx).run_once()
    assert not marker.exists() and engine_env.traced() == traced   # nothing started
    assert ctx.store.degraded_reasons("test_down")                # not proof of health
    assert ctx.store.intake_depth(time.time())[0] == 0


def test_a_resolve_cancels_an_approved_step_not_run_yet(parking, engine_env):
    ctx, marker = parking
    journal(ctx, alert())
    drain(ctx)
    incident = only_incident(ctx)
    [parked] = ctx.store.query_runs(incident_id=incident.id)
    approvals.approve(ctx, parked.id, by="alice")
    assert ctx.store.get_run(parked.id).status == RunStatus.QUEUED
    journal(ctx, alert("resolved"))
    Worker(ctx).run_once()            # drains the resolve before it looks at queued runs
    assert ctx.store.get_run(parked.id).status == RunStatus.CANCELED
    assert ctx.store.get_approval(parked.id).status == "canceled"
    assert ctx.store.get_incident(incident.id).state == IncidentState.RESOLVED
    assert not marker.exists() and engine_env.traced() == []


def test_a_resolve_never_aborts_a_running_step(sleeping, engine_env):
    ctx, started = sleeping
    worker = Worker(ctx)
    try:
        journal(ctx, alert())
        worker.run_once(wait=False)
        assert wait_for(started.exists)
        incident = only_incident(ctx)
        [running] = ctx.store.query_runs(incident_id=incident.id)
        assert running.status == RunStatus.RUNNING
        journal(ctx, alert("resolved"))
        assert drain(ctx) == 1                 # another worker takes the resolve
        assert ctx.store.get_incident(incident.id).state == IncidentState.RESOLVED
        assert ctx.store.get_run(running.id).status == RunStatus.RUNNING
        assert worker.wait_idle(10)
    finally:
        worker.stop()
    assert ctx.store.get_run(running.id).status == RunStatus.SUCCEEDED
    final = ctx.store.get_incident(incident.id)
    assert final.state == IncidentState.RESOLVED and final.attempt_id is None
    [attempt] = ctx.store.attempts_since("demo", "cache-1", 0)
    assert attempt.outcome == AttemptOutcome.RESOLVED
    assert [line.split()[0] for line in engine_env.traced()] == ["sleep-start", "sleep-end"]


def test_a_resolve_with_no_incident_open_does_nothing(touching, engine_env):
    ctx, marker = touching
    journal(ctx, alert("resolved"))
    assert drain(ctx) == 1
    assert ctx.store.list_incidents() == [] and ctx.store.query_runs() == []
    assert not marker.exists()
    assert resolve(ctx, alert("resolved")) is None


def test_a_resolve_of_another_signal_leaves_the_incident_open(parking, run_incident):
    ctx, _ = parking
    journal(ctx, alert())
    drain(ctx)
    incident = only_incident(ctx)
    # another alert for the same runbook and target resolves: this one still fires
    journal(ctx, alert("resolved", fingerprint="fp-neighbour", alertname="DemoSlow"))
    assert drain(ctx) == 1
    assert ctx.store.get_incident(incident.id).state == IncidentState.REMEDIATING
    # an operator's incident is not the alert's either
    manual = run_incident(ctx, "demo", target="cache-2", requested_by="alice").incident
    journal(ctx, alert("resolved", instance="cache-2"))
    assert drain(ctx) == 1
    assert ctx.store.get_incident(manual.id).state == IncidentState.REMEDIATING


def test_a_firing_delivery_processed_after_its_resolve_starts_nothing(touching,
                                                                      engine_env):
    """A worker died holding the firing delivery (or the lagging member of an HA pair
    sent it after the other one's resolve): the episode is over, nothing starts."""
    ctx, marker = touching
    journal(ctx, alert())
    held = ctx.store.claim_intake("dead-worker", 10, 0.3)   # its worker dies holding it
    assert len(held) == 1
    journal(ctx, alert("resolved"))
    assert drain(ctx) == 1                       # the resolve overtakes it
    time.sleep(0.4)
    assert drain(ctx) == 1                       # the firing one, taken again
    assert ctx.store.list_incidents() == [] and not marker.exists()
    # a new episode of the same alert (a new startsAt) is a new failure
    journal(ctx, alert(starts_at="2024-05-01T11:00:00.000000Z"))
    assert drain(ctx) == 1
    assert only_incident(ctx).state == IncidentState.RECOVERED and marker.exists()


def test_a_late_resolve_of_an_earlier_episode_leaves_the_new_one_open(parking,
                                                                       engine_env):
    """Episode 1 fired and resolved; it fires again (a new startsAt) and parks for
    approval; then a delayed copy of episode 1's resolve arrives (the lagging member
    of an HA pair): the new episode's incident stays open, its approval stands."""
    ctx, _ = parking
    later = "2024-05-01T11:00:00.000000Z"
    journal(ctx, alert(), alert("resolved"))
    assert drain(ctx) == 2
    assert only_incident(ctx).state == IncidentState.RESOLVED
    journal(ctx, alert(starts_at=later))
    assert drain(ctx) == 1
    [second] = [i for i in ctx.store.list_incidents() if i.state != IncidentState.RESOLVED]
    assert second.starts_at == later
    assert resolve(ctx, alert("resolved")) is None   # same (fingerprint, startsAt, status)
    assert ctx.store.get_incident(second.id).state == IncidentState.REMEDIATING
    [parked] = ctx.store.query_runs(incident_id=second.id)
    assert parked.status == RunStatus.PENDING_APPROVAL
    # the resolve of the new episode does close it
    journal(ctx, alert("resolved", starts_at=later, ends_at="2024-05-01T11:05:00.000000Z"))
    assert drain(ctx) == 1
    assert ctx.store.get_incident(second.id).state == IncidentState.RESOLVED
    assert ctx.store.get_run(parked.id).status == RunStatus.CANCELED


def test_a_resolve_processed_while_its_incident_opens_still_closes_it(touching,
                                                                      engine_env):
    """Two workers: one opens the incident of a firing delivery just as the other
    processes its resolve (found no incident yet, so closed nothing). The opener sees
    the resolve once the incident exists: it closes it and starts nothing."""
    ctx, marker = touching
    real_open = ctx.store.open_incident

    def open_after_the_resolve(incident):
        assert resolve(ctx, alert("resolved")) is None     # the other worker: nothing open
        return real_open(incident)

    ctx.store.open_incident = open_after_the_resolve
    journal(ctx, alert())
    assert drain(ctx) == 1
    closed = only_incident(ctx)
    assert closed.state == IncidentState.RESOLVED
    assert ctx.store.query_runs(incident_id=closed.id) == [] and not marker.exists()


def test_a_resolve_with_an_earlier_start_than_its_firing_one_still_ends_the_episode(
        parking, engine_env):
    """Alertmanager merges updates of one alert keeping the earliest startsAt, so the
    resolve of an episode may carry an earlier startsAt than its firing notifications
    did (a real Alertmanager does this in tests/integration/test_alertmanager_e2e.py).
    It still closes the incident, and a firing copy of that episode processed late
    starts nothing."""
    ctx, _ = parking
    journal(ctx, alert())
    assert drain(ctx) == 1
    incident = only_incident(ctx)
    journal(ctx, alert("resolved", starts_at="2024-05-01T09:59:00.000000Z"))
    assert drain(ctx) == 1
    assert ctx.store.get_incident(incident.id).state == IncidentState.RESOLVED
    journal(ctx, alert(starts_at="2024-05-01T10:02:00.000000Z"))   # same episode, late
    assert drain(ctx) == 1
    assert len(ctx.store.list_incidents()) == 1


def test_an_old_episode_firing_again_long_after_its_resolve_is_a_new_signal(touching,
                                                                            engine_env):
    """Prometheus restarted and restored the alert's old startsAt; Alertmanager had
    resolved it meanwhile. Journaled minutes after that resolve, it is the failure going
    on, not a late copy: it is remediated."""
    ctx, marker = touching
    long_ago = time.time() - intake.LATE_COPY_WINDOW - 60
    ctx.store.mark_resolved("fp-demo", "2024-05-01T10:05:00.000000Z", long_ago)
    journal(ctx, alert())                        # startsAt 10:00, before that resolve ended
    assert drain(ctx) == 1
    assert only_incident(ctx).state == IncidentState.RECOVERED and marker.exists()


def test_resolve_marks_are_pruned_with_the_history(touching, engine_env):
    ctx, _ = touching
    ctx.store.mark_resolved("fp-old", STARTS, time.time() - 100)
    ctx.store.mark_resolved("fp-new", STARTS, time.time())
    ctx.store.mark_resolved("fp-new", "2024-04-01T00:00:00.000000Z", time.time())
    assert ctx.store.resolved_until("fp-new")[0] == STARTS   # the latest end is kept
    ctx.store.delete_before(time.time() - 50)
    assert ctx.store.resolved_until("fp-old") is None
    assert ctx.store.resolved_until("fp-new")[0] == STARTS


# -- a kill switch, a re-fire, and what the journal keeps ------------------------------
def test_a_re_fire_within_the_verify_window_reopens_and_its_refusal_is_recorded(engine_env):
    """The fix was verified a moment ago; the target dies again at once and the alert
    fires anew (a new startsAt, after the incident closed). That is a new signal, not a
    late repeat: under a kill switch it is refused, and the refusal is recorded."""
    from engine.records import Switch, new_id

    marker = engine_env.root / "fixed"
    engine_env.runbook("demo", f"""
        strategies: [{{name: fix, action: test.touch, with: {{path: "{marker}"}}}}]
        verify: {{action: test.ok, interval: 0.05s, deadline: 60s}}
    """)
    ctx = engine_env.context()
    first = time.time() - 30
    journal(ctx, alert(starts_at=iso_at(first)))
    assert drain(ctx) == 1
    incident = only_incident(ctx)
    assert incident.state == IncidentState.RECOVERED and incident.verify_until > time.time()
    repeat = alert(starts_at=iso_at(first))        # a repeat of that episode: nothing
    ctx.store.enqueue_alerts([(repeat.dedup_key + "|again", repeat.to_payload())])
    assert drain(ctx) == 1
    assert only_incident(ctx).state == IncidentState.RECOVERED
    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target="cache-1",
                                until=time.time() + 600, created_by="alice"))
    journal(ctx, alert("resolved", starts_at=iso_at(first), ends_at=iso_at(time.time() - 1)))
    journal(ctx, alert(starts_at=iso_at(time.time())))     # dies again: a new episode
    assert drain(ctx) == 2
    again = only_incident(ctx)
    assert again.id == incident.id and again.state == IncidentState.CANCELED
    refused = ctx.store.query_runs(incident_id=incident.id)[0]
    assert (refused.status, refused.trigger, refused.fingerprint, refused.gate) == \
        (RunStatus.REFUSED, "alert", "fp-demo", "kill_switch")
    assert "auto-recovery disabled for target=cache-1" in refused.reason
    # every delivery is kept, newest first, with what the intake made of it: one row
    # per (fingerprint, startsAt, status), a repeat counted with its latest outcome
    kept = ctx.store.deliveries(fingerprint="fp-demo")
    assert [(d.status, d.count) for d in kept] == [("firing", 1), ("resolved", 1),
                                                   ("firing", 2)]
    assert [d.incident_id for d in kept] == [incident.id, None, incident.id]
    assert "reopened" in kept[0].outcome
    assert "nothing to close" in kept[1].outcome
    assert "sent before its fix was verified" in kept[2].outcome
    assert "opened" in kept[2].first_outcome
    assert kept[0].payload["labels"]["alertname"] == "DemoDown"   # for a replay, and
    assert kept[1].payload == kept[2].payload == {}                # only there


def verified_for_a_minute(engine_env):
    """A runbook whose step traces each run, its verify window a minute long."""
    touch_runbook(engine_env, "verify: {action: test.ok, interval: 0.05s, deadline: 60s}")
    return engine_env.context()


def test_another_alert_of_the_target_sent_before_the_fix_was_verified_attaches(engine_env):
    """A storm: several alerts (other names, other fingerprints) for one host. The first
    opens the incident, which is fixed and verified; another, received before that (a
    worker died holding it), is processed only now. It is evidence from before the fix,
    not a new failure: it attaches to the recovered incident, and the step does not run
    again. One of another failure type, or received after the verify window, is new."""
    ctx = verified_for_a_minute(engine_env)
    first = time.time() - 30
    down = alert(starts_at=iso_at(first), fingerprint="fp-down")
    slow = alert(starts_at=iso_at(first), fingerprint="fp-slow", alertname="DemoSlow")
    journal(ctx, down, slow)
    assert drain(ctx, limit=1) == 1              # the first alert: fixed and verified
    incident = only_incident(ctx)
    assert incident.state == IncidentState.RECOVERED
    assert drain(ctx) == 1                       # the other, received before that
    assert only_incident(ctx).state == IncidentState.RECOVERED
    assert len(engine_env.traced()) == 1         # the step ran once
    [kept] = ctx.store.deliveries(fingerprint="fp-slow")
    assert kept.incident_id == incident.id
    assert "received before its fix was verified" in kept.outcome
    assert "fp-down" in kept.outcome

    # Another failure type is another failure: its own incident, its own step.
    corrupt = alert(starts_at=iso_at(first), fingerprint="fp-corrupt",
                    failure_type="corruption")
    journal(ctx, corrupt)
    assert drain(ctx) == 1
    assert len(ctx.store.list_incidents()) == 2 and len(engine_env.traced()) == 2


def test_another_alert_of_the_target_received_after_the_verify_window_is_new(engine_env):
    ctx = verified_for_a_minute(engine_env)
    first = time.time() - 30
    journal(ctx, alert(starts_at=iso_at(first), fingerprint="fp-down"))
    assert drain(ctx) == 1
    incident = only_incident(ctx)
    ctx.store.update_incident(incident.id, verify_until=time.time() - 1)   # it has passed
    journal(ctx, alert(starts_at=iso_at(first), fingerprint="fp-slow", alertname="DemoSlow"))
    assert drain(ctx) == 1
    assert len(ctx.store.list_incidents()) == 2 and len(engine_env.traced()) == 2


def test_a_delivery_that_starts_nothing_still_says_why(touching, engine_env):
    ctx, _ = touching
    journal(ctx, alert(instance="db-9.example:9121", fingerprint="fp-nowhere"),
            alert(alertname="RecoveryExhausted", source="infra-recovery",
                  fingerprint="fp-own"))
    assert drain(ctx) == 2
    [unknown] = ctx.store.deliveries(fingerprint="fp-nowhere")
    [refusal] = ctx.store.query_runs(fingerprint="fp-nowhere")
    assert unknown.run_id == refusal.id and "unknown target" in unknown.outcome
    assert refusal.gate == "target"
    [own] = ctx.store.deliveries(fingerprint="fp-own")
    assert "the engine's own alert" in own.outcome and own.incident_id is None
    assert own.payload == {}                      # never replayed: nothing kept of it


def test_refusals_a_replay_cannot_act_on_keep_no_payload(touching, engine_env):
    """A sender posts hundreds of alerts for hosts the inventory does not know (and one
    no runbook matches): each delivery is kept 30 days, with what was made of it, but
    not its payload (labels and annotations a sender chose): no replay can act on
    them. An alert a kill switch refused keeps its payload: `enable --replay` needs it."""
    from engine.alerts.refused import refused_alerts, replay
    from engine.records import Switch, new_id

    ctx, marker = touching
    storm = [alert(instance=f"ghost-{n}.example:9121", fingerprint=f"fp-ghost-{n}")
             for n in range(300)]
    nobody = alert(fingerprint="fp-nobody", alertname="Unrelated", component="other")
    journal(ctx, *storm, nobody)
    assert drain(ctx, limit=1000) == 301
    kept = ctx.store.deliveries(limit=None)
    assert len(kept) == 301
    assert [d.fingerprint for d in kept if d.payload] == []
    assert all("refused" in d.outcome for d in kept)

    ctx.store.add_switch(Switch(id=new_id("sw"), component=None, target="cache-1",
                                until=time.time() + 600, created_by="alice"))
    journal(ctx, alert(fingerprint="fp-switched"))
    assert drain(ctx) == 1 and not marker.exists()
    [switched] = ctx.store.deliveries(fingerprint="fp-switched")
    assert switched.payload["labels"]["instance"] == "cache-1.example:9121"
    [listed] = refused_alerts(ctx.store, since=0)
    ctx.store.remove_switches(None, "cache-1")
    assert replay(ctx.store, [listed], by="alice") == [listed]
    assert drain(ctx) == 1 and marker.exists()


# -- the queue ------------------------------------------------------------------------
def test_a_poison_item_is_recorded_and_does_not_block_the_next(touching, engine_env):
    ctx, marker = touching
    ctx.store.enqueue_alerts([
        ("poison|no-status", {"labels": {"component": "demo"}, "fingerprint": "x"}),
        ("poison|bad-status", {**alert(fingerprint="fp-bad").to_payload(),
                               "status": "exploded"}),
        ("poison|labels", {**alert(fingerprint="fp-list").to_payload(), "labels": ["a"]}),
    ])
    journal(ctx, alert())
    assert drain(ctx) == 4
    assert only_incident(ctx).state == IncidentState.RECOVERED and marker.exists()
    failed = [e for e in ctx.store.list_events() if e.action == "alert_failed"]
    assert {e.detail["dedup_key"] for e in failed} == {
        "poison|no-status", "poison|bad-status", "poison|labels"}
    assert all(e.actor == "intake" and e.detail["error"] for e in failed)
    assert ctx.store.intake_depth(time.time())[0] == 0


def test_an_item_held_by_a_dead_worker_is_processed_by_another(touching, engine_env):
    ctx, marker = touching
    journal(ctx, alert())
    assert len(ctx.store.claim_intake("dead-worker", 10, 0.3)) == 1   # never acked
    assert drain(ctx) == 0                       # its claim is still live
    assert ctx.store.intake_depth(time.time())[0] == 1
    time.sleep(0.4)
    assert drain(ctx) == 1
    assert only_incident(ctx).state == IncidentState.RECOVERED and marker.exists()
    assert ctx.store.intake_depth(time.time())[0] == 0
    assert drain(ctx) == 0                       # once


def test_a_worker_gives_back_at_once_what_dead_workers_held_and_keeps_the_order(
        touching, engine_env):
    """Workers killed with alerts claimed: the next worker to start releases those claims
    (the holder's process is gone from this host, or, on another host, its heartbeat is
    stale), so the alerts are taken at once and before the ones journaled after them,
    not a lease later. Claims of live holders stay theirs."""
    import socket

    from tests.support.processes import dead_pid

    ctx, _ = touching
    host = socket.gethostname()
    a, b, c, d, e = (alert(fingerprint=f"fp-{n}", instance=i) for n, i in
                     enumerate(["cache-1", "cache-2", "cache-1", "localhost", "cache-2"]))
    journal(ctx, a, b, c, d, e)
    dead = f"{host}:{dead_pid()}:1234"
    far = "elsewhere:4321:1234"                  # another host, no heartbeat for long
    alive = f"{host}:{os.getpid()}:5678"         # this process: alive
    now = time.time()
    ctx.store.update_value("worker_heartbeat", lambda _: {far: now - 3600})
    assert len(ctx.store.claim_intake(dead, 2, 60)) == 2          # a, b
    assert len(ctx.store.claim_intake(far, 1, 60)) == 1           # c
    assert len(ctx.store.claim_intake(alive, 1, 60)) == 1         # d
    worker = Worker(ctx).start()
    try:
        assert wait_for(lambda: ctx.store.intake_depth(time.time())[0] == 1)   # d, held
    finally:
        worker.stop()
    processed = sorted(ctx.store.deliveries(limit=None), key=lambda x: x.first_processed_at)
    assert [x.fingerprint for x in processed] == ["fp-0", "fp-1", "fp-2", "fp-4"]


def test_a_storm_gives_one_attempt_per_target(engine_env):
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: wait, action: test.sleep,
              with: {{seconds: 0.5, trace: "{engine_env.trace}"}}}}
    """)
    ctx = engine_env.context()
    # repeats with new startsAt (new dedup keys) while the attempts run
    storm = [alert(instance=host, fingerprint=f"fp-{host}",
                   starts_at=f"2024-05-01T10:0{i}:00.000000Z")
             for i in range(5) for host in ("cache-1", "cache-2")]
    journal(ctx, *storm)
    worker = Worker(ctx)
    try:
        assert worker.run_once(wait=False) >= len(storm)
        assert worker.wait_idle(10)
    finally:
        worker.stop()
    incidents = ctx.store.list_incidents()
    assert sorted(i.target for i in incidents) == ["cache-1", "cache-2"]
    assert all(i.state == IncidentState.RECOVERED for i in incidents)
    for host in ("cache-1", "cache-2"):
        assert len(ctx.store.attempts_since("demo", host, 0)) == 1
    assert [w.split()[0] for w in engine_env.traced()].count("sleep-start") == 2
    assert ctx.store.intake_depth(time.time())[0] == 0


def test_stopping_hands_back_attempts_not_started(engine_env):
    engine_env.write_config(threads=1)
    started = engine_env.root / "started"
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: wait, action: test.sleep,
              with: {{seconds: 1, started: "{started}", trace: "{engine_env.trace}"}}}}
    """)
    ctx = engine_env.context()
    worker = Worker(ctx)
    journal(ctx, alert(instance="cache-1", fingerprint="fp-1"))
    worker.run_once(wait=False)
    assert wait_for(started.exists)
    journal(ctx, alert(instance="cache-2", fingerprint="fp-2"))
    worker.run_once(wait=False)                  # its one thread is busy: cache-2 waits
    assert worker.stop(timeout=5)                # the running step finishes
    by_target = {i.target: i for i in ctx.store.list_incidents()}
    assert by_target["cache-1"].state == IncidentState.RECOVERED
    waiting = by_target["cache-2"]
    assert waiting.state == IncidentState.OPEN and waiting.next_try_at is not None
    assert ctx.store.query_runs(incident_id=waiting.id) == []
    # the next worker takes it at once
    Worker(ctx).run_once()
    assert ctx.store.get_incident(waiting.id).state == IncidentState.RECOVERED


def test_a_long_approved_step_does_not_hold_up_the_intake(engine_env, run_incident):
    """Approved and deferred steps run on the pool too: while one sleeps, the loop
    goes on draining alerts and another target's attempt runs beside it."""
    started, marker = engine_env.root / "started", engine_env.root / "fixed"
    engine_env.runbook("slow", f"""
        approval_timeout: 1h
        strategies:
          - {{name: wait, action: test.sleep, approval: required,
              with: {{seconds: 4, started: "{started}", trace: "{engine_env.trace}"}}}}
    """)
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: fix, action: test.touch,
              with: {{path: "{marker}", trace: "{engine_env.trace}"}}}}
    """)
    ctx = engine_env.context()
    parked = run_incident(ctx, "slow", target="cache-2").incident
    [run] = ctx.store.query_runs(incident_id=parked.id)
    approvals.approve(ctx, run.id, by="alice")
    worker = Worker(ctx).start()
    try:
        assert wait_for(started.exists)
        journal(ctx, alert())                            # demo on cache-1
        assert wait_for(marker.exists, timeout=3)
        assert ctx.store.get_run(run.id).status == RunStatus.RUNNING   # still sleeping
        assert worker.wait_idle(10)
    finally:
        worker.stop()
    assert ctx.store.get_run(run.id).status == RunStatus.SUCCEEDED
    assert ctx.store.get_incident(parked.id).state == IncidentState.RECOVERED


def test_a_backlog_over_the_pass_cap_drains_without_pausing(touching, engine_env):
    """More journaled alerts than one pass takes: the loop does not sleep its
    poll_interval between passes while a backlog is left."""
    engine_env.write_config(poll_interval="30s")
    ctx = engine_env.context()
    many = [alert(fingerprint=f"fp-{i}", starts_at=f"2024-05-01T10:00:{i % 60:02d}.{i:06d}Z",
                  component="nothing-matches") for i in range(350)]
    journal(ctx, *many)
    worker = Worker(ctx)
    worker.INTAKE_BATCHES, worker.INTAKE_BATCH = 2, 50     # 100 a pass
    worker.start()
    try:
        assert wait_for(lambda: ctx.store.intake_depth(time.time())[0] == 0, timeout=5)
    finally:
        worker.stop()


def test_an_incident_waiting_in_a_live_workers_pool_is_not_taken_for_abandoned(engine_env):
    """Two worker processes: one claims an incident while its only thread is busy, so
    it waits in its pool longer than the orphan check's three leases. The other's
    orphan check leaves it alone (its holder's heartbeat is fresh): one attempt, once."""
    engine_env.write_config(lease="1s", threads=1)
    started = engine_env.root / "started"
    engine_env.runbook("demo", f"""
        strategies:
          - {{name: wait, action: test.sleep,
              with: {{seconds: 4, started: "{started}", trace: "{engine_env.trace}"}}}}
    """)
    ctx, other = engine_env.context(), engine_env.context()
    other.holder = "another-host:1:1"           # a second worker process on the same store
    worker = Worker(ctx).start()
    try:
        journal(ctx, alert(instance="cache-1", fingerprint="fp-1"))
        assert wait_for(started.exists)
        journal(ctx, alert(instance="cache-2", fingerprint="fp-2"))   # waits for the thread
        assert wait_for(lambda: len(ctx.store.list_incidents()) == 2)
        time.sleep(3.5)                           # past 3 leases, still queued in the pool
        waiting = [i for i in ctx.store.list_incidents() if i.target == "cache-2"][0]
        assert waiting.held_by == ctx.holder
        assert Worker(other, intake=False)._reopen_orphans(time.time()) == 0
        assert worker.wait_idle(15)
    finally:
        worker.stop()
    for host in ("cache-1", "cache-2"):
        assert len(ctx.store.attempts_since("demo", host, 0)) == 1
    assert [w.split()[0] for w in engine_env.traced()].count("sleep-start") == 2


def test_a_step_that_ended_but_whose_incident_was_not_settled_is_verified_not_run_again(
        engine_env):
    """The store went away between a step's end (its run recorded ``succeeded``) and the
    incident's (left ``remediating``): a Redis restart during a storm did that to one
    replica. Once the store is back, the orphan check hands the incident back to the
    workers; they ask the step's verify first, as after an interruption, and do not run
    the step a second time (they did: the replica suite saw a host fixed twice)."""
    engine_env.write_config(lease="1s")
    touch_runbook(engine_env, "")
    ctx = engine_env.context()
    journal(ctx, alert(instance="cache-1", fingerprint="fp-1"))
    Worker(ctx).run_once()
    [run] = ctx.store.query_runs(limit=None)
    assert run.status == RunStatus.SUCCEEDED
    # As the store left it: the run's end written, the incident's not.
    ctx.store.update_incident(only_incident(ctx).id, state=IncidentState.REMEDIATING,
                              attempt_id=run.attempt_id, closed_at=None)
    worker = Worker(ctx)
    assert worker._reopen_orphans(time.time() + 10) == 1      # past three leases
    ctx.store.update_incident(only_incident(ctx).id, next_try_at=time.time())   # due now
    worker.run_once()
    assert [w.split()[0] for w in engine_env.traced()] == ["touch"]   # not run again
    incident = only_incident(ctx)
    assert incident.state == IncidentState.RECOVERED, incident.reason
    assert "verified after interruption" in incident.reason


def test_the_orphan_check_leaves_an_incident_taken_up_since_it_listed_it(engine_env,
                                                                        monkeypatch):
    """The orphan check lists the open incidents once, then asks the store about each in
    turn; with many (a storm) that takes a while. One listed as abandoned may meanwhile
    have been handed back and claimed by a live worker: reopened all the same, it was
    claimed and run a second time (the replica suite saw a host fixed twice after a
    replica was killed). What the check acts on is the incident as it is now."""
    engine_env.write_config(lease="1s")
    touch_runbook(engine_env, "")
    ctx = engine_env.context()
    journal(ctx, alert(instance="cache-1", fingerprint="fp-1"))
    assert drain(ctx, run=lambda incident_id: None) == 1   # opened; its worker died
    time.sleep(3.2)                                          # past three leases
    listed = ctx.store.list_incidents(open_only=True)
    # Meanwhile another worker handed it back and a live one claimed it.
    incident = only_incident(ctx)
    ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                              state=IncidentState.OPEN, next_try_at=time.time())
    assert ctx.store.claim_due_incident(time.time()) is not None
    monkeypatch.setattr(ctx.store, "list_incidents", lambda **kw: listed)
    assert Worker(ctx, intake=False)._reopen_orphans(time.time()) == 0
    assert only_incident(ctx).state == IncidentState.REMEDIATING
