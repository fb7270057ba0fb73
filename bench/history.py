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

    .venv/bin/python bench/history.py [--quick] [-n 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.store.sqlite import SQLiteStore

TARGET_P99_MS = 50.0
COMPONENTS = ("redis", "chromadb", "openwebui", "system")
STRATEGIES = {"redis": ("reconnect", "flush_corrupted", "restart_container"),
              "chromadb": ("query_retry", "collection_reload", "snapshot_rollback"),
              "openwebui": ("token_refresh", "model_failover", "graceful_degradation"),
              "system": ("disk_cleanup", "memory_gc", "process_restart")}
STATUSES = (("succeeded", 60), ("failed", 15), ("deferred", 10), ("refused", 5),
            ("skipped", 5), ("canceled", 3), ("pending_approval", 2))
REPO = Path(__file__).resolve().parent.parent


def seed(store_path: Path, n: int, span: float, now: float) -> float:
    """Insert ``n`` runs started within ``span`` seconds before ``now``; seconds taken."""
    rng = random.Random(42)
    store = SQLiteStore(store_path)  # creates the schema and indexes
    store.close()
    import sqlite3

    db = sqlite3.connect(store_path, isolation_level=None)
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    statuses = [s for s, w in STATUSES for _ in range(w)]
    rows = []
    for _ in range(n):
        component = rng.choice(COMPONENTS)
        started = now - rng.random() * span
        status = rng.choice(statuses)
        run = {
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
            "check_mode": 0, "fingerprint": secrets.token_hex(8), "requested_by": "alertmanager",
            "approved_by": None, "forced": 0, "reason": f"{status}: benchmark row",
            "runbook_sha256": "0" * 64, "playbook_sha256": None, "heartbeat_at": started,
            "claimed_by": None, "claimed_until": None,
        }
        rows.append(tuple(run.get(c) for c in columns))
    marks = ", ".join("?" for _ in columns)
    t0 = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO runs ({', '.join(columns)}) VALUES ({marks})", rows)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def time_query(store_path: Path, reps: int, now: float) -> tuple[list[float], int, int]:
    store = SQLiteStore(store_path)
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


def time_cli(home: Path, reps: int) -> tuple[str, float | None]:
    """Mean seconds of the CLI call, or a reason it could not run."""
    recovery = Path(sys.executable).parent / "recovery"
    command = ([str(recovery)] if recovery.exists() else [sys.executable, "-m", "engine"])
    config = home.parent / "recovery.yml"
    config.write_text(f"home: {home}\nrunbooks: {REPO / 'runbooks'}\n"
                      f"playbooks: {REPO / 'playbooks'}\ninventory: {REPO / 'inventory'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
    env["RECOVERY_CONFIG"] = str(config)
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


def time_scrape(home: Path, reps: int) -> float:
    """Mean seconds of one metrics scrape (``render_text``) over this store."""
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.reporting.metrics import render_text

    ctx = EngineContext(load_config(home.parent / "recovery.yml", environ={}))
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
    args = parser.parse_args()
    n = 10_000 if args.quick else args.n
    reps = 50 if args.quick else 200
    cli_reps = 2 if args.quick else 5

    print(f"history query over {n:,} runs: store.query_runs(component, since=24h ago, "
          f"limit=100), {reps} repetitions; CLI mean of {cli_reps}")
    print(f"  machine: {os.cpu_count()} cpu, load average {os.getloadavg()[0]:.2f}, "
          f"temp dir {tempfile.gettempdir()}")
    print(f"  {'shape':<7} {'seed':>6} {'in 24h':>7} {'p50':>8} {'p99':>8} {'max':>8}   "
          f"target p99 < {TARGET_P99_MS:g} ms   {'CLI history --json':>18} {'scrape':>8}")
    startup = bare_python(cli_reps)
    for shape, span in (("spread", 30 * 86400.0), ("storm", 86400.0 - 60)):
        root = Path(tempfile.mkdtemp(prefix="bench-history-"))
        try:
            home = root / "home"
            home.mkdir(mode=0o700)
            now = time.time()
            seeded = seed(home / "recovery.db", n, span, now)
            timings, got, matching = time_query(home / "recovery.db", reps, now)
            assert got == min(100, matching), (got, matching)
            status, cli = time_cli(home, cli_reps)
            scrape = time_scrape(home, 5 if args.quick else 20)
            p99 = percentile(timings, 99)
            cli_text = f"{cli * 1000:8.0f}ms" if cli is not None else status
            print(f"  {shape:<7} {seeded:5.1f}s {matching:7,} {percentile(timings, 50):7.2f}ms "
                  f"{p99:7.2f}ms {max(timings):7.2f}ms   "
                  f"{'MET' if p99 < TARGET_P99_MS else 'MISSED':<23}   {cli_text:>18} "
                  f"{scrape * 1000:6.1f}ms")
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"  (a bare `python -c pass` takes {startup * 1000:.0f} ms here; scrape: one "
          "metrics.render_text over the same store, shipped runbooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
