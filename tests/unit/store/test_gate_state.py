"""The ``GateState`` protocols: locks, approvals, kill switches and degraded modes."""

from __future__ import annotations

import os
import time

from engine.records import Approval, DegradedReason, Switch
from engine.store import open_store
from engine.store.gate_state import Approvals, Cooldowns, DegradedModes, KillSwitches, Locks
from engine.store.incidents import Incidents
from tests.unit.store.backends import uses
from tests.unit.store.races import race


@uses(Locks)
def test_locks_are_leases_with_growing_fencing_tokens(store):
    a = store.acquire_lock("h1", "a", 0.2)
    assert a is not None
    assert store.acquire_lock("h1", "b", 0.2) is None
    assert store.renew_lock("h1", a.token, 0.2)
    other = store.acquire_lock("h0", "c", 10, run_id="run-1", component="web")
    listed = store.list_locks()     # by target, whole
    assert [(k.target, k.token, k.holder, k.run_id, k.component) for k in listed] == [
        ("h0", other.token, "c", "run-1", "web"), ("h1", a.token, "a", None, None)]
    time.sleep(0.25)
    assert [k.target for k in store.list_locks()] == ["h0"]    # h1's lease ended
    b = store.acquire_lock("h1", "b", 10)
    assert b is not None and b.token > a.token
    assert not store.renew_lock("h1", a.token, 10)      # the old holder lost it
    assert store.renew_locks([("h1", a.token), ("h1", b.token), ("h9", 1)], 10) == [
        False, True, False]                             # each for its own token, in order
    assert store.renew_locks([], 10) == []
    assert not store.release_lock("h1", a.token)        # and cannot free the new one
    assert store.get_lock("h1").holder == "b"
    assert store.break_lock("h1").holder == "b"
    assert store.get_lock("h1") is None


@uses(Locks)
def test_a_slot_is_the_first_free_of_its_limit_and_none_once_the_limit_is_held(store):
    first, busy = store.acquire_slot("slot:", 2, "a", 0.2, run_id="run-a", component="web")
    assert (first.target, first.holder, first.run_id, first.component, busy) == (
        "slot:0", "a", "run-a", "web", 1)
    assert store.get_lock("slot:0").token == first.token     # a lock like any other
    second, busy = store.acquire_slot("slot:", 2, "b", 10)
    assert (second.target, busy) == ("slot:1", 2) and second.token > first.token
    assert store.acquire_slot("slot:", 2, "c", 10) == (None, 2)
    assert store.acquire_slot("slot:", 1, "c", 10) == (None, 2)   # a lower limit: all count
    store.acquire_lock("h1", "d", 10)                          # not a slot: not counted
    store.release_lock("slot:1", second.token)
    again, busy = store.acquire_slot("slot:", 2, "c", 10)
    assert (again.target, busy) == ("slot:1", 2)
    time.sleep(0.25)                                           # slot:0's lease ended
    third, busy = store.acquire_slot("slot:", 3, "e", 10)
    assert (third.target, busy) == ("slot:0", 2) and third.token > again.token


def _slot_race(url, barrier, results):
    store = open_store(url)
    barrier.wait()
    slot, _ = store.acquire_slot("race-slot:", 2, str(os.getpid()), 60)
    results.put(None if slot is None else slot.target)
    store.close()


@uses(Locks)
def test_processes_racing_for_two_slots_take_each_once_and_no_more(store, store_url):
    got = race(_slot_race, store_url)
    assert sorted(t for t in got if t is not None) == ["race-slot:0", "race-slot:1"]


def _lock_race(url, barrier, results):
    store = open_store(url)
    barrier.wait()
    shared = store.acquire_lock("h1", str(os.getpid()), 60)
    own = store.acquire_lock(f"own-{os.getpid()}", "me", 60)
    results.put((shared is not None, own.token))
    store.close()


@uses(Locks)
def test_processes_racing_for_one_lock_one_takes_it_and_no_two_tokens_are_equal(store,
                                                                               store_url):
    got = race(_lock_race, store_url)
    assert sum(took for took, _ in got) == 1
    tokens = [token for _, token in got] + [store.get_lock("h1").token]
    assert len(set(tokens)) == len(got) + 1

@uses(Approvals)
def test_an_approval_is_decided_once(store):
    store.add_approval(Approval(run_id="r1", incident_id=None, runbook="rb", component="c",
                                strategy="s", target="h1", expires_at=time.time() + 60))
    assert store.decide_approval("r1", status="approved", by="alice", reason="", at=1)
    assert store.decide_approval("r1", status="rejected", by="bob", reason="", at=2) is None
    assert store.get_approval("r1").decided_by == "alice"


@uses(KillSwitches)
def test_switches_expire_and_are_removed_by_exact_scope(store):
    now = time.time()
    store.add_switch(Switch(id="s1", component="redis", target=None, until=now + 60))
    store.add_switch(Switch(id="s2", component=None, target=None, until=now - 1))
    assert [s.id for s in store.active_switches(now)] == ["s1"]
    assert store.remove_switches(None, "h1") == []
    assert [s.id for s in store.remove_switches("redis", None)] == ["s1"]
    assert store.active_switches(now) == []


@uses(DegradedModes)
def test_degraded_reasons_clear_by_target_and_keep_manual_ones(store):
    store.add_degraded(DegradedReason(mode="m", key="incident:1", target="h1"))
    store.add_degraded(DegradedReason(mode="m", key="incident:2", target="h2"))
    store.add_degraded(DegradedReason(mode="m", key="manual", manual=True))
    store.clear_degraded(mode="m", target="h1")
    assert sorted(r.key for r in store.degraded_reasons("m")) == ["incident:2", "manual"]
    store.clear_degraded(mode="m", manual=None)
    assert store.degraded_reasons("m") == []


@uses(Cooldowns, Incidents)
def test_cooldowns_count_the_attempts_of_one_runbook_and_target(store):
    from engine.lifecycle import AttemptOutcome
    from engine.records import Attempt
    from tests.unit.store.samples import incident, run

    now = time.time()
    inc, _ = store.open_incident(incident())
    for i, started in enumerate((now - 100, now - 10)):
        store.begin_step(run(incident_id=inc.id, started_at=started),
                         Attempt(id=f"att-{i}", incident_id=inc.id, runbook="rb",
                                 target="h1", started_at=started))
    store.finish_attempt("att-0", AttemptOutcome.FAILED, now - 50)
    store.finish_attempt("att-0", AttemptOutcome.RECOVERED, now - 40)   # ended once
    assert [a.id for a in store.attempts_since("rb", "h1", now - 60)] == ["att-1"]
    assert [a.id for a in store.attempts_since("rb", "h2", 0)] == []
    failed = store.last_failed_attempt("rb", "h1")
    assert (failed.id, failed.outcome, failed.finished_at) == ("att-0", AttemptOutcome.FAILED,
                                                               now - 50)
    recent, last_failed = store.cooldown_history("rb", "h1", now - 200)   # both at once
    assert ([a.id for a in recent], last_failed) == (["att-0", "att-1"], failed)
    assert store.cooldown_history("rb", "h2", 0) == ([], None)
    assert store.attempt_keys_since(now - 60) == {("rb", "h1")}   # att-0 finished since
    assert store.attempt_keys_since(now) == set()
