"""History over 100,000 runs: the query behind ``recovery history --component X --last 24h``
(target: < 50 ms), and the whole CLI call.

A fresh SQLite store (the engine's own schema, made by ``SQLiteStore``) under a temporary
RECOVERY_HOME is seeded with N runs by ``executemany`` into the ``runs`` table (``add_run``
commits once per run, which would spend the time budget on seeding). Four components,
50 targets, realistic statuses. Two shapes:

* spread: the runs span 30 days, so a component's last 24 h holds ~800 runs;
* storm:  all runs fall in the last 24 h, so the filter keeps ~25,000 and the sort and
          LIMIT do the work.

For each, ``store.query_runs(component=..., since=now-24h, limit=100)`` is timed over 200
repetitions (p50/p99), then ``recovery history --component X --last 24h --json`` runs as
a subprocess 5 times (mean), next to a bare interpreter start for scale. Last, the mean
time of one metrics scrape (``engine.reporting.metrics.render_text``) over the same store.

Then the same on Redis (``--backends``: both by default): a ``redis-server`` of its own on
a free loopback port, AOF on, the same runs written under a fresh key prefix per shape
with the records and indexes the run index's own writes give them (``import_state``, as
``recovery store migrate`` writes them, pipelined).

    .venv/bin/python bench/history.py [--quick] [-n 100000] [--backends sqlite redis]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests/support starts the server
    sys.path.insert(0, str(ROOT))

from engine.store.sqlite import SQLiteStore  # noqa: E402

TARGET_P99_MS = 50.0
COMPONENTS = ("redis", "chromadb", "openwebui", "system")
STRATEGIES = {"redis": ("reconnect", "flush_corrupted", "restart_container"),
              "chromadb": ("query_retry", "collection_reload", "snapshot_rollback"),
              "openwebui": ("token_refresh", "model_failover", "graceful_degradation"),
              "system": ("disk_cleanup", "memory_gc", "process_restart")}
STATUSES = (("succeeded", 60), ("failed", 15), ("deferred", 10), ("refused", 5),
            ("skipped", 5), ("canceled", 3), ("pending_approval", 2))
REPO = Path(__file__).resolve().parent.parent


def runs(n: int, span: float, now: float) -> list[dict[str, Any]]:
    """``n`` runs started within ``span`` seconds before ``now``, as the stores keep them
    (the RunRecord's fields and what the run index keeps beside them)."""
    rng = random.Random(42)
    statuses = [s for s, w in STATUSES for _ in range(w)]
    made = []
    for _ in range(n):
        component = rng.choice(COMPONENTS)
        started = now - rng.random() * span
        status = rng.choice(statuses)
        made.append({
            "id": f"run-{int(started * 1000):012x}-{secrets.token_hex(4)}",
            "component": component, "runbook": component,
            "strategy": rng.choice(STRATEGIES[component]),
            "target": f"host-{rng.randrange(50):02d}", "status": status,
            "trigger": rng.choice(("alert", "alert", "alert", "manual", "probe")),
            "incident_id": f"inc-{secrets.token_hex(6)}",
            "attempt_id": None if status in ("deferred", "refused", "pending_approval")
            else f"att-{secrets.token_hex(6)}",
            "kind": "action", "started_at": started,
            "finished_at": None if status == "pending_approval" else started + rng.random() * 30,
            "check_mode": False, "fingerprint": secrets.token_hex(8),
            "requested_by": "alertmanager", "approved_by": None, "forced": False,
            "reason": f"{status}: benchmark row", "runbook_sha256": "0" * 64,
            "playbook_sha256": None, "gate": None, "count": 1, "fingerprints": [],
            "hosts": [] if status in ("deferred", "refused", "pending_approval") else
            [{"host": f"host-{rng.randrange(50):02d}", "outcome": "ok", "reason": ""}],
            "heartbeat_at": started, "claimed_by": None, "claimed_until": None,
            "refusal_key": None, "members": [],
        })
    return made


def seed(store_path: Path, made: list[dict[str, Any]]) -> float:
    """Insert the runs ``made`` into a fresh SQLite store; seconds taken."""
    store = SQLiteStore(store_path)  # creates the schema and indexes
    store.close()
    import sqlite3

    db = sqlite3.connect(store_path, isolation_level=None)
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]

    def column(run: dict[str, Any], name: str) -> Any:
        value = run.get(name)
        return json.dumps(value) if isinstance(value, list) else value

    rows = [tuple(column(run, c) for c in columns) for run in made]
    marks = ", ".join("?" for _ in columns)
    t0 = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks})", rows)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - t0


def seed_redis(url: str, made: list[dict[str, Any]]) -> float:
    """Write the runs ``made`` into the Redis store at ``url`` with the records and
    indexes the run index's own writes give them (``import_state``, as ``recovery store
    migrate`` does, pipelined); seconds taken."""
    from engine.store.redis import RedisStore
    from engine.store.state_snapshot import StateSnapshot

    store = RedisStore(url)
    t0 = time.perf_counter()
    store.import_state(StateSnapshot(runs=made))
    store.close()
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def time_query(url: str, reps: int, now: float) -> tuple[list[float], int, int]:
    from engine.store import open_store

    store = open_store(url)
    since = now - 86400
    timings = []
    for i in range(reps):
        component = COMPONENTS[i % len(COMPONENTS)]
        t0 = time.perf_counter()
        store.query_runs(component=component, since=since, limit=100)
        timings.append((time.perf_counter() - t0) * 1000)
    got = len(store.query_runs(component=COMPONENTS[0], since=since, limit=100))
    matching = len(store.query_runs(component=COMPONENTS[0], since=since, limit=None))
    store.close()
    return timings, got, matching


