"""The Redis runbook against real ``redis-server`` processes (and a real Sentinel) on free
loopback ports, each in its own folder (tests/support/redis_servers.py), never the machine's own
Redis on 6379.

Embedded: the test process is the application. It embeds ``engine.Recovery`` with a
redis-py pool on a primary, the primary dies, a replica is promoted (``REPLICAOF NO ONE``
or a real Sentinel failover), and ``trigger("redis", "connection_timeout")`` moves the
application's pool: its next writes succeed, where without the action they fail.
Service side: ``recovery test|recover|approve`` as subprocesses (flush_corrupted with its
approval, its plan under ``--check``, restart_service in check mode: Docker cannot run
here, with a per-host ``redis_container``), and an alert through the real webhook of
``recovery serve``. The flush is also run where KEYS/FLUSHALL/FLUSHDB are renamed away,
capped (it fails: "N more remain"), and against a writer that keeps losing its EXPIRE
(the verify fails). The runbook is the shipped ``runbooks/redis.yml`` with only its
verify timings shortened.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest
import redis

from engine import Recovery
from engine.actions.base import ActionContext
from engine.artifacts import RunArtifacts
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.verify import verify
from engine.records import new_id
from engine.runbooks.model import Verify
from engine.service import probes
from tests.support.paths import ROOT
from tests.support.redis_servers import RedisServer, Sentinel, wait_until
from tests.support.service import Served, free_port, wait_for
from tests.support.shipped import install_playbooks

pytestmark = pytest.mark.requires("redis-server")

SECRET = "redis-secret-Zq7w"
FAST_VERIFY = {"initial_delay: 2s": "initial_delay: 0s", "interval: 1s": "interval: 0.2s",
               "stable_for: 5s": "stable_for: 0.5s"}


# -- the engine home: the shipped runbook, an inventory host that points at our servers ---
def shipped_redis(env, *, probe: bool = False, **replace: str) -> None:
    """runbooks/redis.yml and its playbook as shipped, the verify shortened, ``replace``
    applied (old=new), and with ``probe`` a probe of cache-1."""
    text = (ROOT / "runbooks" / "redis.yml").read_text()
    for old, new in {**FAST_VERIFY, **replace}.items():
        assert old in text, old
        text = text.replace(old, new)
    if probe:
        text += "probe: {targets: cache-1, interval: 1s, failure_type: connection_refused}\n"
    (env.root / "runbooks" / "redis.yml").write_text(text)
    install_playbooks(env.root)
    env.write_config(
        threads=2, **{"degraded_modes": "\n  redis_unavailable: {capabilities: {cache: false}}"})


def inventory(env, **vars_: object) -> None:
    """cache-1 (alias cache-1.example:9121, as redis_exporter labels it), run locally."""
    lines = ["all:", "  hosts:", "    cache-1:", "      ansible_host: 192.0.2.10",
             "      ansible_connection: local",
             '      ansible_python_interpreter: "{{ ansible_playbook_python }}"',
             '      instance_aliases: ["cache-1.example:9121"]']
    lines += [f"      {k}: {json.dumps(v)}" for k, v in vars_.items()]
    (env.root / "inventory" / "hosts.yml").write_text("\n".join(lines) + "\n")


def app_pool(server: RedisServer) -> redis.ConnectionPool:
    """The application's pool, as it would build it: short timeouts, one retry of its own."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.ConnectionPool.from_url(server.url, socket_timeout=1, socket_connect_timeout=1,
                                         retry=Retry(NoBackoff(), 1))


def cli(env, *args: str, secret: bool = False) -> subprocess.CompletedProcess[str]:
    environ = env.env()
    if secret:
        environ["REDIS_PASSWORD"] = SECRET
    return subprocess.run([sys.executable, "-m", "engine", *args], env=environ,
                          capture_output=True, text=True, timeout=120)


def cli_here(env, capsys, *args: str) -> tuple[int, str]:
    """The same CLI in this process (no interpreter start-up): exit code and stdout."""
    from engine.cli import main

    capsys.readouterr()
    code = main(["--config", str(env.config_path), *args])
    return code, capsys.readouterr().out


def last_run(ctx, strategy: str):
    runs = [r for r in ctx.store.query_runs(limit=None) if r.strategy == strategy]
    return max(runs, key=lambda r: r.started_at)


def run_result(env, run_id: str) -> dict:
    return json.loads((env.root / "var" / "artifacts" / run_id / "run.json").read_text())


