"""Scale-out: intake alerts/s and p99 acknowledgement with 1, 2 and 3 ``recovery serve``
replicas on one Redis store, against 1 on SQLite, and the memory of each replica.

Each replica is a real ``recovery serve --workers 1 --http-workers H`` with a
RECOVERY_HOME of its own (its own webhook token, artifacts dir and RECOVERY_REPLICA
name); on Redis they share one ``redis-server`` started here on a free loopback port,
AOF on (``appendfsync everysec``, ``maxmemory-policy noeviction``: the settings the store
requires), each setup under a key prefix of its own. The only runbook matches nothing
the load sends, so the engine workers only drain and acknowledge the intake. The load is
bench/intake.py's: distinct single-alert (or ``--sizes``) notifications, closed loop,
keep-alive connections, from separate generator processes, each generator sending to one
replica (generator i to replica i mod N), the connections spread evenly, as an HA
Alertmanager pair spread over the replicas would. Latency is the client's, from before
the post to the parsed 200; a 200 must say every alert was accepted.

After each cell the bench waits (bounded) for the intake to be drained. Memory is the
PSS of each replica's whole process tree (``recovery serve`` parent, gunicorn master,
http workers, engine worker), summed from /proc/PID/smaps_rollup after its last cell:
PSS shares the pages the processes have in common (the forked http workers) fairly
rather than counting them in each, as RSS would.

    .venv/bin/python bench/replicas.py [--seconds 5] [--conns 16] [--sizes 1]
                                       [--http-workers 2] [--replicas 1 2 3] [--procs 3]

Quick by default (5 s measured per cell, 16 connections, single-alert posts, about 3
minutes in all); every wait is bounded and all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, Path(__file__).resolve().parent):   # tests/support; bench/intake.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import intake  # noqa: E402
from intake import TARGET_P99_MS, TARGET_SINGLE, WARMUP, generator, percentile  # noqa: E402

from engine.store import open_store  # noqa: E402
from tests.support.redis_servers import HAS_REDIS, RedisServer  # noqa: E402
from tests.support.service import Served, free_port, pss_kb, service_env  # noqa: E402

START_TIMEOUT = 90.0     # a replica's start on a loaded machine
DRAIN_TIMEOUT = 120.0    # per cell: the engine workers empty the intake
STOP_TIMEOUT = 45.0
MAX_SECONDS = 120.0
SPAWN_MARGIN = 10.0      # s from spawning the generators to their first request


def build(root: Path, state_url: str | None) -> Path:
    """The configuration every replica of a setup shares: bench/intake.py's (its runbook
    that matches nothing, one host), on ``state_url`` (None: SQLite in each home)."""
    root.mkdir(parents=True)
    config = intake.build(root, "NORMAL")
    if state_url:
        with config.open("a") as fh:
            fh.write(f"state_url: '{state_url}'\n")
    return config


def tree_pss_mb(served: Served) -> float:
    """The PSS of the replica's whole process tree, MB."""
    pids = {p.pid for procs in served.processes().values() for p in procs}
    return sum(pss_kb(pid) for pid in pids) / 1024.0


def run_cell(replicas: list[Served], depth: Any, size: int, conns: int, procs: int,
             seconds: float, cell: str) -> dict[str, Any]:
    """One measured window of load spread over ``replicas``; ``depth()`` is what the
    intake holds still."""
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    procs = max(len(replicas), min(procs, conns))
    shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    # The generators (spawned interpreters importing httpx) must be up before the clock
    # starts: on a loaded machine that takes seconds.
    begin = time.monotonic() + SPAWN_MARGIN
    measure_from, end = begin + WARMUP, begin + WARMUP + seconds
    gens = []
    for i in range(procs):
        target = replicas[i % len(replicas)]
        gens.append(mp.Process(target=generator, daemon=True, args=(
            target.url, target.token, size, cell, i, shares[i], begin, measure_from, end,
            results)))
    for g in gens:
        g.start()
    got = intake.collect(gens, results, end)
    for g in gens:
        g.join(10)
        if g.is_alive():
            g.kill()
            g.join(5)
    backlog = depth()
    t_drain = time.monotonic()
    while depth() and time.monotonic() - t_drain < DRAIN_TIMEOUT:
        time.sleep(0.2)
    drained, left = time.monotonic() - t_drain, depth()
    lat: list[float] = []
    errors: Counter = Counter()
    accepted = 0
    for r in got:
        a = array("d")
        a.frombytes(r["lat"])
        lat.extend(a)
        errors.update(r["errors"])
        accepted += r["accepted"]
    if len(got) < len(gens):
        errors["generator process lost"] += len(gens) - len(got)
    return {"alerts_s": len(lat) * size / seconds, "p50": percentile(lat, 50),
            "p99": percentile(lat, 99), "max": max(lat) if lat else float("nan"),
            "errors": sum(errors.values()), "error_kinds": dict(errors),
            "accepted": accepted, "backlog": backlog, "drained": drained, "left": left,
            "load": os.getloadavg()[0]}