def time_cli(home: Path, reps: int, state_url: str | None) -> tuple[str, float | None]:
    """Mean seconds of the CLI call, or a reason it could not run."""
    recovery = Path(sys.executable).parent / "recovery"
    command = ([str(recovery)] if recovery.exists() else [sys.executable, "-m", "engine"])
    config = home.parent / "recovery.yml"
    config.write_text(f"home: {home}\nrunbooks: {REPO / 'runbooks'}\n"
                      f"playbooks: {REPO / 'playbooks'}\ninventory: {REPO / 'inventory'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
    env["RECOVERY_CONFIG"] = str(config)
    if state_url:
        env["RECOVERY_STATE_URL"] = state_url
    argv = [*command, "history", "--component", COMPONENTS[0], "--last", "24h", "--json"]
    timings = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        timings.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            return f"n/a ({why[:120]})", None
    return "ok", statistics.fmean(timings)


def time_scrape(home: Path, reps: int, state_url: str | None) -> float:
    """Mean seconds of one metrics scrape (``render_text``) over this store."""
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.reporting.metrics import render_text

    environ = {"RECOVERY_STATE_URL": state_url} if state_url else {}
    ctx = EngineContext(load_config(home.parent / "recovery.yml", environ=environ))
    render_text(ctx)  # runbooks loaded once
    timings = []
    for _ in range(reps):
        t0 = time.perf_counter()
        text = render_text(ctx)
        timings.append(time.perf_counter() - t0)
    assert "infra_recovery_store_up 1.0" in text
    ctx.store.close()
    return statistics.fmean(timings)


def bare_python(reps: int) -> float:
    timings = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        timings.append(time.perf_counter() - t0)
    return statistics.fmean(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 runs")
    parser.add_argument("-n", type=int, default=100_000, help="runs seeded")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "redis"],
                        choices=["sqlite", "redis"])
    args = parser.parse_args()
    n = 10_000 if args.quick else args.n
    reps = 50 if args.quick else 200
    cli_reps = 2 if args.quick else 5

    print(f"history query over {n:,} runs: store.query_runs(component, since=24h ago, "
          f"limit=100), {reps} repetitions; CLI mean of {cli_reps}")
    print(f"  machine: {os.cpu_count()} cpu, load average {os.getloadavg()[0]:.2f}, "
          f"temp dir {tempfile.gettempdir()}")
    print(f"  {'store':<6} {'shape':<7} {'seed':>6} {'in 24h':>7} {'p50':>8} {'p99':>8} "
          f"{'max':>8}   target p99 < {TARGET_P99_MS:g} ms   {'CLI history --json':>18} "
          f"{'scrape':>8}")
    startup = bare_python(cli_reps)
    server = None
    root = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        if "redis" in args.backends:
            from tests.support.redis_servers import HAS_REDIS, RedisServer

            if HAS_REDIS:   # its own server, AOF on as the store requires
                server = RedisServer(root / "redis", appendonly="yes").start()
            else:
                print("  redis  (no redis-server on PATH: skipped)")
        for backend in args.backends:
            if backend == "redis" and server is None:
                continue
            for shape, span in (("spread", 30 * 86400.0), ("storm", 86400.0 - 60)):
                home = root / f"{backend}-{shape}" / "home"
                home.mkdir(parents=True, mode=0o700)
                now = time.time()
                made = runs(n, span, now)
                if backend == "sqlite":
                    state_url = None
                    url = f"sqlite:///{home / 'recovery.db'}"
                    seeded = seed(home / "recovery.db", made)
                else:
                    state_url = url = f"{server.url}?prefix=bench-{uuid.uuid4().hex}:"
                    seeded = seed_redis(url, made)
                del made
                timings, got, matching = time_query(url, reps, now)
                assert got == min(100, matching), (got, matching)
                status, cli = time_cli(home, cli_reps, state_url)
                scrape = time_scrape(home, 5 if args.quick else 20, state_url)
                p99 = percentile(timings, 99)
                cli_text = f"{cli * 1000:8.0f}ms" if cli is not None else status
                print(f"  {backend:<6} {shape:<7} {seeded:5.1f}s {matching:7,} "
                      f"{percentile(timings, 50):7.2f}ms {p99:7.2f}ms {max(timings):7.2f}ms   "
                      f"{'MET' if p99 < TARGET_P99_MS else 'MISSED':<23}   {cli_text:>18} "
                      f"{scrape * 1000:6.1f}ms", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"  (a bare `python -c pass` takes {startup * 1000:.0f} ms here; scrape: one "
          "metrics.render_text over the same store, shipped runbooks; redis: its own "
          "redis-server on a free loopback port, AOF on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
