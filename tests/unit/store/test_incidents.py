"""The ``Incidents`` protocol: one open incident per (runbook, target), its transitions
compare-and-set, a step's start recorded at once."""

from __future__ import annotations

import pytest

from engine.lifecycle import IncidentState, RunStatus, TransitionError
from engine.records import Attempt
from engine.store import open_store
from engine.store.gate_state import Cooldowns
from engine.store.incidents import Incidents
from engine.store.run_index import RunIndex
from tests.unit.store.backends import uses
from tests.unit.store.races import race
from tests.unit.store.samples import incident, run

pytestmark = uses(Incidents)


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


def _race(url: str, barrier, results) -> None:
    s = open_store(url)
    barrier.wait()
    _, created = s.open_incident(incident())
    results.put(created)


def test_processes_racing_to_open_the_same_incident_open_one(store, store_url):
    assert race(_race, store_url).count(True) == 1


@uses(RunIndex, Cooldowns)
def test_begin_step_records_attempt_count_and_run_at_once(store):
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


@uses(RunIndex)
def test_a_step_begun_long_after_its_gates_were_asked_is_alive_when_recorded(store):
    """A run's start is when its gates were asked; facts, a fleet wait or a loaded machine
    can put seconds between that and its row. Its row is its first sign of life: a
    sweep at once must not take it for dead (it did, and marked it interrupted)."""
    import time

    inc, _ = store.open_incident(incident())
    now = time.time()
    r = run(incident_id=inc.id, started_at=now - 100)
    store.begin_step(r, None)
    assert store.stale_running_runs(now - 50) == []
    parked = run(incident_id=inc.id, status=RunStatus.QUEUED, started_at=now - 100)
    store.add_run(parked)
    parked.status = RunStatus.RUNNING
    store.begin_step(parked, None, resumed=True)
    assert store.stale_running_runs(now - 50) == []


@uses(RunIndex)
def test_begin_step_refuses_an_incident_no_longer_remediating(store):
    inc, _ = store.open_incident(incident())
    store.update_incident(inc.id, state=IncidentState.CANCELED)
    with pytest.raises(TransitionError):
        store.begin_step(run(incident_id=inc.id), None)
    assert store.query_runs(incident_id=inc.id) == []


def test_a_recovered_incident_reopens_as_a_new_request_unless_another_is_open(store):
    first, _ = store.open_incident(incident())
    store.update_incident(first.id, forced=True, only_strategy="s", trigger="manual")
    store.update_incident(first.id, state=IncidentState.RECOVERED, forced=True)
    again = store.reopen_incident(first.id, "still firing", trigger="alert",
                                  requested_by="am")
    assert (again.state, again.trigger, again.requested_by, again.forced,
            again.only_strategy, again.reason, again.closed_at) == (
        IncidentState.REMEDIATING, "alert", "am", False, None, "still firing", None)
    assert store.find_open_incident("rb", "h1").id == first.id
    assert store.reopen_incident(first.id, "twice", trigger="alert", requested_by="am") \
        is None                                                   # not recovered now
    store.update_incident(first.id, state=IncidentState.RECOVERED)
    other, created = store.open_incident(incident())
    assert created
    assert store.reopen_incident(first.id, "x", trigger="alert", requested_by="am") is None
    assert store.find_open_incident("rb", "h1").id == other.id
    assert store.latest_incident("rb", "h1").id == other.id


def test_leaving_remediating_drops_force_unless_the_change_names_it(store):
    inc, _ = store.open_incident(incident())
    store.update_incident(inc.id, forced=True)
    deferred = store.update_incident(inc.id, state=IncidentState.OPEN, next_try_at=5.0)
    assert deferred.forced is False and deferred.state == IncidentState.OPEN
    kept = store.update_incident(inc.id, state=IncidentState.REMEDIATING, forced=True)
    assert kept.forced is True
    handed_back = store.update_incident(inc.id, state=IncidentState.OPEN, forced=True)
    assert handed_back.forced is True


def test_deferred_incidents_are_claimed_once_when_due_in_order(store):
    now = 1000.0
    late, _ = store.open_incident(incident(target="h1"))
    early, _ = store.open_incident(incident(target="h2"))
    store.update_incident(late.id, state=IncidentState.OPEN, next_try_at=now - 1)
    store.update_incident(early.id, state=IncidentState.OPEN, next_try_at=now - 5)
    assert store.claim_incident(late.id, now - 2, trigger="alert", requested_by="am") is None
    assert store.claim_due_incident(now - 10) is None             # none due yet
    first = store.claim_due_incident(now)
    assert (first.id, first.state, first.next_try_at) == (early.id,
                                                          IncidentState.REMEDIATING, None)
    assert store.claim_due_incident(now).id == late.id
    assert store.claim_due_incident(now) is None
    assert store.claim_incident(late.id, now, trigger="alert", requested_by="am") is None


def test_claiming_an_incident_starts_a_new_request(store):
    inc, _ = store.open_incident(incident())
    store.update_incident(inc.id, state=IncidentState.OPEN, only_strategy="s", step=2,
                          forced=True)
    claimed = store.claim_incident(inc.id, 0.0, trigger="alert", requested_by="am")
    assert (claimed.state, claimed.trigger, claimed.requested_by, claimed.forced,
            claimed.only_strategy, claimed.step) == (
        IncidentState.REMEDIATING, "alert", "am", False, None, 0)
    assert store.claim_incident(inc.id, 0.0, trigger="alert", requested_by="am") is None


def test_incidents_are_listed_newest_first_by_openness_component_target_and_state(store):
    a, _ = store.open_incident(incident(target="h1"))
    b, _ = store.open_incident(incident(target="h2"))
    store.update_incident(a.id, state=IncidentState.RESOLVED)
    assert [i.id for i in store.list_incidents()] == [b.id, a.id]
    assert [i.id for i in store.list_incidents(open_only=True)] == [b.id]
    assert [i.id for i in store.list_incidents(limit=1)] == [b.id]
    assert store.list_incidents(component="other") == []
    assert [i.id for i in store.list_incidents(target="h1")] == [a.id]
    assert [i.id for i in store.list_incidents(state="remediating")] == [b.id]
    assert store.list_incidents(target="h1", state="remediating") == []
    assert store.get_incident(a.id).state == IncidentState.RESOLVED
    assert store.get_incident("inc-none") is None
    assert store.find_open_incident("rb", "h1") is None
