"""The ``RunIndex`` protocol: run records along the run lifecycle, queried newest first."""

from __future__ import annotations

import time

from engine.lifecycle import RunStatus
from tests.unit.store.samples import run


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
