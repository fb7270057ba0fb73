"""The Redis fencing check's own machinery (engine.store.redis.fencing): the lock is
WATCHed with the record a fenced write changes, so a lock taken between the check and
EXEC sends the write round again, where it is refused. (What every backend does with a
fence is tested per protocol, test_fencing.py.)"""

from __future__ import annotations

import pytest

from engine.lifecycle import RunStatus
from engine.store.base import Fence, StaleLease
from engine.store.redis import RedisStore
from tests.support.redis_servers import RedisServer
from tests.unit.store.samples import incident, run


@pytest.fixture
def replicas(redis_store_server: RedisServer):
    """Two replicas' stores on one server, under a prefix of their own."""
    store = RedisStore(f"{redis_store_server.url}?prefix=fence-race:")
    other = RedisStore(f"{redis_store_server.url}?prefix=fence-race:")
    yield store, other
    for key in store._redis.scan_iter(match="fence-race:*"):
        store._redis.delete(key)
    store.close()
    other.close()


def _lose_the_lock_after_the_first_check(store: RedisStore, other: RedisStore) -> list[int]:
    """``store``'s fence checks, counted (the list's one item): each passes as it reads,
    and after the first one ``other`` takes the lock on h1."""
    checks = [0]
    check = store._check_fence

    def check_then_lose_the_lock(pipe, fence):
        checks[0] += 1
        check(pipe, fence)                  # passes: the lock is still ours...
        if checks[0] == 1:                  # ... and another replica takes it now
            other.break_lock("h1")
            other.acquire_lock("h1", "replica-b", 60)

    store._check_fence = check_then_lose_the_lock
    return checks


def test_a_lock_taken_between_the_check_and_the_write_refuses_the_write(replicas):
    store, other = replicas
    lock = store.acquire_lock("h1", "replica-a", 60)
    r = run()
    store.add_run(r)
    checks = _lose_the_lock_after_the_first_check(store, other)
    with pytest.raises(StaleLease):
        store.update_run(r.id, status=RunStatus.SUCCEEDED, fence=Fence.of(lock))
    assert checks == [2]                    # the transaction was run again
    assert store.get_run(r.id).status == RunStatus.RUNNING


def test_a_lock_taken_after_the_reads_sent_with_the_watch_refuses_the_write(replicas):
    """An incident's change sends its WATCH, its fence's token and the record in one round
    trip (``prefetch``): those reads are WATCHed like any other, so a lock taken after
    them sends the change round again, where it is refused."""
    store, other = replicas
    lock = store.acquire_lock("h1", "replica-a", 60)
    opened, _ = store.open_incident(incident())
    checks = _lose_the_lock_after_the_first_check(store, other)
    with pytest.raises(StaleLease):
        store.update_incident(opened.id, fence=Fence.of(lock), reason="stale")
    assert checks == [2]                    # the transaction was run again
    assert store.get_incident(opened.id).reason == opened.reason
