"""The store contract, parametrized by backend (SQLite now; Redis joins with scale-out)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time

import pytest

from engine.lifecycle import IncidentState, RunStatus, TransitionError
from engine.records import Approval, DegradedReason, Incident, RunRecord, Switch, new_id
from engine.store import open_store


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'state' / 'recovery.db'}")
    yield s
    s.close()


def incident(target="h1", state=IncidentState.REMEDIATING):
    return Incident(id=new_id("inc"), runbook="rb", component="c", target=target,
                    state=state, opened_at=time.time())


def run(status=RunStatus.RUNNING, **kw):
    fields = dict(id=new_id("run"), component="c", runbook="rb", strategy="s", target="h1",
                  status=status, started_at=time.time())
    fields.update(kw)
    return RunRecord(**fields)


def test_one_open_incident_per_identity_and_closed_ones_free_it(store):
    first, created = store.open_incident(incident())
    assert created
    same, created = store.open_incident(incident())
    assert not created and same.id == first.id
    store.update_incident(first.id, state=IncidentState.RECOVERED)
    fresh, created = store.open_incident(incident())
    assert created and fresh.id != first.id


def test_incident_transitions_are_checked_and_compare_and_set(store):
    inc, _ = store.open_incident(incident())
    store.update_incident(inc.id, state=IncidentState.RESOLVED)
    with pytest.raises(TransitionError):
        store.update_incident(inc.id, state=IncidentState.REMEDIATING)
    assert store.update_incident(inc.id, expect=[IncidentState.OPEN], reason="x") is None


def test_run_status_moves_only_along_the_lifecycle(store):
    r = run()
    store.add_run(r)
    assert store.update_run(r.id, status=RunStatus.SUCCEEDED).status == RunStatus.SUCCEEDED
    assert store.update_run(r.id, status=RunStatus.RUNNING) is None  # final stays final
    assert store.get_run(r.id).status == RunStatus.SUCCEEDED


def test_locks_are_leases_with_growing_fencing_tokens(store):
    a = store.acquire_lock("h1", "a", 0.2)
    assert a is not None
    assert store.acquire_lock("h1", "b", 0.2) is None
    assert store.renew_lock("h1", a.token, 0.2)
    time.sleep(0.25)
    b = store.acquire_lock("h1", "b", 10)
    assert b is not None and b.token > a.token
    assert not store.renew_lock("h1", a.token, 10)      # the old holder lost it
    assert not store.release_lock("h1", a.token)        # and cannot free the new one
    assert store.get_lock("h1").holder == "b"
    assert store.break_lock("h1").holder == "b"
    assert store.get_lock("h1") is None


def test_an_approval_is_decided_once(store):
    store.add_approval(Approval(run_id="r1", incident_id=None, runbook="rb", component="c",
                                strategy="s", target="h1", expires_at=time.time() + 60))
    assert store.decide_approval("r1", status="approved", by="alice", reason="", at=1)
    assert store.decide_approval("r1", status="rejected", by="bob", reason="", at=2) is None
    assert store.get_approval("r1").decided_by == "alice"


def test_switches_expire_and_are_removed_by_exact_scope(store):
    now = time.time()
    store.add_switch(Switch(id="s1", component="redis", target=None, until=now + 60))
    store.add_switch(Switch(id="s2", component=None, target=None, until=now - 1))
    assert [s.id for s in store.active_switches(now)] == ["s1"]
    assert store.remove_switches(None, "h1") == []
    assert [s.id for s in store.remove_switches("redis", None)] == ["s1"]
    assert store.active_switches(now) == []


def test_degraded_reasons_clear_by_target_and_keep_manual_ones(store):
    store.add_degraded(DegradedReason(mode="m", key="incident:1", target="h1"))
    store.add_degraded(DegradedReason(mode="m", key="incident:2", target="h2"))
    store.add_degraded(DegradedReason(mode="m", key="manual", manual=True))
    store.clear_degraded(mode="m", target="h1")
    assert sorted(r.key for r in store.degraded_reasons("m")) == ["incident:2", "manual"]
    store.clear_degraded(mode="m", manual=None)
    assert store.degraded_reasons("m") == []


def test_counters_and_histograms_accumulate(store):
    store.record_outcome("c", "s", "succeeded", 0.3)
    store.record_outcome("c", "s", "succeeded", 20.0)
    store.record_outcome("c", "s", "refused", None)
    counters = {(r.outcome): r.value for r in store.counters()}
    assert counters == {"succeeded": 2, "refused": 1}
    [hist] = store.durations()
    assert hist.count == 2 and hist.total == pytest.approx(20.3)
    assert dict(hist.buckets)[1.0] == 1 and dict(hist.buckets)[30.0] == 2


def test_intake_dedups_and_reclaims_after_the_lease(store):
    assert store.enqueue_alerts([("k1", {"a": 1}), ("k2", {"a": 2}), ("k1", {"a": 1})]) == \
        (2, 1)
    assert store.enqueue_alerts([("k1", {"a": 1})]) == (0, 1)
    claimed = store.claim_intake("w1", 10, lease=0.2)
    assert [i.payload["a"] for i in claimed] == [1, 2]
    assert store.claim_intake("w2", 10, lease=0.2) == []
    time.sleep(0.25)
    again = store.claim_intake("w2", 10, lease=10)       # a dead worker's items come back
    assert len(again) == 2
    store.ack_intake(i.id for i in again)
    assert store.intake_depth(time.time())[0] == 0


def test_history_query_is_newest_first_and_filtered(store):
    now = time.time()
    for i in range(5):
        store.add_run(run(component="redis" if i % 2 else "chromadb", started_at=now - i,
                          status=RunStatus.SUCCEEDED))
    got = store.query_runs(component="chromadb", since=now - 3.5)
    assert [round(now - r.started_at) for r in got] == [0, 2]


def test_runs_of_one_alert_and_the_gate_that_stopped_them(store):
    now = time.time()
    store.add_run(run(status=RunStatus.REFUSED, fingerprint="fp-a", gate="kill_switch",
                      started_at=now - 2))
    store.add_run(run(status=RunStatus.SUCCEEDED, fingerprint="fp-a", started_at=now - 1))
    store.add_run(run(status=RunStatus.SUCCEEDED, fingerprint="fp-b", started_at=now))
    got = store.query_runs(fingerprint="fp-a")
    assert [(r.status, r.gate) for r in got] == [(RunStatus.SUCCEEDED, None),
                                                 (RunStatus.REFUSED, "kill_switch")]


def test_deliveries_are_kept_with_the_acknowledgement_newest_first_and_pruned(store):
    from engine.records import Delivery

    def delivery(fingerprint, status, at, **kw):
        return Delivery(fingerprint=fingerprint, status=status, starts_at=None,
                        received_at=at, processed_at=at, outcome=f"{status} at {at}", **kw)

    store.enqueue_alerts([("k1", {"a": 1}), ("k2", {"a": 2})])
    items = store.claim_intake("w", 10, 60)
    now = time.time()
    store.ack_intake([i.id for i in items], [
        delivery("fp-a", "firing", now - 100, payload={"labels": {"x": "1"}}),
        delivery("fp-b", "firing", now - 50, incident_id="inc-b")])
    assert store.intake_depth(now)[0] == 0
    store.ack_intake([], [delivery("fp-a", "resolved", now, replayed_by="bob")])
    got = store.deliveries(fingerprint="fp-a")
    assert [(d.status, d.replayed_by) for d in got] == [("resolved", "bob"), ("firing", None)]
    assert got[1].payload == {"labels": {"x": "1"}} and got[0].id > got[1].id
    assert [d.fingerprint for d in store.deliveries(incident_id="inc-b")] == ["fp-b"]
    assert len(store.deliveries(limit=2)) == 2
    store.delete_before(now - 10)
    assert [d.status for d in store.deliveries()] == ["resolved"]


def _delivery(fingerprint, status, starts_at, at, outcome, **kw):
    from engine.records import Delivery

    return Delivery(fingerprint=fingerprint, status=status, starts_at=starts_at,
                    received_at=at, processed_at=at, outcome=outcome, **kw)


def test_repeats_of_an_alert_are_one_row_with_a_count_and_the_latest_outcome(store):
    """Alertmanager repeats a firing alert every repeat_interval: one row per
    (fingerprint, startsAt, status), counted, with the first and the latest outcome."""
    now = time.time()
    first = {"labels": {"alertname": "RedisDown"}, "n": 1}
    store.ack_intake([], [
        _delivery("fp-a", "firing", "s1", now - 30, "opened incident inc-1",
                  incident_id="inc-1", payload=first),
        _delivery("fp-a", "firing", "s1", now - 20, "attached to incident inc-1",
                  incident_id="inc-1", payload=first)])
    store.ack_intake([], [_delivery("fp-a", "firing", "s1", now - 10, "refused: switch",
                                    run_id="run-9", replayed_by="bob",
                                    payload={**first, "n": 3})])
    [row] = store.deliveries(fingerprint="fp-a")
    assert (row.count, row.first_outcome, row.outcome) == (3, "opened incident inc-1",
                                                           "refused: switch")
    assert (row.first_received_at, row.first_processed_at) == (now - 30, now - 30)
    assert (row.received_at, row.processed_at) == (now - 10, now - 10)
    assert (row.incident_id, row.run_id, row.replayed_by) == ("inc-1", "run-9", "bob")
    assert row.payload == {**first, "n": 3}
    assert store.deliveries(incident_id="inc-1") == [row]


def test_only_the_newest_firing_delivery_of_an_alert_keeps_its_payload(store):
    """A payload is kept where a replay needs it: the newest firing delivery of each
    fingerprint; a resolve needs none."""
    now = time.time()
    one, two = {"labels": {"x": "1"}}, {"labels": {"x": "2"}}
    store.ack_intake([], [_delivery("fp-a", "firing", "s1", now - 30, "opened", payload=one),
                          _delivery("fp-b", "firing", "s1", now - 30, "opened", payload=one)])
    store.ack_intake([], [_delivery("fp-a", "resolved", "s1", now - 20, "closed")])
    assert [d.payload for d in store.deliveries(fingerprint="fp-a")] == [{}, one]
    store.ack_intake([], [_delivery("fp-a", "firing", "s2", now - 10, "opened", payload=two)])
    got = store.deliveries(fingerprint="fp-a")
    assert [(d.status, d.starts_at, d.payload) for d in got] == [
        ("firing", "s2", two), ("resolved", "s1", {}), ("firing", "s1", {})]
    assert [d.payload for d in store.deliveries(fingerprint="fp-b")] == [one]


def test_deliveries_kept_one_per_row_before_are_folded_when_the_store_opens(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, "
               "fingerprint TEXT, status TEXT, starts_at TEXT, received_at REAL, "
               "processed_at REAL, outcome TEXT, incident_id TEXT, run_id TEXT, "
               "replayed_by TEXT, payload TEXT)")
    db.execute("CREATE INDEX deliveries_fingerprint ON deliveries(fingerprint, id)")
    old = {"labels": {"alertname": "RedisDown"}}
    own = {"labels": {"alertname": "RecoveryExhausted", "source": "infra-recovery"}}
    for at, (fp, status, outcome, payload) in enumerate([
            ("fp-a", "firing", "opened incident inc-1", old),
            ("fp-a", "firing", "attached", old),
            ("fp-a", "firing", "refused", old),
            ("fp-own", "firing", "the engine's own alert", own),
            ("fp-a", "resolved", "closed", old)]):
        db.execute("INSERT INTO deliveries (fingerprint, status, starts_at, received_at, "
                   "processed_at, outcome, incident_id, payload) VALUES (?, ?, 's1', ?, ?, ?, "
                   "?, ?)", (fp, status, at, at, outcome, "inc-1" if fp == "fp-a" else None,
                             json.dumps(payload)))
    db.commit()
    db.close()
    store = open_store(f"sqlite:///{path}")
    try:
        got = store.deliveries(fingerprint="fp-a")
        assert [(d.status, d.count, d.first_outcome, d.outcome) for d in got] == [
            ("resolved", 1, "closed", "closed"),
            ("firing", 3, "opened incident inc-1", "refused")]
        assert (got[1].first_processed_at, got[1].processed_at) == (0, 2)
        assert [d.payload for d in got] == [{}, old]
        [mine] = store.deliveries(fingerprint="fp-own")
        assert mine.payload == {}
        store.ack_intake([], [_delivery("fp-a", "firing", "s1", 9, "attached again")])
        assert store.deliveries(fingerprint="fp-a")[0].count == 4
    finally:
        store.close()


def test_the_sqlite_file_is_private(tmp_path):
    path = tmp_path / "home" / "recovery.db"
    open_store(f"sqlite:///{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def _race(path: str, barrier, results) -> None:
    s = open_store(f"sqlite:///{path}")
    barrier.wait()
    _, created = s.open_incident(incident())
    results.put(created)


def test_processes_racing_to_open_the_same_incident_open_one(tmp_path):
    path = str(tmp_path / "race.db")
    open_store(f"sqlite:///{path}")
    n = 6
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(n), mp.Queue()
    procs = [mp.Process(target=_race, args=(path, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    created = [results.get(timeout=5) for _ in range(n)]
    assert created.count(True) == 1


def test_begin_step_records_attempt_count_and_run_at_once(store):
    from engine.records import Attempt

    inc, _ = store.open_incident(incident())
    r = run(incident_id=inc.id)
    att = Attempt(id="att-1", incident_id=inc.id, runbook="rb", target="h1",
                  started_at=r.started_at)
    after = store.begin_step(r, att)
    assert after.attempt_id == "att-1" and after.attempts == 1
    assert store.get_run(r.id).status == RunStatus.RUNNING
    assert [a.id for a in store.attempts_since("rb", "h1", 0)] == ["att-1"]
    # a resumed run must still be waiting: a canceled one is not started
    parked = run(incident_id=inc.id, status=RunStatus.QUEUED)
    store.add_run(parked)
    store.update_run(parked.id, status=RunStatus.CANCELED)
    parked.status = RunStatus.RUNNING
    with pytest.raises(TransitionError):
        store.begin_step(parked, None, resumed=True)
    assert store.get_run(parked.id).status == RunStatus.CANCELED


def test_begin_step_refuses_an_incident_no_longer_remediating(store):
    inc, _ = store.open_incident(incident())
    store.update_incident(inc.id, state=IncidentState.CANCELED)
    with pytest.raises(TransitionError):
        store.begin_step(run(incident_id=inc.id), None)
    assert store.query_runs(incident_id=inc.id) == []


def test_a_firing_repeat_is_journaled_again_after_a_while_a_resolve_never(store):
    firing, resolved = {"status": "firing"}, {"status": "resolved"}
    assert store.enqueue_alerts([("f", firing), ("r", resolved)], repeat_after=0.2) == (2, 0)
    claimed = store.claim_intake("w", 10, 60)
    store.ack_intake(i.id for i in claimed)
    assert store.enqueue_alerts([("f", firing), ("r", resolved)], repeat_after=0.2) == (0, 2)
    assert store.intake_depth(time.time())[0] == 0          # too soon: deduplicated
    time.sleep(0.25)
    assert store.enqueue_alerts([("f", firing), ("r", resolved)], repeat_after=0.2) == (0, 2)
    assert [i.dedup_key for i in store.claim_intake("w", 10, 60)] == ["f"]
    assert store.enqueue_alerts([("f", firing)]) == (0, 1)  # without repeat_after: never


def test_a_store_created_before_a_column_was_added_opens_and_gains_it(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE incidents (id TEXT PRIMARY KEY, runbook TEXT NOT NULL, "
               "component TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL, "
               "failure_type TEXT, trigger TEXT, requested_by TEXT, fingerprint TEXT, "
               "labels TEXT, opened_at REAL, updated_at REAL, closed_at REAL, reason TEXT, "
               "next_try_at REAL, step INTEGER, only_strategy TEXT, forced INTEGER, "
               "approved_step INTEGER, approved_by TEXT, attempt_id TEXT, attempts INTEGER, "
               "verify_until REAL, open_key TEXT UNIQUE)")
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, component TEXT NOT NULL, "
               "runbook TEXT, strategy TEXT, target TEXT, status TEXT NOT NULL, trigger TEXT, "
               "incident_id TEXT, attempt_id TEXT, kind TEXT, started_at REAL, "
               "finished_at REAL, check_mode INTEGER, fingerprint TEXT, requested_by TEXT, "
               "approved_by TEXT, forced INTEGER, reason TEXT, runbook_sha256 TEXT, "
               "playbook_sha256 TEXT, heartbeat_at REAL, claimed_by TEXT, "
               "claimed_until REAL)")
    db.commit()
    db.close()
    store = open_store(f"sqlite:///{path}")
    try:
        opened = incident()
        opened.starts_at = "2024-05-01T10:00:00.000000Z"
        store.open_incident(opened)
        assert store.get_incident(opened.id).starts_at == opened.starts_at
        refused = run(status=RunStatus.REFUSED, gate="kill_switch")
        store.add_run(refused)
        assert store.get_run(refused.id).gate == "kill_switch"
    finally:
        store.close()


def _claim_race(path, barrier, results):
    store = open_store(f"sqlite:///{path}")
    barrier.wait()
    now = time.time()
    claims = [store.claim_due("probe:x", now, 3600) for _ in range(5)]
    store.update_value("beats", lambda beats: {**(beats or {}), str(os.getpid()): now})
    results.put(claims.count(True))


def test_claim_due_and_update_value_are_atomic_across_processes(tmp_path):
    """A probe round (or a re-post, or a prune) is taken by one worker alone, and
    heartbeats written at once by several processes all survive."""
    path = str(tmp_path / "race.db")
    open_store(f"sqlite:///{path}")
    n = 6
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(n), mp.Queue()
    procs = [mp.Process(target=_claim_race, args=(path, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sum(results.get(timeout=5) for _ in range(n)) == 1
    store = open_store(f"sqlite:///{path}")
    assert len(store.get_value("beats")) == n
    assert store.claim_due("probe:x", time.time() + 3600, 3600)   # due again later
