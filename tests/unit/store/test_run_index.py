"""The ``RunIndex`` protocol: run records along the run lifecycle, queried newest first."""

from __future__ import annotations

import time

from engine.lifecycle import RunStatus
from engine.store.run_index import RunIndex
from tests.unit.store.backends import uses
from tests.unit.store.samples import run

pytestmark = uses(RunIndex)


def test_run_status_moves_only_along_the_lifecycle(store):
    r = run()
    store.add_run(r)
    assert store.update_run(r.id, status=RunStatus.SUCCEEDED).status == RunStatus.SUCCEEDED
    assert store.update_run(r.id, status=RunStatus.RUNNING) is None  # final stays final
    assert store.get_run(r.id).status == RunStatus.SUCCEEDED


HOSTS = [{"host": "r1", "outcome": "changed", "reason": ""},
         {"host": "r2", "outcome": "unreachable", "reason": "task 'Restart': refused"}]


def test_a_runs_hosts_outcomes_are_kept_when_added_and_when_it_ends(store):
    added = run(status=RunStatus.PARTIAL, hosts=HOSTS)
    store.add_run(added)
    assert store.get_run(added.id).hosts == HOSTS
    running = run()
    store.add_run(running)
    assert store.get_run(running.id).hosts == []
    ended = store.update_run(running.id, status=RunStatus.PARTIAL, hosts=HOSTS[1:])
    assert ended.status == RunStatus.PARTIAL and ended.hosts == HOSTS[1:]
    assert [r.hosts for r in store.query_runs(status="partial")] == [HOSTS[1:], HOSTS]
    assert store.get_run(running.id).to_dict()["hosts"] == HOSTS[1:]


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


def test_a_refusal_record_counts_its_key_and_is_found_by_the_alerts_it_lists(store):
    now = time.time()
    first = run(status=RunStatus.REFUSED, fingerprint="fp-1", incident_id="inc-1",
                started_at=now)
    kept = store.add_refusal(first, "k", max_fingerprints=2)
    assert (kept.id, kept.count, kept.fingerprints) == (first.id, 1, ["fp-1"])
    for i in (2, 3):
        again = store.add_refusal(run(status=RunStatus.REFUSED, fingerprint=f"fp-{i}",
                                      incident_id=f"inc-{i}", started_at=now + i), "k",
                                  max_fingerprints=2)
        assert again.id == first.id
    assert (again.count, again.fingerprints) == (3, ["fp-1", "fp-2"])
    assert [r.id for r in store.query_runs(fingerprint="fp-2")] == [first.id]
    assert [r.id for r in store.query_runs(incident_id="inc-2")] == [first.id]
    assert store.query_runs(fingerprint="fp-3") == []          # past the first two
    other = store.add_refusal(run(status=RunStatus.REFUSED, started_at=now), "k2",
                              max_fingerprints=2)
    assert other.id != first.id and other.count == 1


def test_queued_runs_are_claimed_oldest_first_for_a_lease(store):
    now = time.time()
    old = run(status=RunStatus.QUEUED, started_at=now - 10)
    new = run(status=RunStatus.QUEUED, started_at=now - 5)
    for r in (new, old):
        store.add_run(r)
    assert store.claim_queued_run("w1", now, 30).id == old.id
    assert store.claim_queued_run("w2", now, 30).id == new.id
    assert store.claim_queued_run("w3", now, 30) is None       # both claims are live
    assert store.claim_run(old.id, "w3", now + 10, 30) is None
    taken = store.claim_run(old.id, "w3", now + 31, 30)        # the lease lapsed
    assert taken is not None and taken.id == old.id
    store.update_run(new.id, status=RunStatus.CANCELED)
    assert store.claim_run(new.id, "w3", now + 100, 30) is None  # no longer queued


def test_running_runs_that_stopped_beating_are_stale(store):
    now = time.time()
    beating, silent, done = (run(started_at=now - 100) for _ in range(3))
    for r in (beating, silent, done):
        store.add_run(r)
    store.update_run(done.id, status=RunStatus.SUCCEEDED, finished_at=now)
    store.heartbeat_runs([beating.id, "run-gone"], now)
    assert [r.id for r in store.stale_running_runs(now - 50)] == [silent.id]
    assert store.get_run("run-gone") is None


def test_runs_started_at_once_are_listed_by_id_and_every_one_without_a_limit(store):
    at = time.time()
    ids = sorted(f"run-{i}" for i in range(3))
    for run_id in ids:
        store.add_run(run(id=run_id, started_at=at, status=RunStatus.SUCCEEDED))
    assert [r.id for r in store.query_runs(limit=None)] == ids[::-1]
    assert [r.id for r in store.query_runs(status="succeeded", limit=2)] == ids[:0:-1]
    assert [r.id for r in store.query_runs(target="h1", since=at + 1)] == []


def test_a_runs_account_and_replica_are_kept_for_every_process_and_pruned_with_it(store):
    now = time.time()
    ended = run(status=RunStatus.SUCCEEDED, started_at=now - 100, finished_at=now - 90,
                replica="replica-a")
    kept = run(status=RunStatus.SUCCEEDED, started_at=now - 10, finished_at=now - 5)
    for r in (ended, kept):
        store.add_run(r)
    account = {"replica": "replica-a", "events": [{"counter": 1, "event": "action_start"}],
               "stdout": "done\n", "run_json": {"hosts": HOSTS}}
    assert store.get_run_account(ended.id) is None
    store.put_run_account(ended.id, {"stdout": "first"})
    store.put_run_account(ended.id, account)                 # replaced whole
    store.put_run_account(kept.id, {"stdout": "kept"})
    assert store.get_run_account(ended.id) == account
    assert store.get_run(ended.id).replica == "replica-a"
    assert store.query_runs()[1].replica == "replica-a" and store.get_run(kept.id).replica is None
    assert store.delete_before(now - 50) == [ended.id]
    assert store.get_run_account(ended.id) is None
    assert store.get_run_account(kept.id) == {"stdout": "kept"}
