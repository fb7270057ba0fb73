"""The ``Housekeeping`` protocol: the store answers whether it can be read and written,
and prunes what ended before a time, keeping what is still going on."""

from __future__ import annotations

import time

from engine.lifecycle import IncidentState, RunStatus
from engine.records import Approval, AuditEvent
from engine.store.housekeeping import Housekeeping
from tests.unit.store.backends import uses
from tests.unit.store.samples import incident, run


@uses(Housekeeping)
def test_a_store_that_works_passes_its_probes(store):
    store.ping()
    store.ping(write=True, wait=5)
    store.maintain()


def test_what_ended_before_the_time_is_pruned_and_what_goes_on_is_kept(store):
    now = time.time()
    old = run(status=RunStatus.SUCCEEDED, started_at=now - 100, finished_at=now - 90)
    recent = run(status=RunStatus.SUCCEEDED, started_at=now - 10, finished_at=now - 5)
    going = run(started_at=now - 100)
    for r in (old, recent, going):
        store.add_run(r)
    closed, _ = store.open_incident(incident(target="h1"))
    store.update_incident(closed.id, state=IncidentState.RESOLVED, closed_at=now - 90)
    still_open, _ = store.open_incident(incident(target="h2"))
    store.add_approval(Approval(run_id="r1", incident_id=None, runbook="rb", component="c",
                                strategy="s", target="h1", expires_at=now - 95))
    store.decide_approval("r1", status="expired", by=None, reason="", at=now - 90)
    store.add_event(AuditEvent(at=now - 90, actor="alice", action="disable"))
    store.enqueue_alerts([("k1", {"status": "firing"})])

    assert store.delete_before(now - 50) == [old.id]
    assert store.get_run(old.id) is None
    assert store.get_run(recent.id) is not None and store.get_run(going.id) is not None
    assert store.get_incident(closed.id) is None
    assert store.get_incident(still_open.id) is not None
    assert store.get_approval("r1") is None and store.list_events() == []
    assert store.intake_depth(now)[0] == 1                  # waiting items are never pruned
    assert store.enqueue_alerts([("k1", {"status": "firing"})]) == (0, 1)   # seen recently
