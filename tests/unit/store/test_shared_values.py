"""The ``SharedValues`` protocol: JSON values every process shares, updated atomically,
and ``claim_due`` built on them."""

from __future__ import annotations

import os
import time

from engine.store import open_store
from engine.store.shared_values import SharedValues
from tests.unit.store.backends import uses
from tests.unit.store.races import race

pytestmark = uses(SharedValues)


def test_values_are_json_and_absent_ones_none(store):
    assert store.get_value("k") is None
    store.set_value("k", {"a": [1, 2]})
    assert store.get_value("k") == {"a": [1, 2]}
    assert store.update_value("k", lambda old: {**old, "b": 3}) == {"a": [1, 2], "b": 3}
    assert store.update_value("new", lambda old: old) is None


def _claim_race(url, barrier, results):
    store = open_store(url)
    barrier.wait()
    now = time.time()
    claims = [store.claim_due("probe:x", now, 3600) for _ in range(5)]
    store.update_value("beats", lambda beats: {**(beats or {}), str(os.getpid()): now})
    results.put(claims.count(True))


def test_claim_due_and_update_value_are_atomic_across_processes(store, store_url):
    """A probe round (or a re-post, or a prune) is taken by one worker alone, and
    heartbeats written at once by several processes all survive."""
    claims = race(_claim_race, store_url)
    assert sum(claims) == 1
    assert len(store.get_value("beats")) == len(claims)
    assert store.claim_due("probe:x", time.time() + 3600, 3600)   # due again later