@pytest.fixture
def servers(tmp_path):
    """Start servers with ``servers(name, **kw)``; every one is killed at the end."""
    started: list[RedisServer] = []

    def start(name: str, cls=RedisServer, *args, **kw) -> RedisServer:
        server = cls(tmp_path / name, *args, **kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def application(engine_env):
    """The application: ``Recovery`` embedded in this process; closed at the end."""
    made: list[Recovery] = []

    def make() -> Recovery:
        recovery = Recovery.from_config(engine_env.config_path)
        made.append(recovery)
        return recovery

    yield make
    for recovery in made:
        recovery.close()


# -- reconnect: the application's pool fails over ------------------------------------------
def test_reconnect_moves_the_applications_pool_to_the_promoted_replica(
        engine_env, servers, application):
    primary = servers("primary")
    replica = servers("replica", replica_of=primary)
    replica.wait_synced()
    inventory(engine_env, redis_url=primary.url, redis_failover_urls=[replica.url])
    shipped_redis(engine_env)
    recovery = application()
    pool = app_pool(primary)
    app = redis.Redis(connection_pool=pool)          # what the application's code uses
    recovery.resources.register("redis", pool, target="cache-1")
    app.set("session:1", "alice")
    assert wait_until(lambda: replica.client().get("session:1") == b"alice", 10)

    primary.kill()
    replica.promote()
    with pytest.raises(redis.ConnectionError):       # without the action: writes fail,
        app.set("session:2", "bob")                  # redis-py retries the dead address
    incident = recovery.trigger("redis", "connection_timeout").wait(30)

    assert incident.state == IncidentState.RECOVERED, incident.reason
    app.set("session:2", "bob")                      # the same client object now writes
    assert replica.client().get("session:2") == b"bob"
    assert app.get("session:1") == b"alice"
    assert pool.connection_kwargs["port"] == replica.port
    ctx = recovery.context
    run = last_run(ctx, "reconnect")
    assert run.status == RunStatus.SUCCEEDED and run.trigger == "probe"
    result = run_result(engine_env, run.id)["result"]
    assert (result["from"], result["to"], result["source"]) == (
        primary.address, replica.address, "endpoints")
    assert f"from {primary.address} to {replica.address}" in run.reason
    assert not recovery.degraded("redis_unavailable")


def test_reconnect_follows_a_real_sentinel_failover(engine_env, servers, application):
    primary = servers("primary")
    replica = servers("replica", replica_of=primary)
    replica.wait_synced()
    sentinel = servers("sentinel", Sentinel, primary, "cache")
    sentinel.wait_replicas(1)
    # The list names only the dead primary: with Sentinel configured, Sentinel decides.
    inventory(engine_env, redis_url=primary.url, redis_sentinels=[sentinel.address],
              redis_sentinel_service="cache")
    shipped_redis(engine_env)
    recovery = application()
    app = redis.Redis.from_url(primary.url, socket_timeout=1, socket_connect_timeout=1)
    recovery.resources.register("redis", app)         # a client, registered for any target
    app.set("k", "before")

    primary.kill()                  # Sentinel needs ~1 s to see it and promote: the action
    handle = recovery.trigger("redis", "connection_refused", target="cache-1")  # backs off
    incident = handle.wait(40)

    assert incident.state == IncidentState.RECOVERED, incident.reason
    assert sentinel.master() == ("127.0.0.1", replica.port)
    app.set("k", "after")
    assert replica.client().get("k") == b"after"
    result = run_result(engine_env, last_run(recovery.context, "reconnect").id)["result"]
    assert result["source"] == "sentinel" and result["to"] == replica.address


@pytest.mark.slow
def test_a_dead_primary_with_only_a_replica_left_fails_escalates_and_degrades(
        engine_env, servers, application):
    """Nothing to fail over to (the replica was not promoted): reconnect fails, the
    restart (approved, Docker has no daemon here) fails, redis_unavailable goes on; the
    primary back, a passing probe switches it off."""
    primary = servers("primary")
    replica = servers("replica", replica_of=primary)
    replica.wait_synced()
    inventory(engine_env, redis_url=primary.url, redis_failover_urls=[replica.url],
              service_manager="docker")
    shipped_redis(engine_env, probe=True, **{"rounds: 10": "rounds: 2"})
    recovery = application()
    recovery.resources.register("redis", app_pool(primary), target="cache-1")
    primary.stop()

    handle = recovery.trigger("redis", "connection_refused")
    parked = handle.wait(30)
    ctx = recovery.context
    reconnect = last_run(ctx, "reconnect")
    assert reconnect.status == RunStatus.FAILED
    assert f"{replica.address} is a replica, not a primary" in reconnect.reason
    assert parked.state == IncidentState.REMEDIATING      # the restart waits for a person
    restart = last_run(ctx, "restart_service")
    assert restart.status == RunStatus.PENDING_APPROVAL

    done = cli(engine_env, "approve", restart.id, "--now", "--as", "alice")
    assert done.returncode == 1, done.stdout + done.stderr
    assert ctx.store.get_run(restart.id).status == RunStatus.FAILED
    incident = ctx.store.get_incident(handle.incident_id)
    assert incident.state == IncidentState.FAILED
    assert recovery.degraded("redis_unavailable")      # the application sees it in-process

    primary.start()
    assert probes.run_due(ctx, time.time() + 60) == 1
    assert not recovery.degraded("redis_unavailable")


def test_reconnect_moves_a_single_connection_client(engine_env, servers):
    """``redis.Redis(single_connection_client=True)`` holds its own connection outside
    the pool's free list: reconnect replaces it with one to the new primary."""
    primary = servers("primary")
    replica = servers("replica", replica_of=primary)
    replica.wait_synced()
    inventory(engine_env, redis_url=primary.url, redis_failover_urls=[replica.url])
    shipped_redis(engine_env)
    ctx = engine_env.context()
    app = redis.Redis.from_url(primary.url, single_connection_client=True, socket_timeout=1,
                               socket_connect_timeout=1)
    app.set("a", "1")
    assert wait_until(lambda: replica.client().get("a") == b"1", 10)
    old = app.connection
    ctx.resources.register("redis", app)
    primary.kill()
    replica.promote()
    with pytest.raises(redis.ConnectionError):        # the held connection is dead
        app.set("b", "2")

    moved = ctx.python.call("redis.reconnect", ActionContext(
        "redis", "cache-1", params={"rounds": 2}, host_vars=dict(ctx.host_vars("cache-1")),
        resources=ctx.resources))

    assert moved.ok and f"to {replica.address}" in moved.summary, moved.summary
    assert app.connection is not old and app.connection.port == replica.port
    app.set("b", "2")                                  # the same client object writes
    assert replica.client().get("b") == b"2" and app.get("a") == b"1"
    app.close()


def test_reconnect_where_nothing_is_registered_is_skipped_and_plans_without_moving(
        engine_env, servers):
    primary = servers("primary")
    replica = servers("replica", replica_of=primary)
    inventory(engine_env, redis_url=primary.url, redis_failover_urls=[replica.url])
    shipped_redis(engine_env)
    ctx = engine_env.context()
    host = dict(ctx.host_vars("cache-1"))
    skipped = ctx.python.call("redis.reconnect", ActionContext("redis", "cache-1",
                                                               host_vars=host))
    assert skipped.not_applicable                       # the CLI/service: nothing to move
    ctx.resources.register("redis", pool := app_pool(primary))
    replica.promote()                                   # both answer as primaries now
    planned = ctx.python.call("redis.reconnect", ActionContext(
        "redis", "cache-1", host_vars=host, resources=ctx.resources), plan=True)
    assert planned.ok and f"would move from {primary.address} to {replica.address}" in \
        planned.summary
    assert pool.connection_kwargs["port"] == primary.port      # the plan moved nothing


# -- flush_corrupted: the service side, with its approval -----------------------------------
def seed(client: redis.Redis) -> None:
    client.flushdb()
    client.mset({f"cache:bad:{i}": "x" for i in range(40)})             # no TTL: corrupted
    for i in range(15):
        client.set(f"cache:ok:{i}", "y", ex=600)                        # a TTL: the cache
    client.mset({f"session:{i}": "z" for i in range(10)})               # other prefix


def count(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=200))


