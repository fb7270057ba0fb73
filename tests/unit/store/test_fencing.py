"""Fencing: the writes a run makes under its lease carry the lock's token, and are
refused, with nothing written, once another holder has taken that lock."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import Attempt
from engine.store.base import Fence, StaleLease
from engine.store.gate_state import Cooldowns, Locks
from engine.store.incidents import Incidents
from engine.store.run_index import RunIndex
from tests.unit.store.backends import uses
from tests.unit.store.samples import incident, run

pytestmark = uses(Locks, RunIndex, Incidents, Cooldowns)


def _step_under_lease(store, ttl: float = 60.0):
    """An incident with a running step and its attempt, begun under the lock on h1."""
    lock = store.acquire_lock("h1", "replica-a", ttl)
    inc, _ = store.open_incident(incident())
    r = run(incident_id=inc.id)
    att = Attempt(id=f"att-{r.id}", incident_id=inc.id, runbook="rb", target="h1",
                  started_at=r.started_at)
    store.begin_step(r, att)
    return Fence.of(lock), inc, r, att


def test_writes_under_the_lease_that_holds_the_lock_go_through(store):
    fence, inc, r, att = _step_under_lease(store)
    assert store.update_run(r.id, status=RunStatus.SUCCEEDED, reason="done",
                            fence=fence).status == RunStatus.SUCCEEDED
    store.finish_attempt(att.id, AttemptOutcome.RECOVERED, time.time(), fence=fence)
    assert store.attempts_since("rb", "h1", 0)[0].outcome == AttemptOutcome.RECOVERED
    after = store.update_incident(inc.id, expect=[IncidentState.REMEDIATING],
                                  state=IncidentState.RECOVERED, fence=fence)
    assert after.state == IncidentState.RECOVERED


def test_a_lease_that_lapsed_but_was_not_taken_still_writes(store):
    fence, _inc, r, _att = _step_under_lease(store, ttl=0.05)
    time.sleep(0.1)
    assert store.get_lock("h1") is None          # lapsed: anyone may take it now
    assert store.update_run(r.id, reason="still mine", fence=fence).reason == "still mine"


def test_a_lease_taken_by_another_holder_refuses_every_write_and_writes_nothing(store):
    fence, inc, r, att = _step_under_lease(store, ttl=0.05)
    time.sleep(0.1)
    newer = store.acquire_lock("h1", "replica-b", 60)
    assert newer is not None and newer.token > fence.token
    with pytest.raises(StaleLease) as refused:
        store.update_run(r.id, status=RunStatus.SUCCEEDED, reason="late", fence=fence)
    assert "lease on h1 was lost" in str(refused.value)
    assert refused.value.holder_token == newer.token
    with pytest.raises(StaleLease):
        store.finish_attempt(att.id, AttemptOutcome.RECOVERED, time.time(), fence=fence)
    with pytest.raises(StaleLease):
        store.update_incident(inc.id, expect=[IncidentState.REMEDIATING],
                              state=IncidentState.RECOVERED, fence=fence)
    assert store.get_run(r.id).status == RunStatus.RUNNING
    assert store.attempts_since("rb", "h1", 0)[0].outcome == AttemptOutcome.RUNNING
    assert store.get_incident(inc.id).state == IncidentState.REMEDIATING
    # The newer holder's writes, and unfenced ones (the sweep's), still go through.
    assert store.update_run(r.id, status=RunStatus.INTERRUPTED, reason="lease lost",
                            fence=Fence.of(newer)).status == RunStatus.INTERRUPTED


def test_a_lock_released_or_broken_lets_its_last_holder_write(store):
    fence, inc, r, _att = _step_under_lease(store)
    assert store.break_lock("h1") is not None    # ``recovery unlock``: nobody acts under it
    assert store.update_run(r.id, reason="its lock was broken", fence=fence) is not None
    assert store.update_incident(inc.id, reason="ended", fence=fence) is not None


def test_a_fence_on_another_target_is_judged_by_that_targets_lock(store):
    fence, _inc, r, _att = _step_under_lease(store)
    other = store.acquire_lock("h2", "replica-b", 60)
    assert store.update_run(r.id, reason="h1 is still mine", fence=fence) is not None
    store.break_lock("h2")
    store.acquire_lock("h2", "replica-c", 60)
    with pytest.raises(StaleLease):
        store.update_run(r.id, reason="h2 is not", fence=Fence.of(other))
