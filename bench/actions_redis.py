"""Redis actions against real servers: the time from a step's start to verified recovery.

Each case runs N times (20; ``--quick``: 3) on fresh ``redis-server`` processes on free
loopback ports (tests/support/redis_servers.py), under a temporary RECOVERY_HOME, with the shipped
runbook (runbooks/redis.yml) whose verify is shortened to start at once and poll every
0.1 s without ``stable_for`` (the shipped 2 s delay + 5 s stable_for would be most of
every figure). Two clocks per run:

- **action**: the python action's own ``run`` (find the primary, move the pool, PING
  through it; or SCAN + delete), timed around the call; the verify is not in it.
- **to verified**: from ``trigger()`` (or the approved step's start) to the incident
  recovered *and* the application's next write answered (reconnect), or to the incident
  recovered (flush, its verify scanning the whole ``cache:*`` namespace, 10,000 keys
  left, for any key without a TTL, and reading a sample back).

Cases:
  reconnect, endpoints   primary SIGKILLed, replica promoted by REPLICAOF NO ONE, then
                         trigger: the pool moves to the replica and writes.
  reconnect, Sentinel    primary SIGKILLed, trigger at once: the action backs off until a
                         real Sentinel (down-after 500 ms, quorum 1) has promoted the
                         replica; the figure includes Sentinel's own failover time.
  flush_corrupted        10,000 keys without a TTL and 10,000 with one under cache:*, cap
                         10,000, SCAN batches of 500 (the shipped parameters). The
                         cap is reached, so the run recounts what is left (nothing).
restart_container cannot run here (no Docker daemon): it is not measured.

    .venv/bin/python bench/actions_redis.py [--quick] [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests/support starts the servers
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.support.redis_servers import HAS_REDIS, RedisServer, Sentinel  # noqa: E402

FAST = {"initial_delay: 2s": "initial_delay: 0s", "interval: 1s": "interval: 0.1s",
        "stable_for: 5s": "stable_for: 0s", "approval: required": "approval: none"}


def home(root: Path, host_vars: dict) -> Path:
    """A config folder: the shipped runbook (verify shortened, no approval), its playbook,
    one inventory host cache-1 with ``host_vars``. Returns the recovery.yml path."""
    for name in ("runbooks", "playbooks", "inventory"):
        (root / name).mkdir(parents=True, exist_ok=True)
    text = (ROOT / "runbooks" / "redis.yml").read_text()
    for old, new in FAST.items():
        text = text.replace(old, new)
    (root / "runbooks" / "redis.yml").write_text(text)
    (root / "playbooks" / "restart_container.yml").write_text(
        (ROOT / "playbooks" / "restart_container.yml").read_text())
    lines = ["all:", "  hosts:", "    cache-1:", "      ansible_connection: local"]
    lines += [f"      {k}: {json.dumps(v)}" for k, v in host_vars.items()]
    (root / "inventory" / "hosts.yml").write_text("\n".join(lines) + "\n")
    config = root / "recovery.yml"
    config.write_text("home: var\nrunbooks: runbooks\nplaybooks: playbooks\n"
                      "inventory: inventory\nworkers: {threads: 2}\n"
                      "degraded_modes:\n  redis_unavailable: {capabilities: {cache: false}}\n")
    return config


def timed_actions(recovery) -> dict[str, list[float]]:
    """Wrap the redis actions' ``run`` in this engine so each call's own time is kept
    (the artifacts' event stamps are too coarse for milliseconds)."""
    times: dict[str, list[float]] = {}
    for name in ("redis.reconnect", "redis.flush_corrupted"):
        action = recovery.context.python.registry.get(name)
        inner = type(action).run

        def run(ctx, _inner=inner, _action=action, _name=name):
            t0 = time.perf_counter()
            try:
                return _inner(_action, ctx)
            finally:
                times.setdefault(_name, []).append(time.perf_counter() - t0)
        action.run = run
    return times


def reconnect_once(tmp: Path, sentinel: bool) -> tuple[float, float]:
    from engine import Recovery
    from engine.lifecycle import IncidentState

    primary = RedisServer(tmp / "p").start()
    replica = RedisServer(tmp / "r", replica_of=primary).start()
    watcher = None
    recovery = None
    try:
        replica.wait_synced()
        if sentinel:
            watcher = Sentinel(tmp / "s", primary, "cache").start()
            watcher.wait_replicas(1)
            host_vars = {"redis_url": primary.url, "redis_sentinels": [watcher.address],
                         "redis_sentinel_service": "cache"}
        else:
            host_vars = {"redis_url": primary.url, "redis_failover_urls": [replica.url]}
        recovery = Recovery.from_config(home(tmp / "home", host_vars))
        times = timed_actions(recovery)
        pool = redis.ConnectionPool.from_url(primary.url, socket_timeout=1,
                                             socket_connect_timeout=1)
        app = redis.Redis(connection_pool=pool)
        recovery.resources.register("redis", pool, target="cache-1")
        app.set("k", "v")
        recovery.context.host_vars("cache-1")     # the inventory parsed before the clock
        primary.kill()
        if not sentinel:
            replica.promote()
        t0 = time.perf_counter()
        incident = recovery.trigger("redis", "connection_timeout").wait(60)
        app.set("k", "after")
        total = time.perf_counter() - t0
        if incident is None or incident.state != IncidentState.RECOVERED:
            raise RuntimeError(f"not recovered: {incident and incident.reason}")
        return times["redis.reconnect"][-1], total
    finally:
        if recovery is not None:
            recovery.close()
        for server in (watcher, replica, primary):
            if server is not None:
                server.kill()


def flush_once(tmp: Path, server: RedisServer) -> tuple[float, float]:
    from engine import Recovery
    from engine.lifecycle import IncidentState

    client = server.client()
    client.flushdb()
    for start in range(0, 10_000, 1000):
        client.mset({f"cache:bad:{i}": "x" for i in range(start, start + 1000)})
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 1000):
            pipe.set(f"cache:ok:{i}", "y", ex=3600)
        pipe.execute()
    recovery = Recovery.from_config(home(tmp / "home", {"redis_url": server.url}))
    times = timed_actions(recovery)
    try:
        recovery.context.host_vars("cache-1")     # the inventory parsed before the clock
        t0 = time.perf_counter()
        incident = recovery.trigger("redis", "corruption", target="cache-1").wait(120)
        total = time.perf_counter() - t0
        if incident is None or incident.state != IncidentState.RECOVERED:
            raise RuntimeError(f"not recovered: {incident and incident.reason}")
        left = sum(1 for _ in client.scan_iter(match="cache:bad:*", count=1000))
        if left:
            raise RuntimeError(f"{left} corrupted keys left")
        return times["redis.flush_corrupted"][-1], total
    finally:
        recovery.close()


