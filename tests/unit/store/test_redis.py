"""The Redis backend's own machinery: its URL and credentials, its key prefix, a server
that is down or restarted, the bound on a read-then-write that keeps losing its race,
and each Lua script. (What every backend does is tested per protocol.) Real
``redis-server`` processes on free ports, never the machine's own on 6379."""

from __future__ import annotations

import time

import pytest

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import Approval, Attempt, AuditEvent
from engine.store import StoreRefused, StoreUnavailable, open_store
from engine.store.redis import RedisStore
from engine.store.redis.connection import PASSWORD_ENV, USERNAME_ENV, credentials, redacted
from engine.store.redis.gate_state import ACQUIRE_LOCK, RELEASE_LOCK, RENEW_LOCK
from engine.store.redis.intake_journal import CLAIM, ENQUEUE, RELEASE
from engine.store.redis.server_settings import UnsafeRedisSettings
from engine.store.redis.shared_values import RedisSharedValues
from tests.support.redis_servers import RedisServer
from tests.unit.store.samples import delivery, incident, run

SECRET = "s3cret-pw"


@pytest.fixture
def server(redis_store_server: RedisServer) -> RedisServer:
    return redis_store_server


def test_the_url_is_shown_without_its_password():
    assert redacted(f"redis://app:{SECRET}@db:6380/2?prefix=x:") == \
        "redis://app:***@db:6380/2?prefix=x:"
    assert redacted(f"rediss://:{SECRET}@db/0") == "rediss://:***@db/0"
    assert redacted("redis://db:6379/0") == "redis://db:6379/0"
    # A password whose / ? # a URL parser would take for the path, query or fragment.
    for odd in ("ab/cd", "ab?cd", "ab#cd", "a@b/c"):
        assert odd not in redacted(f"redis://app:{odd}@db:6379/0"), odd
        assert redacted(f"redis://:{odd}@db:6379/0") == "redis://:***@db:6379/0"
    assert redacted(f"redis://db:6379/0?password={SECRET}&prefix=x:") == \
        "redis://db:6379/0?password=***&prefix=x:"
    assert redacted("sqlite:////srv/rec@prod/r.db") == "sqlite:////srv/rec@prod/r.db"


def test_credentials_come_from_the_url_else_from_the_environment():
    env = {USERNAME_ENV: "env-user", PASSWORD_ENV: "env-pw"}
    assert credentials("redis://db/0", env) == {"username": "env-user", "password": "env-pw"}
    assert credentials("redis://u:p%40ss@db/0", env) == {"username": "u", "password": "p@ss"}
    assert credentials("redis://db/0", {}) == {}


def test_open_store_opens_redis_on_a_server_that_keeps_its_state(server):
    store = open_store(f"{server.url}?prefix=opened:")
    try:
        assert isinstance(store, RedisStore)
        store.set_value("k", 1)
        assert store.get_value("k") == 1
        assert server.client().exists("opened:value:k")   # under the URL's prefix
    finally:
        store.close()


def test_open_store_refuses_a_server_that_would_lose_state_saying_why(tmp_path):
    unsafe = RedisServer(tmp_path / "no-aof", appendonly="no").start()
    try:
        with pytest.raises(UnsafeRedisSettings, match="appendonly") as refused:
            open_store(unsafe.url)
        assert isinstance(refused.value, ValueError)    # a configuration error: exit 2
        assert unsafe.client().dbsize() == 0            # nothing was written on it
    finally:
        unsafe.stop()


def test_a_service_that_came_up_before_redis_judges_its_settings_at_first_answer(tmp_path):
    down = RedisServer(tmp_path / "late", appendonly="no")     # not started yet
    with pytest.raises(StoreUnavailable):
        open_store(down.url)                            # without retry_open: refused now
    store = open_store(down.url, retry_open=True)
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            store.get_value("k")
        down.start()                                    # up, but without AOF: still refused
        with pytest.raises(StoreUnavailable, match="appendonly"):
            store.set_value("k", 1)
        assert down.client().dbsize() == 0
        down.client().config_set("appendonly", "yes")
        store.set_value("k", 1)                         # safe now: the store works
        assert store.get_value("k") == 1
    finally:
        store.close()
        down.stop()


def test_a_password_from_the_environment_opens_the_store_and_is_never_shown(tmp_path):
    locked = RedisServer(tmp_path / "auth", password=SECRET).start()
    try:
        store = RedisStore(locked.url, environ={PASSWORD_ENV: SECRET})
        store.set_value("k", 1)
        assert store.get_value("k") == 1
        store.close()
        wrong = RedisStore(locked.url.replace("redis://", "redis://:wrong-pw@"),
                                environ={PASSWORD_ENV: SECRET})   # the URL's comes first
        with pytest.raises(StoreRefused) as refused:      # not an outage: never ends
            wrong.get_value("k")
        assert "wrong-pw" not in str(refused.value) and "***" in str(refused.value)
        assert "refused its credentials" in str(refused.value)
        wrong.close()
    finally:
        locked.stop()


