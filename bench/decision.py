"""Decision latency: an alert in -> the first python step started (target: < 5 ms p99).

For each of N incidents, on N distinct inventory hosts (so no cooldown or lock is
shared), the clock runs from just before ``open_incident`` (runbook matched by labels,
target rendered and resolved against the inventory, incident opened in the store) to
the moment the first strategy's action enters ``run()``; ``advance`` runs in the same
thread (kill switch, observe, cooldown, approval and lock gates, attempt, run record,
artifacts directory, executor thread). The runbook's verify (``bench.ok``, passes at
once) runs after the clock has stopped, so it is not measured. A fresh SQLite store
(WAL, synchronous=NORMAL) under a temporary RECOVERY_HOME; the first incidents are a
warm-up and not counted.

It runs twice: RECOVERY_HOME on the disk (the system temp dir) and on tmpfs
(/dev/shm), because the artifacts directory and run.json are written before the step
starts and file creation on this machine's disk is what the tail is made of. Then on
Redis (``--backends``, both by default): the store is a redis-server of its own on a
free loopback port, AOF on (``appendfsync everysec``), as several replicas would share.
``--profile`` prints cProfile's top entries for the part before the step starts only.
On Redis, ``trips`` is the mean number of round trips to the server per decision, clock
running (each command sent, or each pipeline or MULTI transaction sent at once, counts
one): the figure the machine's load does not move.

    .venv/bin/python bench/decision.py [--quick] [-n 2000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests/support starts redis-server
    sys.path.insert(0, str(ROOT))

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult  # noqa: E402
from engine.actions.registry import default_registry  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.context import EngineContext  # noqa: E402
from engine.lifecycle import IncidentState  # noqa: E402
from engine.orchestration.attempt import advance  # noqa: E402
from engine.orchestration.triggers import TriggerRequest, open_incident  # noqa: E402

TARGET_P99_MS = 5.0
STARTED: list[float] = []   # perf_counter() at the top of each action run()
TRIPS: list[int] = [0]      # sends to redis-server from the deciding thread, clock running
COUNTING: list[int | None] = [None]   # the thread counted while the clock runs

RUNBOOK = """\
name: bench
component: bench
match:
  - alertname="BenchDown"
target: "{{ labels.instance }}"
strategies:
  - name: mark
    action: bench.mark
  - name: never
    action: bench.mark