@pytest.mark.slow
def test_flush_corrupted_from_the_cli_plans_parks_then_deletes_up_to_the_cap(
        engine_env, servers, monkeypatch, capsys):
    server = servers("flush", password=SECRET)
    client = server.client()
    seed(client)
    # The URL carries no password: the engine takes it from REDIS_PASSWORD.
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env, **{"max_keys: 10000}": "max_keys: 25, batch: 7}"})
    target = ("--component", "redis", "--strategy", "flush_corrupted", "--target", "cache-1")

    checked = cli(engine_env, "recover", *target, "--check", secret=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "more than 25 keys without a TTL match 'cache:*'" in checked.stdout
    assert client.dbsize() == 65                           # the plan changed nothing

    parked = cli(engine_env, "recover", *target, secret=True)
    assert parked.returncode == 3, parked.stdout + parked.stderr       # approval required
    run_id = re.search(r"approve (run-[\w-]+)", parked.stdout).group(1)
    done = cli(engine_env, "approve", run_id, "--now", "--as", "alice", secret=True)
    # Stopped at the cap with keys left: the step FAILS, the incident is not `recovered`.
    assert done.returncode == 1, done.stdout + done.stderr
    assert count(client, "cache:bad:*") == 15             # the cap: 25 of 40 went
    assert count(client, "cache:ok:*") == 15 and count(client, "session:*") == 10
    run = engine_env.context().store.get_run(run_id)
    assert run.status == RunStatus.FAILED
    assert "not recovered" in run.reason and "15 more key(s) without a TTL remain" in run.reason
    result = run_result(engine_env, run_id)["result"]
    assert (result["deleted"], result["capped"], result["cap"], result["remaining"]) == (
        25, True, 25, 15)
    assert result["batches"] > 1 and len(result["sample"]) == 10
    assert all(k.startswith("cache:bad:") for k in result["sample"])

    # The second pass: the CLI in-process; --force, because the failed attempt started
    # the cooldown (300 s after a failure), which would defer it.
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    code, printed = cli_here(engine_env, capsys, "recover", *target, "--force")
    assert code == 3, printed
    run_id = re.search(r"approve (run-[\w-]+)", printed).group(1)
    assert cli_here(engine_env, capsys, "approve", run_id, "--now")[0] == 0
    assert count(client, "cache:bad:*") == 0               # the rest, and nothing else
    assert count(client, "cache:ok:*") == 15 and count(client, "session:*") == 10
    assert run_result(engine_env, run_id)["result"]["capped"] is False
    last = engine_env.context().store.get_run(run_id)
    assert last.status == RunStatus.SUCCEEDED       # the verify scanned the whole namespace
    assert "none of the 15 key(s) matching 'cache:*' lacks a TTL" in last.reason

    leaked = subprocess.run(["grep", "-rl", SECRET, str(engine_env.root / "var")],
                            capture_output=True, text=True)
    assert leaked.stdout == "", f"the password landed in {leaked.stdout}"


def test_flush_refuses_a_match_everything_pattern_and_fails_on_a_stopped_server(
        engine_env, servers):
    server = servers("flush")
    server.client().set("cache:x", "1")
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env)
    ctx = engine_env.context()
    host = dict(ctx.host_vars("cache-1"))

    def flush(match: str):
        return ctx.python.call("redis.flush_corrupted", ActionContext(
            "redis", "cache-1", params={"match": match, "max_keys": 10}, host_vars=host))

    for pattern in ("*", "**", "", "[a-z]*", "c*", "cache*", "?ache:*", ":*", "::*",
                    "\\*", "cache\\:*"):
        refused = flush(pattern)
        assert not refused.ok and refused.summary.startswith("refused"), pattern
        assert pattern == "" or "must name a namespace" in refused.summary, refused.summary
    assert server.client().dbsize() == 1
    for pattern in ("cache:*", "cache:bad:*", "app/v1.*", "cache:x"):    # x: one key
        planned = ctx.python.call("redis.flush_corrupted", ActionContext(
            "redis", "cache-1", params={"match": pattern}, host_vars=host), plan=True)
        assert planned.ok, (pattern, planned.summary)
    server.stop()
    failed = flush("cache:*")
    assert not failed.ok and "no primary for cache-1" in failed.summary
    sample = ctx.python.call("redis.sample_keys_readable", ActionContext(
        "redis", "cache-1", host_vars=host))
    assert not sample.ok


