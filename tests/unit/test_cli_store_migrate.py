"""`recovery store migrate`: an install populated through the real engine (the CLI on a
configuration of the test's own, tests/support/cli_env.py) moved from SQLite to a real
``redis-server`` (AOF on, a fresh key prefix per test), then used on Redis: the same
history, the cooldown still defers, the kill switch still holds, the degraded mode is
still on, an approval asked on SQLite is given on Redis. And its refusals, exit codes,
the URL never shown with its password, an interrupted migration."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from engine.lifecycle import RunStatus
from engine.store.redis import RedisStore
from tests.support.cli_env import Env
from tests.support.redis_servers import RedisServer
from tests.unit.store.samples import run

pytestmark = pytest.mark.requires("redis-server")
SECRET = "pw-7f3a9"


@pytest.fixture
def target(redis_store_server: RedisServer) -> str:
    """A Redis store of its own: the session's server (tests/conftest.py), a fresh prefix."""
    return f"{redis_store_server.url}?prefix=mig-{uuid.uuid4().hex}:"


def held(url: str) -> int:
    store = RedisStore(url)
    try:
        return store.held_keys()
    finally:
        store.close()


def test_a_migrated_install_keeps_its_history_and_safety_state(
        cli_env: Env, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert [cli_env.cli("recover", "-c", "svc").code for _ in range(3)] == [0, 0, 4]
    assert cli_env.cli("recover", "-c", "broken").code == 1        # degraded mode on
    assert cli_env.cli("recover", "-c", "guarded").code == 3       # waits for approval
    (pending,) = cli_env.cli("pending", "--json").json()
    assert cli_env.cli("disable", "-c", "shed", "--reason", "maintenance").code == 0
    history = cli_env.cli("history", "--json", "-n", "1000").json()
    incidents = cli_env.cli("incidents", "--json").json()
    status = cli_env.cli("status", "--json").json()

    r = cli_env.cli("store", "migrate", "--to", target, "--check")
    assert r.code == 0, r.err
    assert "would copy" in r.out and "nothing written" in r.out
    assert held(target) == 0
    r = cli_env.cli("store", "migrate", "--to", target)
    assert r.code == 0, r.err
    assert f"runs                 {len(history)}  (read back: {len(history)})" in r.out
    assert "verified" in r.out and "locks were not copied" in r.out

    monkeypatch.setenv("RECOVERY_STATE_URL", target)           # the install, on Redis now
    assert cli_env.cli("history", "--json", "-n", "1000").json() == history
    assert cli_env.cli("incidents", "--json").json() == incidents
    moved = cli_env.cli("status", "--json").json()
    assert moved["store"]["url"] != status["store"]["url"]
    for kind in ("cooldowns", "switches", "degraded_modes", "pending_approvals", "problems"):
        assert moved[kind] == status[kind], kind
    r = cli_env.cli("recover", "-c", "svc")
    assert r.code == 4 and "cooldown" in r.err                   # the attempts still count
    r = cli_env.cli("recover", "-c", "shed")
    assert r.code == 4 and "disabled" in r.err                   # the switch still holds
    assert any(m["mode"] == "broken_down" and m["active"] for m in moved["degraded_modes"])
    r = cli_env.cli("approve", pending["run_id"], "--now")
    assert r.code == 0, r.err
    assert cli_env.work("touched").exists()
    assert cli_env.cli("pending", "--json").json() == []
    assert len(cli_env.cli("history", "--json", "-n", "1000").json()) > len(history)


def test_a_source_a_service_works_on_is_refused_with_4_by_the_real_entry_point(
        cli_env: Env, target: str) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    store = cli_env.store()
    running = run(RunStatus.RUNNING, started_at=time.time())
    store.add_run(running)
    r = cli_env.run("store", "migrate", "--to", target)
    assert r.code == 4, r.err
    assert "1 run(s) running" in r.err and "stop the service" in r.err
    assert held(target) == 0
    store.update_run(running.id, status=RunStatus.INTERRUPTED, finished_at=time.time())
    store.close()
    assert cli_env.cli("store", "migrate", "--to", target).code == 0
    r = cli_env.cli("store", "migrate", "--to", target)            # never merged
    assert r.code == 4 and "already holds state" in r.err and "--replace" in r.err
    r = cli_env.run("store", "migrate", "--to", target, "--replace", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert report["copied"] and report["replaced_keys"] > 0
    assert report["read_back"] == report["counts"] and report["counts"]["runs"] == 3


def test_a_wrong_source_or_an_unsafe_target_exits_2(cli_env: Env, tmp_path: Path,
                                                     target: str) -> None:
    r = cli_env.cli("store", "migrate", "--from", target, "--to", target)
    assert r.code == 2 and "must be a SQLite store" in r.err
    r = cli_env.cli("store", "migrate", "--from", f"sqlite:///{tmp_path / 'none.db'}",
                    "--to", target)
    assert r.code == 2 and "no SQLite store" in r.err
    unsafe = RedisServer(tmp_path / "no-aof", appendonly="no").start()
    try:
        r = cli_env.cli("store", "migrate", "--to", unsafe.url)
        assert r.code == 2 and "appendonly" in r.err
        assert unsafe.client().dbsize() == 0
    finally:
        unsafe.stop()


def test_the_target_url_is_never_shown_with_its_password(
        cli_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = RedisServer(tmp_path / "pw", appendonly="yes", password=SECRET).start()
    try:
        url = f"redis://:{SECRET}@127.0.0.1:{locked.port}/0?prefix=pw:"
        r = cli_env.cli("store", "migrate", "--to", url)
        assert r.code == 0, r.err
        assert SECRET not in r.out + r.err and ":***@" in r.out
        r = cli_env.cli("store", "migrate", "--to", url, "--json")     # refused: holds state
        assert r.code == 4 and SECRET not in r.out + r.err
        monkeypatch.setenv("RECOVERY_REDIS_PASSWORD", SECRET)          # or from the env
        bare = f"redis://127.0.0.1:{locked.port}/0?prefix=pw-env:"
        assert cli_env.cli("store", "migrate", "--to", bare).code == 0
    finally:
        locked.stop()


def test_a_migration_cut_short_is_shown_by_status_and_redone_only_with_replace(
        cli_env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.records import AuditEvent

    store = cli_env.store()
    for i in range(300):                     # about 3 MB of audit log
        store.add_event(AuditEvent(time.time(), "alice", f"event-{i}", {"pad": "x" * 10_000}))
    store.close()
    full = RedisServer(tmp_path / "full", appendonly="yes",
                       maxmemory_policy="noeviction").start()
    try:       # room for the first records, not for all: the server refuses writes then
        used = int(full.client().info("memory")["used_memory"])
        full.client().config_set("maxmemory", used + 1_000_000)
        url = f"{full.url}?prefix=cut:"
        r = cli_env.cli("store", "migrate", "--to", url)
        assert r.code == 1, (r.out, r.err)
        assert "the target is marked incomplete" in r.err and "maxmemory" in r.err
        monkeypatch.setenv("RECOVERY_STATE_URL", url)
        problems = cli_env.cli("status", "--json").json()["problems"]
        assert any(f"INCOMPLETE migration from {cli_env.home / 'recovery.db'}" in p
                   for p in problems), problems
        assert "INCOMPLETE migration" in cli_env.cli("status").out
        r = cli_env.cli("serve")                                  # and no service starts
        assert r.code == 2 and "INCOMPLETE migration" in r.err
        monkeypatch.delenv("RECOVERY_STATE_URL")
        r = cli_env.cli("store", "migrate", "--to", url)
        assert r.code == 4 and "an interrupted migration left it incomplete" in r.err
        full.client().config_set("maxmemory", 0)
        r = cli_env.cli("store", "migrate", "--to", url, "--replace")
        assert r.code == 0, r.err
        assert "events               300  (read back: 300)" in r.out
        monkeypatch.setenv("RECOVERY_STATE_URL", url)
        assert cli_env.cli("status", "--json").json()["problems"] == []
    finally:
        full.stop()


def _live_store(url: str, now: float) -> RedisStore:
    """The target as two serving replicas leave it: their roster lines and heartbeats,
    a lock, a run running, an alert journaled and not yet processed."""
    from engine.store.replicas import ReplicaSeen

    store = RedisStore(url)
    for name in ("a", "b"):
        store.record_replica(ReplicaSeen(name, None, None, now, "host-" + name))
    store.update_value("worker_heartbeat", lambda _: {"a:1": now, "b:1": now})
    assert store.acquire_lock("web-1", "a:1", 30.0) is not None
    store.add_run(run(RunStatus.RUNNING, started_at=now))
    assert store.enqueue_alerts([("fp-1", {"labels": {"alertname": "Down"}})]) == (1, 0)
    return store


def test_replace_refuses_a_target_live_replicas_use_and_keeps_their_state(
        cli_env: Env, target: str) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    store = _live_store(target, time.time())
    try:
        before = held(target)
        r = cli_env.run("store", "migrate", "--to", target, "--replace")
        assert r.code == 4, (r.out, r.err)
        for reason in ("the target is live", "2 replica(s) seen", "(a, b)",
                       "2 worker heartbeat(s)", "1 run(s) running", "1 live lock(s)",
                       "1 alert(s) journaled and not processed"):
            assert reason in r.err, (reason, r.err)
        assert "nothing written" in r.err
        assert held(target) == before
        assert [s.replica for s in store.replicas()] == ["a", "b"]
        assert store.intake_depth(time.time())[0] == 1 and store.list_locks()
        r = cli_env.run("store", "migrate", "--to", target, "--replace", "--check")
        assert r.code == 4 and "live" in r.err
    finally:
        store.close()


def test_replace_drops_a_stopped_install_once_its_replicas_are_long_gone(
        cli_env: Env, target: str) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    old = time.time() - 3600                  # seen an hour ago: far past three leases
    store = RedisStore(target)
    try:
        from engine.store.replicas import ReplicaSeen

        store.record_replica(ReplicaSeen("a", None, None, old, "host-a"))
        store.update_value("worker_heartbeat", lambda _: {"a:1": old})
        # ... and killed in a step: its run left "running", its heartbeat an hour old
        store.add_run(run(status=RunStatus.RUNNING, started_at=old))
    finally:
        store.close()
    r = cli_env.run("store", "migrate", "--to", target, "--replace")
    assert r.code == 0, r.err


def test_clear_leaves_the_keys_of_an_install_under_a_longer_prefix(
        cli_env: Env, redis_store_server: RedisServer) -> None:
    base = f"mig-{uuid.uuid4().hex}:"
    ours = f"{redis_store_server.url}?prefix={base}"
    staging = f"{redis_store_server.url}?prefix={base}staging:"
    assert cli_env.cli("recover", "-c", "svc").code == 0
    assert cli_env.cli("store", "migrate", "--to", staging).code == 0
    kept = held(staging)
    assert kept > 0
    r = cli_env.cli("store", "migrate", "--to", ours)        # nothing of its own there
    assert r.code == 0, r.err
    r = cli_env.cli("store", "migrate", "--to", ours, "--replace", "--json")
    assert r.code == 0, r.err
    assert r.json()["replaced_keys"] == held(ours)
    assert held(staging) == kept
    client = redis_store_server.client()
    assert len(list(client.scan_iter(match=f"{base}staging:*"))) == kept
    # every key the store wrote is of a family it knows (FAMILIES): none left uncounted
    assert len(list(client.scan_iter(match=f"{base}*"))) == kept + held(ours)