def summary(name: str, values: list[tuple[float, float]]) -> str:
    def cell(xs: list[float]) -> str:
        return (f"{statistics.median(xs) * 1000:8.0f} {min(xs) * 1000:7.0f} "
                f"{max(xs) * 1000:7.0f}")
    return (f"  {name:<22} {len(values):>3}  {cell([a for a, _ in values])}   "
            f"{cell([t for _, t in values])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 runs per case")
    parser.add_argument("-n", type=int, default=20, help="runs per case")
    args = parser.parse_args()
    if not HAS_REDIS:
        print("redis-server is not installed: nothing to measure")
        return 1
    n = 3 if args.quick else args.n
    print(f"redis actions: step start -> verified recovery, real servers ({n} runs per case)")
    print(f"  machine: {os.cpu_count()} cpu, python {platform.python_version()}, "
          f"redis-py {redis.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(f"  {'case':<22} {'n':>3}  {'action ms: p50':>14} {'min':>7} {'max':>7}   "
          f"{'to verified: p50':>16} {'min':>7} {'max':>7}")
    cases = {"reconnect, endpoints": [], "reconnect, Sentinel": [], "flush_corrupted": []}
    for _ in range(n):
        for sentinel, name in ((False, "reconnect, endpoints"), (True, "reconnect, Sentinel")):
            with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
                cases[name].append(reconnect_once(Path(tmp), sentinel))
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = RedisServer(Path(tmp) / "flush").start()
        try:
            for i in range(n):
                cases["flush_corrupted"].append(flush_once(Path(tmp) / f"run{i}", server))
        finally:
            server.kill()
    for name, values in cases.items():
        print(summary(name, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