def test_a_flush_pinned_by_its_plan_deletes_no_more_than_it_counted(engine_env, servers):
    """``max_keys_pin`` (what its plan counted, when approval was judged on it) bounds the
    run under ``max_keys``: a pin of 0 deletes nothing and fails when keys appeared since;
    a pin that covers what is there is a recovery."""
    server = servers("pinned")
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env)
    ctx = engine_env.context()
    host = dict(ctx.host_vars("cache-1"))

    def flush(pin: int):
        return ctx.python.call("redis.flush_corrupted", ActionContext(
            "redis", "cache-1", params={"match": "cache:*", "max_keys": 100,
                                        "max_keys_pin": pin}, host_vars=host))

    planned = ctx.python.call("redis.flush_corrupted", ActionContext(
        "redis", "cache-1", params={"match": "cache:*"}, host_vars=host), plan=True)
    assert planned.data["pins"] == {"max_keys_pin": 0}
    server.client().mset({"cache:a": 1, "cache:b": 1})
    stopped = flush(0)
    assert not stopped.ok and stopped.data["deleted"] == 0
    assert "2 more key(s) without a TTL remain" in stopped.summary
    assert "deleting more needs approval" in stopped.summary
    assert server.client().dbsize() == 2
    done = flush(2)
    assert done.ok, done.summary
    assert server.client().dbsize() == 0