def test_every_key_is_under_the_prefix_and_prefixes_do_not_see_each_other(server):
    a = RedisStore(f"{server.url}?prefix=ns-a:")
    b = RedisStore(f"{server.url}?prefix=ns-b:")
    client = server.client()
    try:
        a.set_value("k", "a")
        a.acquire_lock("h1", "a", 60)
        assert b.get_value("k") is None and b.get_lock("h1") is None
        assert b.acquire_lock("h1", "b", 60) is not None
        keys = {k.decode() for k in client.scan_iter(match="ns-a:*")}
        assert keys == {"ns-a:value:k", "ns-a:lock:h1", "ns-a:locks", "ns-a:fencing:lock"}
    finally:
        for key in [*client.scan_iter(match="ns-a:*"), *client.scan_iter(match="ns-b:*")]:
            client.delete(key)
        a.close()
        b.close()


def test_a_server_down_is_store_unavailable_and_a_restarted_one_keeps_what_was_written(
        tmp_path):
    """AOF on: what was acknowledged before the restart is there after it, the fencing
    counter included, and the scripts are loaded again by themselves."""
    server = RedisServer(tmp_path / "r", appendonly="yes", appendfsync="always").start()
    store = RedisStore(f"{server.url}?prefix=t:")
    try:
        first = store.acquire_lock("h1", "a", 0.05)
        store.set_value("k", {"v": 1})
        server.stop()
        for use in (lambda: store.get_value("k"), lambda: store.acquire_lock("h2", "a", 5),
                    lambda: store.update_value("k", lambda old: old), store.list_locks):
            with pytest.raises(StoreUnavailable, match="unavailable"):
                use()
        server.start()
        assert store.get_value("k") == {"v": 1}
        time.sleep(0.06)
        second = store.acquire_lock("h1", "b", 5)
        assert second is not None and second.token > first.token
    finally:
        store.close()
        server.stop()


def test_a_read_then_write_after_a_restart_goes_through_and_a_server_down_is_unavailable(
        tmp_path):
    """The WATCH and an incident's first reads go in one round trip on a pooled
    connection: one the server's restart broke is not used; a server still down is
    StoreUnavailable at once, not taken for a lost race and tried until busy_timeout."""
    server = RedisServer(tmp_path / "r", appendonly="yes", appendfsync="always").start()
    store = RedisStore(f"{server.url}?prefix=t:")
    try:
        first, _ = store.open_incident(incident())
        server.stop()
        server.start()                          # the pooled connection is broken now
        again = incident()
        assert store.open_incident(again) == (first, False)   # its pair's open one
        server.stop()
        with pytest.raises(StoreUnavailable, match="unavailable"):   # not "busy": no race
            store.open_incident(again)
    finally:
        store.close()
        server.stop()


def test_a_read_then_write_that_keeps_losing_its_race_is_bounded(server):
    store = RedisSharedValues(f"{server.url}?prefix=busy:", busy_timeout=0.2)
    other = server.client()
    bumps = 0

    def meddle(old):
        nonlocal bumps
        bumps += 1
        other.set("busy:value:k", str(bumps))   # another writer, every time
        return old

    try:
        with pytest.raises(StoreUnavailable, match="busy"):
            store.update_value("k", meddle)
        assert bumps > 1                          # it was tried again before giving up
    finally:
        other.delete("busy:value:k")
        store.close()


def _scripts(server: RedisServer):
    client = server.client()
    keys = ["lua:lock", "lua:fencing", "lua:locks"]
    return (client, keys, client.register_script(ACQUIRE_LOCK),
            client.register_script(RENEW_LOCK), client.register_script(RELEASE_LOCK))


def test_acquire_lock_script_refuses_a_live_lock_and_gives_growing_tokens(server):
    client, keys, acquire, _, _ = _scripts(server)
    try:
        assert acquire(keys=keys, args=[100.0, "h1", "holder", "a", "expires_at", "110.0"]) == 1
        assert acquire(keys=keys, args=[105.0, "h1", "holder", "b", "expires_at", "115.0"]) \
            is None
        assert client.hget("lua:lock", "holder") == b"a"
        assert acquire(keys=keys, args=[110.0, "h1", "holder", "c", "expires_at", "120.0"]) == 2
        assert client.hgetall("lua:lock") == {b"token": b"2", b"holder": b"c",
                                              b"expires_at": b"120.0"}   # written whole
        assert client.smembers("lua:locks") == {b"h1"}
    finally:
        client.delete(*keys)