def setup(root: Path, backend: str, n: int, server: RedisServer | None, http: int,
          sizes: list[int], conns: list[int], procs: int, seconds: float) -> bool:
    """Start ``n`` replicas on ``backend``, run every cell, print rows; False on errors."""
    url = f"{server.url}?prefix=bench-{uuid.uuid4().hex}:" if server else None
    base = root / f"{backend}-{n}"
    config = build(base, url)
    replicas = []
    for i in range(n):
        env = service_env(config)
        env["RECOVERY_REPLICA"] = f"replica-{i + 1}"
        # Its home made beforehand with artifacts/ and sets/: on one machine the set in
        # force that the first replica recorded is found in that replica's home, and a
        # later one's start-up pruning then looked in its own sets/, which it never made
        # (engine/runbooks/reload.py ``_prune``: a defect of replicas on one machine).
        for folder in ("artifacts", "sets"):
            (base / f"replica-{i + 1}" / "home" / folder).mkdir(parents=True, mode=0o700)
        (base / f"replica-{i + 1}" / "home").chmod(0o700)
        replicas.append(Served(env, base / f"replica-{i + 1}" / "home", free_port(),
                               "--workers", "1", "--http-workers", str(http), cwd=base))
    ok = True
    store = None
    try:
        t0 = time.monotonic()
        for r in replicas:      # one at a time: a loaded machine starts them slowly
            r.start().wait_ready(START_TIMEOUT)
        ready = time.monotonic() - t0
        store = open_store(url or f"sqlite:///{replicas[0].home / 'recovery.db'}")

        def depth() -> int:
            return store.intake_depth(time.time())[0]

        for size in sizes:
            for c in conns:
                cell = run_cell(replicas, depth, size, c, procs, seconds,
                                f"{backend[0]}{n}s{size}c{c}-{uuid.uuid4().hex[:6]}")
                mem = [tree_pss_mb(r) for r in replicas]
                met = cell["alerts_s"] >= TARGET_SINGLE and cell["p99"] < TARGET_P99_MS
                print(f"  {backend:<6} {n:>8} {size:>6} {c:>5} {cell['alerts_s']:>9,.0f} "
                      f"{cell['p50']:>6.1f}ms {cell['p99']:>6.1f}ms {cell['max']:>6.0f}ms "
                      f"{cell['errors']:>6} {cell['backlog']:>7,} {cell['drained']:>5.1f}s  "
                      f"{' '.join(f'{m:.0f}' for m in mem):>12} MB  {cell['load']:>5.1f}  "
                      f"{'MET' if met and not cell['errors'] else 'MISSED'}"
                      f"  (ready in {ready:.0f}s)", flush=True)
                if not cell["alerts_s"]:
                    print("         nothing measured: the generators started after the "
                          "window (a very loaded machine)")
                for kind, count in cell["error_kinds"].items():
                    print(f"         error: {count} x {kind}")
                if cell["left"]:
                    print(f"         intake NOT drained within {DRAIN_TIMEOUT:g}s: "
                          f"{cell['left']:,} left")
                ok = ok and not cell["errors"] and not cell["left"]
    finally:
        if store is not None:
            store.close()
        for r in replicas:
            r.terminate(STOP_TIMEOUT)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per cell")
    parser.add_argument("--conns", type=int, nargs="+", default=[16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--http-workers", type=int, default=2, help="per replica")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3],
                        help="replica counts on Redis (SQLite: always 1)")
    parser.add_argument("--procs", type=int, default=3, help="load-generator processes "
                        "(at least one per replica)")
    parser.add_argument("--no-sqlite", action="store_true", help="leave out the SQLite row")
    args = parser.parse_args()
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))
    if not HAS_REDIS:
        print("no redis-server on PATH: nothing to measure")
        return 2
    print("replicas: intake of 1, 2, 3 `recovery serve` replicas on one Redis store, "
          "against 1 on SQLite")
    print(f"  machine: {os.cpu_count()} cpu, python {platform.python_version()}, load "
          f"average {os.getloadavg()[0]:.2f} at start, temp dir {tempfile.gettempdir()}")
    print(f"  {WARMUP:g}s warm-up + {seconds:g}s measured per cell; each replica: "
          f"--workers 1 --http-workers {args.http_workers}; redis-server of its own, AOF on")
    print(f"  targets (one service): >= {TARGET_SINGLE:,.0f} alerts/s single-alert, "
          f"p99 < {TARGET_P99_MS:g} ms; 0 errors")
    print(f"  {'store':<6} {'replicas':>8} {'alerts':>6} {'conns':>5} {'alerts/s':>9} "
          f"{'p50':>8} {'p99':>8} {'max':>8} {'errors':>6} {'backlog':>7} {'drain':>6}  "
          f"{'PSS each':>12}     {'load':>5}")
    root = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    server = None
    ok = True
    try:
        if not args.no_sqlite:
            ok &= setup(root, "sqlite", 1, None, args.http_workers, args.sizes, args.conns,
                        args.procs, seconds)
        server = RedisServer(root / "redis", appendonly="yes").start()
        for n in args.replicas:
            ok &= setup(root, "redis", n, server, args.http_workers, args.sizes, args.conns,
                        args.procs, seconds)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print("  (PSS each: the whole process tree of each replica, MB, after its cells; "
          "load: the 1-minute load average after the cell)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
