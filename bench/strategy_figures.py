"""Per-strategy figures over 100,000 runs: ``recovery status --by-strategy`` (and
``GET /api/v1/strategies``) compute them with
``engine.reporting.strategies.strategy_figures``, whose store reads (``strategy_counts``,
``success_times``, ``last_failures``) scan the ``runs_figures`` covering index and
reduce in SQL.

The store is seeded as ``bench/history.py`` seeds it (100,000 runs, four components,
three strategies each, realistic statuses, ``executemany``), in two shapes: *spread*
(30 days; a 24 h window holds ~3,300 runs) and *storm* (every run in the last 24 h).
For each, the figures for a 24 h window and for a 30 d window (every run) are timed
(p50 and max of the repetitions); the query plan of the counts is printed.

    .venv/bin/python bench/strategy_figures.py [--quick] [-n 100000]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/history.py: the seed

from history import seed  # noqa: E402

from engine.reporting.strategies import strategy_figures  # noqa: E402
from engine.store.sqlite import SQLiteStore  # noqa: E402

DAY = 86400.0


def timed(store_path: Path, window: float, reps: int, now: float) -> tuple[float, float, int]:
    """p50 and max milliseconds of ``strategy_figures`` over ``window``; attempts counted."""
    store = SQLiteStore(store_path)
    timings, attempts = [], 0
    try:
        for _ in range(reps):
            t0 = time.perf_counter()
            rows = strategy_figures(store, [], window, now)
            timings.append((time.perf_counter() - t0) * 1000)
            attempts = sum(r["attempts"] for r in rows)
    finally:
        store.close()
    return statistics.median(timings), max(timings), attempts


def plan(store_path: Path) -> str:
    db = sqlite3.connect(store_path)
    try:
        rows = db.execute(
            "EXPLAIN QUERY PLAN SELECT component, strategy, sum(status = 'succeeded') "
            "FROM runs INDEXED BY runs_figures "
            "WHERE status IN ('succeeded', 'failed', 'interrupted', 'partial') "
            "AND coalesce(check_mode, 0) = 0 AND started_at BETWEEN 0 AND 1 "
            "GROUP BY component, strategy").fetchall()
    finally:
        db.close()
    return "; ".join(r[-1] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="runs to seed")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 3 repetitions")
    args = parser.parse_args()
    n, reps = (10_000, 3) if args.quick else (args.n, 10)
    now = time.time()
    print(f"{n:,} runs; strategy_figures over a window, p50 / max of {reps} repetitions")
    for shape, span in (("spread", 30 * DAY), ("storm", DAY)):
        home = Path(tempfile.mkdtemp(prefix="bench-figures-"))
        try:
            path = home / "recovery.db"
            seed(path, n, span, now)
            if shape == "spread":
                print(f"  plan: {plan(path)}")
                print(f"  {'shape':8} {'window':6} {'attempts':>9} {'p50':>10} {'max':>10}")
            for w, label in ((DAY, "24h"), (30 * DAY, "30d")):
                p50, top, attempts = timed(path, w, reps, now)
                print(f"  {shape:8} {label:6} {attempts:>9,} {p50:>8.1f}ms {top:>8.1f}ms")
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