def test_renew_and_release_scripts_act_only_for_the_token_that_holds_the_lock(server):
    client, keys, acquire, renew, release = _scripts(server)
    try:
        acquire(keys=keys, args=[100.0, "h1", "expires_at", "110.0"])
        assert renew(keys=keys[:1], args=[2, "130.0"]) == 0
        assert renew(keys=keys[:1], args=[1, "130.0"]) == 1
        assert client.hget("lua:lock", "expires_at") == b"130.0"
        assert release(keys=[keys[0], keys[2]], args=[2, "h1"]) == 0
        assert client.exists("lua:lock")
        assert release(keys=[keys[0], keys[2]], args=[1, "h1"]) == 1
        assert not client.exists("lua:lock") and not client.smembers("lua:locks")
        assert renew(keys=keys[:1], args=[1, "140.0"]) == 0      # gone: nothing to renew
        assert not client.exists("lua:lock")
    finally:
        client.delete(*keys)


def test_the_scripts_are_loaded_again_after_the_server_forgot_them(server):
    store = RedisStore(f"{server.url}?prefix=flush:")
    client = server.client()
    try:
        assert store.acquire_lock("h1", "a", 60) is not None
        client.script_flush()
        lock = store.get_lock("h1")
        assert store.renew_lock("h1", lock.token, 60)
        client.script_flush()
        assert store.renew_locks([("h1", lock.token)], 60) == [True]
        assert store.release_lock("h1", lock.token)
    finally:
        for key in client.scan_iter(match="flush:*"):
            client.delete(key)
        store.close()



def test_enqueue_script_journals_unseen_keys_in_order_and_a_late_firing_repeat(server):
    client = server.client()
    keys = ["lua:stream", "lua:seen", "lua:next"]
    enqueue = client.register_script(ENQUEUE)
    try:
        assert enqueue(keys=keys, args=[100.0, "", "a", "1", "{}", "b", "0", "{}",
                                        "a", "1", "{}"]) == [2, 1]
        assert [(i, f[b"key"]) for i, f in client.xrange("lua:stream")] == [
            (b"1-0", b"a"), (b"2-0", b"b")]                 # stream id = the item's id
        assert enqueue(keys=keys, args=[103.0, "5", "a", "1", "{}"]) == [0, 1]   # too soon
        assert enqueue(keys=keys, args=[106.0, "5", "a", "1", "{}", "b", "0", "{}"]) == [0, 2]
        assert [i for i, _ in client.xrange("lua:stream")] == [b"1-0", b"2-0", b"3-0"]
        assert client.zscore("lua:seen", "a") == 106.0 and client.zscore("lua:seen", "b") == 100.0
    finally:
        client.delete(*keys)


def test_claim_and_release_scripts_take_the_oldest_free_items_and_give_back_exact_claims(
        server):
    client = server.client()
    keys = ["lua:stream", "lua:until", "lua:holder"]
    claim, release = client.register_script(CLAIM), client.register_script(RELEASE)
    try:
        for n in (1, 2, 3):
            client.xadd("lua:stream", {"key": f"k{n}", "payload": "{}", "at": "99.5"},
                        id=f"{n}-0")
        assert claim(keys=keys, args=[100.0, 160.0, "w1", 2]) == [
            b"1", b"k1", b"{}", b"99.5", b"2", b"k2", b"{}", b"99.5"]
        assert claim(keys=keys, args=[101.0, 111.0, "w2", 5])[::4] == [b"3"]
        assert claim(keys=keys, args=[105.0, 200.0, "w3", 5]) == []       # all held
        assert claim(keys=keys, args=[112.0, 200.0, "w3", 5])[::4] == [b"3"]   # lapsed
        assert release(keys=keys[1:], args=["w1", "160.5", "w2", "111.0"]) == 0
        assert release(keys=keys[1:], args=["w1", "160.0"]) == 2
        assert client.hgetall("lua:holder") == {b"3": b"w3"}
        assert claim(keys=keys, args=[113.0, 173.0, "w4", 5])[::4] == [b"1", b"2"]
    finally:
        client.delete(*keys)