def test_sample_keys_readable_reads_back_what_is_left(engine_env, servers):
    server = servers("sample")
    client = server.client()
    client.mset({f"cache:{i}": "v" for i in range(30)})
    client.hset("cache:h", mapping={"a": "1"})
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env)
    ctx = engine_env.context()
    host = dict(ctx.host_vars("cache-1"))

    def sample(**params):
        return ctx.python.call("redis.sample_keys_readable", ActionContext(
            "redis", "cache-1", params=params, host_vars=host))

    result = sample(match="cache:*", sample=50)
    assert result.ok and result.data["sampled"] == 31
    typed = sample(match="cache:*", sample=50, type="string")  # the hash fails GET
    assert not typed.ok and "cache:h: a hash, not a string" in typed.summary
    # The flush's verify: the whole namespace scanned, not a sample of 20 readable keys.
    corrupted = sample(match="cache:*", require_ttl=True)
    assert not corrupted.ok and "31 key(s) matching 'cache:*' still have no TTL" in \
        corrupted.summary
    assert corrupted.data["without_ttl"] == 31 and corrupted.data["scanned_all"]
    for i in range(30):
        client.expire(f"cache:{i}", 600)
    assert not sample(match="cache:*", require_ttl=True).ok          # cache:h still none
    client.expire("cache:h", 600)
    fixed = sample(match="cache:*", require_ttl=True)
    assert fixed.ok and fixed.data["without_ttl"] == 0 and fixed.data["with_ttl"] == 31
    client.set("session:1", "no ttl, another namespace")
    assert sample(match="cache:*", require_ttl=True).ok
    refused = sample(require_ttl=True)                  # which namespace? never all keys
    assert not refused.ok and "require_ttl needs `match`" in refused.summary


def test_the_flush_uses_scan_only_where_keys_and_flushall_are_disabled(engine_env, servers):
    """Production servers often rename KEYS/FLUSHALL/FLUSHDB away: plan, flush (over two
    capped runs) and verify still work, SCAN being all they use."""
    server = servers("locked", disabled=("KEYS", "FLUSHALL", "FLUSHDB"))
    client = server.client()
    for command in (lambda: client.keys("*"), client.flushall, client.flushdb):
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            command()
    client.mset({f"cache:{i}": 1 for i in range(3000)})
    client.set("cache:ttl", 1, ex=600)
    client.set("other", 1)
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env)
    ctx = engine_env.context()
    host = dict(ctx.host_vars("cache-1"))

    def call(name: str, plan: bool = False, **params):
        return ctx.python.call(name, ActionContext("redis", "cache-1", params=params,
                                                   host_vars=host), plan=plan)

    flush = {"match": "cache:*", "max_keys": 2500, "batch": 100}
    planned = call("redis.flush_corrupted", plan=True, **flush)
    assert planned.ok and planned.data["more_than_cap"] and client.dbsize() == 3002
    first = call("redis.flush_corrupted", **flush)
    assert not first.ok and "500 more key(s) without a TTL remain" in first.summary
    assert first.data["deleted"] == 2500 and client.dbsize() == 502
    assert not call("redis.sample_keys_readable", match="cache:*", require_ttl=True).ok
    second = call("redis.flush_corrupted", **flush)
    assert second.ok and second.data["deleted"] == 500, second.summary
    assert client.dbsize() == 2 and client.get("other") == b"1"
    assert call("redis.sample_keys_readable", match="cache:*", require_ttl=True).ok