verify: {action: bench.ok, interval: 0.05s}  # after the step started: not on the clock
"""


class Mark(Action):
    """Records when it starts, then succeeds: the step the clock stops at."""

    name = "bench.mark"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        STARTED.append(time.perf_counter())
        return ActionResult(True, "marked")


class Ok(Action):
    """The verify: healthy at once, so a run ends recovered without waiting."""

    name = "bench.ok"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, "ok")


def build(root: Path, hosts: int, db_dir: Path | None = None,
          state_url: str | None = None) -> EngineContext:
    for folder in ("runbooks", "playbooks", "inventory", "home"):
        (root / folder).mkdir()
    (root / "runbooks" / "bench.yml").write_text(RUNBOOK)
    lines = ["all:", "  hosts:"]
    lines += [f"    h{i:05d}: {{ansible_connection: local}}" for i in range(hosts)]
    (root / "inventory" / "hosts.yml").write_text("\n".join(lines) + "\n")
    state = f"state_url: sqlite:///{db_dir / 'recovery.db'}\n" if db_dir else ""
    if state_url:
        state = f"state_url: '{state_url}'\n"
    (root / "recovery.yml").write_text(
        "home: home\nrunbooks: runbooks\nplaybooks: playbooks\ninventory: inventory/hosts.yml\n"
        + state)
    registry = default_registry()
    registry.register(Mark())
    registry.register(Ok())
    ctx = EngineContext(load_config(root / "recovery.yml", environ={}), registry=registry)
    ctx.runbooks  # noqa: B018 - load once, outside the clock
    ctx.inventory.get("h00000")  # parse the inventory (ansible) once, outside the clock
    return ctx


def one(ctx: EngineContext, host: str,
        profiler: cProfile.Profile | None = None) -> tuple[float, float]:
    """Milliseconds from alert in to first step started, and of that in open_incident."""
    STARTED.clear()
    if profiler:
        profiler.enable()
    COUNTING[0] = threading.get_ident()
    t0 = time.perf_counter()
    opened = open_incident(ctx, TriggerRequest(
        labels={"alertname": "BenchDown", "instance": f"{host}:9100"}, trigger="alert",
        fingerprint=host))
    t_open = time.perf_counter()
    assert opened.claimed, opened.refusal
    incident = advance(ctx, opened.incident.id)
    assert incident.state == IncidentState.RECOVERED, incident.reason
    return (STARTED[0] - t0) * 1000.0, (t_open - t0) * 1000.0


def stop_at_step_start(ctx: EngineContext, profiler: cProfile.Profile | None) -> None:
    """Profile and count round trips only up to the executor handing the action to its
    thread."""
    call: Callable = ctx.python.call

    def wrapped(*args, **kwargs):
        COUNTING[0] = None
        if profiler:
            profiler.disable()
        return call(*args, **kwargs)

    ctx.python.call = wrapped  # type: ignore[method-assign]


def count_round_trips() -> None:
    """Count what redis-py sends from the deciding thread while the clock runs (every
    command, pipeline or transaction is sent whole, then its replies read)."""
    from redis.connection import Connection

    send = Connection.send_packed_command

    def counted(self, command, check_health=True):
        if COUNTING[0] == threading.get_ident():
            TRIPS[0] += 1
        return send(self, command, check_health)

    Connection.send_packed_command = counted  # type: ignore[method-assign]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def measure(root: Path, n: int, warmup: int, profile: bool, db_dir: Path | None = None,
            state_url: str | None = None,
            ) -> tuple[list[float], list[float], float, float, pstats.Stats | None]:
    started = time.perf_counter()
    ctx = build(root, n + warmup, db_dir, state_url)
    setup = time.perf_counter() - started
    for i in range(warmup):
        one(ctx, f"h{i:05d}")
    profiler = cProfile.Profile() if profile else None
    stop_at_step_start(ctx, profiler)
    TRIPS[0] = 0
    totals, opens = [], []
    for i in range(warmup, warmup + n):
        total, opening = one(ctx, f"h{i:05d}", profiler)
        totals.append(total)
        opens.append(opening)
    ctx.store.close()
    trips = TRIPS[0] / n
    return totals, opens, setup, trips, pstats.Stats(profiler) if profiler else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 incidents")
    parser.add_argument("-n", type=int, default=2000, help="incidents measured per home")
    parser.add_argument("--profile", action="store_true",
                        help="print the top cProfile entries up to the step start")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"],
                        choices=["sqlite", "redis"],
                        help="redis: its own redis-server on a free port, AOF on")
    args = parser.parse_args()
    n = 100 if args.quick else args.n
    warmup = 20 if args.quick else 100

    # (label, where the home is, where the database is): the last two rows split the
    # disk's cost between the store and the artifacts written before a step starts.
    # ("redis" as the database's place: the store is a redis-server of its own.)
    homes: list[tuple[str, str | None, str | None]] = []
    shm = os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
    if "sqlite" in args.backends:
        homes.append(("disk", None, None))
        if shm:
            homes += [("tmpfs", "/dev/shm", "/dev/shm"),
                      ("db disk, artifacts tmpfs", "/dev/shm", tempfile.gettempdir()),
                      ("db tmpfs, artifacts disk", None, "/dev/shm")]
    server = None
    if "redis" in args.backends:
        from tests.support.redis_servers import HAS_REDIS, RedisServer

        if HAS_REDIS:
            count_round_trips()
            server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-decision-redis-")),
                                 appendonly="yes").start()
            homes.append(("redis, artifacts disk", None, "redis"))
            if shm:
                homes.append(("redis, artifacts tmpfs", "/dev/shm", "redis"))
        else:
            print("  (no redis-server on PATH: the Redis rows are left out)")
    print(f"decision latency: alert in -> first python step started "
          f"({n} incidents per home, {warmup} warm-up)")
    print(f"  machine: {os.cpu_count()} cpu, python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}, temp dir {tempfile.gettempdir()}")
    print(f"  {'home':<25} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'mean':>8} "
          f"{'open p50':>9} {'open p99':>9} {'trips':>6}   target p99 < {TARGET_P99_MS:g} ms")
    profiles = []
    try:
        for label, where, db_where in homes:
            redis_url = None
            if db_where == "redis" and server is not None:
                redis_url, db_where = f"{server.url}?prefix=bench-{label[-5:].strip()}:", where
            with tempfile.TemporaryDirectory(prefix="bench-decision-", dir=where) as tmp, \
                    tempfile.TemporaryDirectory(prefix="bench-db-", dir=db_where) as db_tmp:
                db_dir = Path(db_tmp) if db_where is not None and db_where != where else None
                totals, opens, _, trips, stats = measure(Path(tmp), n, warmup, args.profile,
                                                         db_dir, redis_url)
            p99 = percentile(totals, 99)
            print(f"  {label:<25} {percentile(totals, 50):7.2f}ms {percentile(totals, 90):7.2f}ms "
                  f"{p99:7.2f}ms {max(totals):7.2f}ms {statistics.fmean(totals):7.2f}ms "
                  f"{percentile(opens, 50):8.2f}ms {percentile(opens, 99):8.2f}ms "
                  f"{f'{trips:.1f}' if redis_url else '-':>6}   "
                  f"{'MET' if p99 < TARGET_P99_MS else 'MISSED'}")
            if stats:
                profiles.append((label, stats))
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.folder, ignore_errors=True)
    for label, stats in profiles:
        for key, count in (("tottime", 15), ("cumulative", 25)):
            out = io.StringIO()
            stats.stream = out
            stats.sort_stats(key).print_stats(count)
            print(f"--- profile up to the step start, home on {label}, by {key} ---")
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