def test_pruning_leaves_no_record_nor_index_entry_of_what_it_dropped(server):
    """What every backend prunes is tested per protocol; here, that no key of a pruned
    record stays behind on Redis (an index entry left would grow without bound)."""
    store = RedisStore(f"{server.url}?prefix=prune:")
    client = server.client()
    now = time.time()
    try:
        done = run(status=RunStatus.FAILED, started_at=now - 100, finished_at=now - 90,
                   incident_id="inc-x", fingerprint="fp-a")
        store.add_run(done)
        store.add_refusal(run(status=RunStatus.REFUSED, started_at=now - 100,
                              finished_at=now - 90, fingerprint="fp-b"), "key-1",
                          max_fingerprints=5)
        opened, _ = store.open_incident(incident())
        attempt = Attempt(id="att-1", incident_id=opened.id, runbook="rb", target="h1",
                          started_at=now - 95)
        store.begin_step(run(incident_id=opened.id, started_at=now - 95), attempt)
        store.finish_attempt("att-1", AttemptOutcome.FAILED, now - 90)
        store.update_incident(opened.id, state=IncidentState.FAILED, closed_at=now - 90)
        store.add_approval(Approval(run_id="r1", incident_id=None, runbook="rb",
                                    component="c", strategy="s", target="h1",
                                    expires_at=now - 95))
        store.decide_approval("r1", status="expired", by=None, reason="", at=now - 90)
        store.add_event(AuditEvent(at=now - 90, actor="alice", action="disable"))
        store.set_value("cancel:r1", {"at": now - 90})
        store.enqueue_alerts([("k1", {"status": "firing"})])
        store.ack_intake([i.id for i in store.claim_intake("w", 10, 60)], [
            delivery("fp-a", "firing", "s1", now - 90, "opened", incident_id="inc-x",
                     payload={"labels": {}})])
        store.mark_resolved("fp-a", "2026-01-01T00:00:00Z", now - 90)
        store.delete_before(now + 1)
        left = {k.decode().removeprefix("prune:") for k in client.scan_iter(match="prune:*")}
        counters = {"intake:next", "deliveries:next", "intake:stream"}   # (an empty stream)
        # the run the step began is still running: it and its indexes stay
        assert left - counters == {
            "run:" + k.decode().removeprefix("prune:run:")
            for k in client.scan_iter(match="prune:run:*")} | {
            "runs:started", "runs:heartbeat", "runs-component:c", "runs-status:running",
            "runs-target:h1", f"runs-incident_id:{opened.id}"}
    finally:
        for key in client.scan_iter(match="prune:*"):
            client.delete(key)
        store.close()


def test_an_acknowledgement_retried_after_another_replica_wrote_meanwhile_keeps_its_ids(
        server, monkeypatch):
    """Two replicas acknowledge at once: the one whose WATCHed keys the other changed
    runs its change again, and the deliveries keep the ids it reserved (it once ran out
    of them on the retry: a StopIteration that failed the worker's pass and left its
    items claimed until their lease lapsed)."""
    url = f"{server.url}?prefix=ack-retry-{time.time_ns()}:"
    store, other = RedisStore(url), RedisStore(url)
    try:
        now = time.time()
        store.enqueue_alerts([("k1", {"status": "firing"}), ("k2", {"status": "firing"})])
        claimed = store.claim_intake("w", 10, 60)
        put = store._put_delivery
        meddled: list[bool] = []

        def put_once_meddled(pipe, values, old):
            if not meddled:   # the other replica writes between our reads and EXEC
                meddled.append(True)
                other.ack_intake([], [delivery("fp-z", "firing", "s9", now, "opened")])
            put(pipe, values, old)

        monkeypatch.setattr(store, "_put_delivery", put_once_meddled)
        store.ack_intake([i.id for i in claimed], [
            delivery("fp-a", "firing", "s1", now, "opened"),
            delivery("fp-b", "firing", "s1", now, "opened")])
        assert meddled and store.intake_depth(now)[0] == 0
        kept = store.deliveries(limit=None)
        assert sorted(d.fingerprint for d in kept) == ["fp-a", "fp-b", "fp-z"]
        assert len({d.id for d in kept}) == 3
    finally:
        store.close()
        other.close()


def test_a_caller_that_waits_as_long_as_the_socket_timeout_is_still_tried_once():
    """The webhook's store_wait (5 s by default) is its bound: the default client tries a
    command twice, so a hung server would be answered after 10 s."""
    from engine.store.redis.connection import SOCKET_TIMEOUT, RedisConnection

    conn = RedisConnection("redis://127.0.0.1:1/0")
    for wait in (0.5, SOCKET_TIMEOUT, 30.0):
        client = conn._within(wait)
        assert client is not conn._redis
        assert client.get_retry()._retries == 0
        assert client.get_connection_kwargs()["socket_timeout"] == min(wait, SOCKET_TIMEOUT)
    conn.close()