@pytest.mark.slow
def test_the_flush_verify_fails_while_the_application_still_writes_without_ttl(
        engine_env, servers, capsys):
    """The flush deletes every corrupted key, but the bug that lost the EXPIRE is still
    writing: the shipped verify (no key of the namespace without a TTL, for stable_for)
    fails the step instead of calling it recovered."""
    import threading

    server = servers("writer")
    seed(server.client())
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env, **{"approval: required                # required":
                                 "approval: none   # required", "deadline: 60s": "deadline: 3s"})
    stop = threading.Event()

    def buggy_application() -> None:
        writer = server.client()
        i = 0
        while not stop.wait(0.02):
            writer.set(f"cache:bad:new:{i}", "x")             # the EXPIRE lost again
            i += 1

    thread = threading.Thread(target=buggy_application, daemon=True)
    thread.start()
    try:
        code, printed = cli_here(engine_env, capsys, "recover", "--component", "redis",
                                 "--strategy", "flush_corrupted", "--target", "cache-1")
    finally:
        stop.set()
        thread.join(5)
    assert code == 1, printed
    run = last_run(engine_env.context(), "flush_corrupted")
    assert run.status == RunStatus.FAILED
    assert "step succeeded but verify failed" in run.reason
    assert "still have no TTL" in run.reason and "cache:bad:new:" in run.reason
    assert count(server.client(), "cache:ok:*") == 15


# -- ping: the probe and verify -------------------------------------------------------------
@pytest.mark.slow
def test_ping_polls_through_loading_after_a_restart(engine_env, servers):
    """What restart_container's verify relies on: LOADING fails a check, not the verify."""
    writer = servers("load", dbfilename="dump.rdb")
    client = writer.client()
    for start in range(0, 3000, 500):
        client.mset({f"k{i}": "x" * 10 for i in range(start, start + 500)})
    client.save()
    writer.stop()
    inventory(engine_env, redis_url=writer.url)
    shipped_redis(engine_env)
    ctx = engine_env.context()
    host = dict(ctx.host_vars("cache-1"))            # everything ready before the restart
    artifacts = RunArtifacts(ctx.artifacts_dir, new_id("run"), ctx.redactor).create()
    spec = Verify(action="redis.ping", interval=0.2, deadline=60, stable_for=0.2)
    # 3,000 keys at 1 ms each: about 3 s of LOADING answers
    servers("load", port=writer.port, dbfilename="dump.rdb", key_load_delay=1000,
            loading_process_events_interval_bytes=1024)

    ok, why = verify(spec, ActionContext("redis", "cache-1", host_vars=host), ctx.python,
                     artifacts)

    assert ok, why
    events = sorted((json.loads(p.read_text()) for p in
                     (artifacts.path / "job_events").glob("*.json")), key=lambda e: e["counter"])
    checks = [e["event_data"] for e in events if e["event"] == "verify_check"]
    assert "loading its dataset" in checks[0]["summary"] and not checks[0]["ok"]
    assert checks[-1]["ok"] and checks[-1]["summary"].startswith("PONG (master")


def test_ping_fails_on_full_memory_without_eviction_and_on_rejected_connections(
        engine_env, servers):
    server = servers("ping", maxmemory="3mb", maxmemory_policy="noeviction", maxclients=4)
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env)
    ctx = engine_env.context()
    call = ActionContext("redis", "cache-1", host_vars=dict(ctx.host_vars("cache-1")))
    first = ctx.python.call("redis.ping", call)
    assert first.ok and first.data["maxmemory_policy"] == "noeviction"

    held = [server.client() for _ in range(6)]             # 4 slots: some are refused
    for client in held:
        try:
            client.ping()
        except redis.ConnectionError:
            pass
    for client in held:
        client.close()
    assert wait_until(lambda: server.client().ping(), 5)
    rejected = ctx.python.call("redis.ping", call)
    assert not rejected.ok and "rejected" in rejected.summary
    assert ctx.python.call("redis.ping", call).ok           # none since that check

    filler = server.client()
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(10_000):
            filler.set(f"fill:{i}", "x" * 1024)
    full = ctx.python.call("redis.ping", call)
    assert not full.ok and "memory full" in full.summary and "OOM" in full.summary
    filler.config_set("maxmemory-policy", "allkeys-lru")     # a cache that evicts: fine
    assert ctx.python.call("redis.ping", call).ok


# -- the plan, restart_service, the service ----------------------------------------------
@pytest.mark.parametrize(("failure", "first"), [
    ("connection_timeout", "reconnect"), ("connection_refused", "reconnect"),
    ("corruption", "flush_corrupted"), ("memory_pressure", "restart_service")])
