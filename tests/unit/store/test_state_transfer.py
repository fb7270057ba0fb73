"""A SQLite store read whole (``sqlite.state_export``) and written into Redis
(``redis.state_import``), as ``recovery store migrate`` does (engine.store.migrate): the
Redis store then answers every protocol's reads as the SQLite one did, and goes on from
there (a deferred incident falls due, a queued run is claimed, a pending approval is
decided once, lock tokens keep growing, refusal records keep counting). Populated
through the protocols only; a real ``redis-server`` (AOF on), a prefix per test."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import Approval, Attempt, AuditEvent, DegradedReason, Switch, new_id
from engine.store import Store, open_store
from engine.store.migrate import MigrationRefused, migrate
from engine.store.redis import RedisStore
from engine.store.sqlite.state_export import export_sqlite
from engine.store.state_snapshot import MIGRATION_KEY
from tests.support.redis_servers import RedisServer
from tests.unit.store.samples import delivery, incident, run

pytestmark = pytest.mark.requires("redis-server")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return tmp_path / "state" / "recovery.db"


@pytest.fixture
def target_url(redis_store_server: RedisServer) -> str:
    return f"{redis_store_server.url}?prefix=moved-{uuid.uuid4().hex}:"


def populate(store: Store, now: float) -> dict[str, Any]:
    """One of every kind of state, written through the protocols; the ids a test uses."""
    # an incident with a failed attempt (a cooldown counts it), then deferred: due again
    deferred, _ = store.open_incident(incident("h1"))
    first = run(RunStatus.RUNNING, incident_id=deferred.id, started_at=now - 50)
    attempt = Attempt(new_id("att"), deferred.id, "rb", "h1", started_at=now - 50)
    first.attempt_id = attempt.id
    store.begin_step(first, attempt)
    store.update_run(first.id, status=RunStatus.FAILED, finished_at=now - 40,
                     hosts=[{"host": "h1", "outcome": "failed"}])
    store.finish_attempt(attempt.id, AttemptOutcome.FAILED, now - 40)
    store.update_incident(deferred.id, state=IncidentState.OPEN, next_try_at=now - 1)
    # a closed incident, and an open one remediating
    closed, _ = store.open_incident(incident("h2"))
    store.update_incident(closed.id, state=IncidentState.RECOVERED, closed_at=now - 30)
    store.open_incident(incident("h3"))
    # runs: succeeded, queued (a worker claims it), a refusal record counting three
    store.add_run(run(RunStatus.SUCCEEDED, started_at=now - 20, finished_at=now - 19,
                      hosts=[{"host": "h2", "outcome": "ok"}]))
    queued = run(RunStatus.QUEUED, started_at=now - 15, target="h4")
    store.add_run(queued)
    refusal = store.add_refusal(run(RunStatus.REFUSED, fingerprint="fp-1",
                                    incident_id="inc-1", started_at=now - 10), "key",
                                max_fingerprints=2)
    for i in (2, 3):
        store.add_refusal(run(RunStatus.REFUSED, fingerprint=f"fp-{i}", incident_id=f"inc-{i}",
                              started_at=now - 10 + i), "key", max_fingerprints=2)
    # approvals pending and decided; a kill switch; degraded reasons; events; values
    for i, run_id in enumerate(("run-pending", "run-decided")):
        store.add_approval(Approval(run_id, deferred.id, "rb", "c", "s", "h1", "pending",
                                    "alice", now - 6 + i, now + 3600, plan={"step": 1}))
    store.decide_approval("run-decided", status="rejected", by="bob", reason="no", at=now - 4)
    store.add_switch(Switch("sw-1", "c", None, None, "maintenance", "alice", now - 3))
    store.add_degraded(DegradedReason("read_only", "manual", manual=True, reason="by hand",
                                      created_by="alice", since=now - 2))
    store.add_degraded(DegradedReason("read_only", f"incident:{deferred.id}", "h1",
                                      deferred.id, since=now - 2))
    for i in range(3):
        store.add_event(AuditEvent(now - 3 + i, "alice", f"action-{i}", {"i": i}))
    store.set_value("runbook_set", {"sha256": "abc"})
    store.set_value("worker_heartbeat", {"w1": now})    # a process's own: not copied
    # metrics: outcomes with durations and a deferral, hosts by outcome
    store.record_outcome("c", "s", "succeeded", 3.0)
    store.record_outcome("c", "s", "failed", 700.0)
    store.record_outcome("c", "s", "deferred", None, gate="cooldown")
    store.record_host_outcomes("c", "s", {"ok": 2, "failed": 1})
    # the intake: an alert journaled, claimed, processed; a resolve mark; a lock released
    store.enqueue_alerts([("fp-9|t|firing", {"status": "firing"})])
    items = store.claim_intake("w1", 10, 30.0)
    store.ack_intake([i.id for i in items], [
        delivery("fp-9", "firing", "t", now - 1, "opened", payload={"status": "firing"}),
        delivery("fp-9", "firing", "t", now, "attached")])
    store.mark_resolved("fp-8", "2026-01-01T00:00:00Z", now)
    lock = store.acquire_lock("h9", "w1", 30.0)
    assert lock is not None
    store.release_lock("h9", lock.token)
    return {"deferred": deferred.id, "queued": queued.id, "refusal": refusal.id,
            "token": lock.token}


def everything(store: Store, now: float) -> dict[str, Any]:
    """What every protocol answers about the state ``populate`` wrote."""
    return {
        "runs": store.query_runs(limit=None),
        "by_fingerprint": store.query_runs(fingerprint="fp-2", limit=None),
        "by_incident": store.query_runs(incident_id="inc-1", limit=None),
        "incidents": store.list_incidents(limit=1000),
        "open": store.list_incidents(open_only=True, limit=1000),
        "open_h3": store.find_open_incident("rb", "h3"),
        "attempts": store.attempts_since("rb", "h1", 0),
        "failed": store.last_failed_attempt("rb", "h1"),
        "attempt_keys": store.attempt_keys_since(now - 3600),
        "approvals": store.list_approvals(None),
        "switches": store.active_switches(now),
        "degraded": store.degraded_reasons(),
        "events": store.list_events(-1),
        "values": (store.get_value("runbook_set"), store.get_value("worker_heartbeat")),
        "counters": store.counters(), "host_counters": store.host_counters(),
        "deferrals": store.deferrals(), "durations": store.durations(),
        "strategy_durations": store.strategy_durations(),
        "strategy_counts": store.strategy_counts(now - 3600, now),
        "success_times": store.success_times(now - 3600, now),
        "last_failures": store.last_failures(now - 3600, now),
        "deliveries": store.deliveries(limit=None),
        "resolved": store.resolved_until("fp-8"),
        "locks": store.list_locks(),
        "intake": store.intake_depth(now)[0],
    }


def test_redis_answers_every_read_as_the_sqlite_store_did(source, target_url):
    now = time.time()
    sqlite = open_store(f"sqlite:///{source}")
    ids = populate(sqlite, now)
    before = everything(sqlite, now)
    sqlite.close()

    report = migrate(source, target_url)
    assert report.copied and report.read_back == report.counts
    redis = open_store(target_url)
    try:
        after = everything(redis, now)
        assert after.pop("values") == ({"sha256": "abc"}, None)     # heartbeats stay behind
        assert before.pop("values") == ({"sha256": "abc"}, {"w1": now})
        assert after == before
        assert redis.get_value(MIGRATION_KEY)["state"] == "complete"
        # and it goes on from there, as the SQLite store would have
        due = redis.claim_due_incident(now)
        assert due is not None and due.id == ids["deferred"]
        claimed = redis.claim_queued_run("w2", now, 30.0)
        assert claimed is not None and claimed.id == ids["queued"]
        assert redis.decide_approval("run-pending", status="approved", by="carol", reason="",
                                     at=now) is not None
        assert redis.decide_approval("run-decided", status="approved", by="carol",
                                     reason="", at=now) is None       # decided once
        lock = redis.acquire_lock("h9", "w2", 30.0)
        assert lock is not None and lock.token > ids["token"]          # fencing goes on
        again = redis.add_refusal(run(RunStatus.REFUSED, started_at=now), "key",
                                  max_fingerprints=2)
        assert (again.id, again.count) == (ids["refusal"], 4)
        assert redis.enqueue_alerts([("fp-9|t|firing", {"status": "firing"})]) == (0, 1)
    finally:
        redis.close()


def test_a_store_a_service_works_on_is_refused_and_nothing_is_written(source, target_url):
    now = time.time()
    store = open_store(f"sqlite:///{source}")
    try:
        store.add_run(run(RunStatus.RUNNING, started_at=now))
        store.enqueue_alerts([("fp|t|firing", {"status": "firing"})])
        store.claim_intake("w1", 10, 30.0)
        store.enqueue_alerts([("fp2|t|firing", {"status": "firing"})])
        _, activity = export_sqlite(source)
        assert (len(activity.running_runs), activity.intake_waiting,
                activity.intake_claimed) == (1, 2, 1)
        with pytest.raises(MigrationRefused) as refused:
            migrate(source, target_url)
        text = str(refused.value)
        assert "1 run(s) running" in text and "2 alert(s)" in text and "1 claimed" in text
        assert "stop the service" in text and not refused.value.usage
    finally:
        store.close()
    target = RedisStore(target_url)
    try:
        assert target.held_keys() == 0
    finally:
        target.close()


def test_a_target_holding_state_is_refused_unless_replaced_never_merged(source, target_url):
    store = open_store(f"sqlite:///{source}")
    store.add_event(AuditEvent(time.time(), "alice", "from-sqlite"))
    store.close()
    target = RedisStore(target_url)
    try:
        target.add_event(AuditEvent(time.time(), "mallory", "already-there"))
        with pytest.raises(MigrationRefused, match="already holds state"):
            migrate(source, target_url)
        checked = migrate(source, target_url, replace=True, check=True)
        assert not checked.copied and checked.held_keys >= 1
        assert [e.action for e in target.list_events(-1)] == ["already-there"]  # untouched
        report = migrate(source, target_url, replace=True)
        assert report.replaced_keys >= 1 and report.counts["events"] == 1
        assert [e.action for e in target.list_events(-1)] == ["from-sqlite"]
    finally:
        target.close()


def test_the_export_reads_the_file_without_changing_it(source):
    store = open_store(f"sqlite:///{source}")
    store.add_event(AuditEvent(time.time(), "alice", "x"))
    store.close()
    before = source.read_bytes()
    snap, activity = export_sqlite(source)
    assert snap.counts()["events"] == 1 and snap.fencing == {}
    assert activity.reasons() == []
    assert source.read_bytes() == before
