"""The ``ReplicaRoster`` protocol: each replica's line (the set it runs, when it was last
seen), written by several processes at once without losing one, old lines dropped."""

from __future__ import annotations

import time

from engine.store import open_store
from engine.store.replicas import KEPT, ReplicaRoster, ReplicaSeen
from tests.unit.store.backends import uses
from tests.unit.store.races import race

pytestmark = uses(ReplicaRoster)


def test_a_replica_line_is_replaced_by_its_next_and_others_are_kept(store):
    assert store.replicas() == []
    store.record_replica(ReplicaSeen("a", "sha-1", 100.0, 110.0, "host-a"))
    store.record_replica(ReplicaSeen("b", None, None, 111.0, "host-b"))
    store.record_replica(ReplicaSeen("a", "sha-2", 112.0, 115.0, "host-a"))
    assert store.replicas() == [ReplicaSeen("a", "sha-2", 112.0, 115.0, "host-a"),
                                ReplicaSeen("b", None, None, 111.0, "host-b")]
    assert [r.replica for r in store.replicas(seen_since=112.0)] == ["a"]


def test_a_replica_not_seen_for_a_day_leaves_the_roster_at_the_next_write(store):
    store.record_replica(ReplicaSeen("gone", "sha-1", 1.0, 1000.0))
    store.record_replica(ReplicaSeen("here", "sha-1", 1.0, 1000.0 + KEPT + 1))
    assert [r.replica for r in store.replicas()] == ["here"]


def _beat(url, barrier, results):
    store = open_store(url)
    barrier.wait()
    import os

    name = f"replica-{os.getpid()}"
    for _ in range(5):
        store.record_replica(ReplicaSeen(name, "sha", 1.0, time.time()))
    results.put(name)


def test_replicas_beating_at_once_each_keep_their_line(store, store_url):
    names = race(_beat, store_url)
    assert {r.replica for r in store.replicas()} == set(names)