def test_recovery_test_shows_the_strategy_for_each_failure_type(engine_env, capsys, failure,
                                                              first):
    inventory(engine_env, redis_url="redis://127.0.0.1:1/0")
    shipped_redis(engine_env)
    code, printed = cli_here(engine_env, capsys, "test", "--component", "redis",
                             "--failure-type", failure, "--target", "cache-1", "--json")
    assert code == 0, printed
    plan = json.loads(printed)
    plan = plan[0] if isinstance(plan, list) else plan
    assert plan["first_step"] == first and plan["target"] == "cache-1"


@pytest.mark.slow
@pytest.mark.parametrize(("host_vars", "container"), [
    ({}, "redis"), ({"redis_container": "redis-cache-1"}, "redis-cache-1")])
def test_restart_service_runs_in_check_mode_through_the_runbook(
        engine_env, servers, capsys, host_vars, container):
    """Docker and Podman cannot run here: the playbook is proven by check mode only. The
    runbook's `service_default: redis` is only a default: a host's `redis_container`
    names its own container (an extravar `service_name` would beat every host var)."""
    server = servers("restart")
    inventory(engine_env, redis_url=server.url, service_manager="podman", **host_vars)
    shipped_redis(engine_env)
    code, printed = cli_here(engine_env, capsys, "recover", "--component", "redis",
                             "--strategy", "restart_service", "--target", "cache-1",
                             "--check")
    assert code == 0, printed
    assert (f"cache-1: restart_service: would run podman restart -t 10 {container} "
            "on cache-1") in printed
    ctx = engine_env.context()
    run = last_run(ctx, "restart_service")
    assert run.check_mode and run.status == RunStatus.SUCCEEDED
    stdout = (engine_env.root / "var" / "artifacts" / run.id / "stdout").read_text()
    assert "skipping: [cache-1]" in stdout
    assert f"restart container {container} with podman (-t 10)" in stdout


@pytest.mark.slow
def test_an_alert_through_the_webhook_flushes_after_approval(engine_env, servers, tmp_path):
    server = servers("e2e")
    seed(server.client())
    inventory(engine_env, redis_url=server.url)
    shipped_redis(engine_env)
    engine_env.write_config(
        **{"degraded_modes": "\n  redis_unavailable: {capabilities: {cache: false}}",
           "webhook": "{workers: 1, http_workers: 1, shutdown_grace: 5s, "
                      "graceful_timeout: 2s}"})
    served = Served(engine_env, tmp_path / "home", free_port())
    try:
        served.start().wait_ready()
        alert = {"version": "4", "status": "firing", "receiver": "infra-recovery",
                 "groupKey": "{}:{alertname=\"RedisCorruptedKeys\"}", "groupLabels": {},
                 "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
                 "alerts": [{"status": "firing", "fingerprint": "f1",
                             "startsAt": "2026-01-01T00:00:00Z",
                             "endsAt": "0001-01-01T00:00:00Z",
                             "labels": {"alertname": "RedisCorruptedKeys",
                                        "component": "redis", "severity": "critical",
                                        "instance": "cache-1.example:9121"},
                             "annotations": {}}]}
        posted = httpx.post(served.url + "/api/v1/alerts", json=alert, timeout=5,
                            headers={"Authorization": f"Bearer {served.token}"})
        assert posted.status_code == 200 and posted.json()["accepted"] == 1
        operator = {"Authorization": "Bearer " + (served.home / "operator.token")
                    .read_text().strip()}

        def waiting():
            r = httpx.get(served.url + "/api/v1/approvals", headers=operator, timeout=5)
            body = r.json()
            items = body.get("approvals", body) if isinstance(body, dict) else body
            return [a for a in items if a.get("strategy") == "flush_corrupted"]
        [approval] = wait_for(waiting, 30)
        assert server.client().dbsize() == 65                   # nothing before approval
        decided = httpx.post(served.url + f"/api/v1/approvals/{approval['run_id']}",
                             json={"decision": "approve"}, headers=operator, timeout=5)
        assert decided.status_code == 200, decided.text
        assert wait_for(lambda: count(server.client(), "cache:bad:*") == 0, 30)
        assert count(server.client(), "cache:ok:*") == 15
        assert count(server.client(), "session:*") == 10
    finally:
        served.terminate()
