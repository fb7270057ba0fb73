"""Intake of ``recovery serve`` as a ratio to the reference intake, both measured in one run.

Target (issue 16, docs/BENCHMARKS.md): the product's alerts/s at least 1.3 times the
reference's (bench/reference_intake.py: Flask, constant-time bearer check, per-alert dedup
key, one SQLite WAL transaction per request, gunicorn gthread 2 x 8), in single-alert and
in 20-alert notifications, at 8 connections. The ratio is the check: both servers face
the same load generator (bench/intake.py's: separate processes, one keep-alive httpx
client per connection, closed loop, every alert distinct, every answer checked) on the same
machine within minutes, so a loaded machine lowers both. The absolute figures, p99
acknowledgement, the CPU the HTTP server's processes spent a post ("us/post": what a
request costs, the least sensitive figure to a busy machine), the machine (cores, memory)
and the load average at each cell are printed beside it.

Both run for the whole bench: ``recovery serve`` with its defaults (2 http workers x 8
threads, 1 engine worker that drains the intake queue; a runbook that matches nothing) on a
temporary RECOVERY_HOME, and the reference. Cells alternate product, reference, per shape
and round, so drift in the machine's load falls on both; the ratio of each pair is shown,
then the median over ``--rounds``.

    .venv/bin/python bench/intake_ratio.py [--seconds 5] [--rounds 2] [--sizes 1 20]
                                           [--conns 8] [--procs 2] [--profile N] [--py-spy]

``--profile N`` also times both apps in this process (no server) and splits the
product's app time by part (cProfile); ``--py-spy`` records the http workers of both
servers during round 1 (``py-spy record --gil``) and splits their time by part, server
included.

About 1 minute by default (4 cells of 1 s warm-up + 5 s per round). Every loop is bounded
in count and time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: bench.* and tests.support.* by name
    sys.path.insert(0, str(ROOT))

from bench.intake import START_TIMEOUT, STOP_TIMEOUT, WARMUP, body, build, run_cell  # noqa: E402
from bench.reference_intake import (  # noqa: E402
    HTTP_THREADS,
    HTTP_WORKERS,
    SCHEMA,
    Reference,
)
from bench.reference_intake import create_app as create_reference  # noqa: E402
from tests.support.service import Served, Store, free_port, service_env  # noqa: E402

TARGET_RATIO = 1.3          # product alerts/s over the reference's, each shape
TARGET_P99_MS = 20.0


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cpu, {memory:.1f} GiB memory, python "
            f"{platform.python_version()}, sqlite {sqlite3.sqlite_version}")


# -- where an app's time goes: both apps in this process, Flask's test client, no server --------
def _apps(tmp: Path):
    """The product's app (a real SQLite store on ``tmp``) and the reference's, each with the
    headers that authenticate a post."""
    from engine.config import load_config
    from webhook import create_app

    root = tmp / "app"
    root.mkdir()
    config = build(root, "NORMAL")
    os.environ["RECOVERY_CONFIG"] = str(config)
    os.environ["RECOVERY_HOME"] = str(root / "home")
    os.environ["RECOVERY_WEBHOOK_TOKEN"] = token = "bench-webhook-token-0123456789"
    product = create_app(load_config(config))
    os.environ["REFERENCE_DB"] = str(tmp / "reference.sqlite")
    os.environ["REFERENCE_TOKEN"] = token
    with sqlite3.connect(tmp / "reference.sqlite") as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
    reference = create_reference()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return product, reference, headers


def _cumulative(stats: pstats.Stats, where: str, name: str, caller: str | None = None) -> float:
    """Seconds in ``name`` of a file ending in ``where`` and what it called (only the calls
    made by a function named ``caller``, when given)."""
    total = 0.0
    for (path, _, func), (_, _, _, cum, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func != name or not path.endswith(where):
            continue
        if caller is None:
            total += cum
        else:
            total += sum(c[3] for key, c in callers.items() if key[2] == caller)
    return total


def profile_apps(n: int) -> None:
    """Microseconds a post in each app, in this process (no HTTP server: the test client
    stands in for it), then the product's under cProfile, split by part."""
    with tempfile.TemporaryDirectory(prefix="bench-intake-apps-") as tmp:
        product, reference, headers = _apps(Path(tmp))
        for size in (1, 20):
            count = max(20, n // size)
            plain: dict[str, float] = {}
            for name, app in (("product", product), ("reference", reference)):
                client = app.test_client()
                bodies = [body(size, f"{name}{size}", 0, 0, i) for i in range(count + 1)]
                client.post("/api/v1/alerts", data=bodies[0], headers=headers)
                t0 = time.perf_counter()
                for b in bodies[1:]:
                    r = client.post("/api/v1/alerts", data=b, headers=headers)
                    assert r.status_code == 200, r.data
                plain[name] = (time.perf_counter() - t0) / count * 1e6
            client = product.test_client()
            bodies = [body(size, f"prof{size}", 0, 0, i) for i in range(count)]
            profiler = cProfile.Profile()
            profiler.enable()
            for b in bodies:
                client.post("/api/v1/alerts", data=b, headers=headers)
            profiler.disable()
            stats = pstats.Stats(profiler)
            whole = _cumulative(stats, "flask/testing.py", "open")
            app = _cumulative(stats, "flask/app.py", "wsgi_app")
            parts = {
                "auth (refusal: token hash, compare)": _cumulative(stats, "webhook/auth.py",
                                                                   "refusal"),
                "metrics (before/after hooks)": (
                    _cumulative(stats, "webhook/request_metrics.py", "started")
                    + _cumulative(stats, "webhook/request_metrics.py", "answered")),
                "body read": _cumulative(stats, "webhook/alerts.py", "read_body"),
                "JSON parse (json.loads)": _cumulative(stats, "json/__init__.py", "loads",
                                                       caller="parse_notification"),
                "validation (parse_notification)": (
                    _cumulative(stats, "webhook/notification.py", "parse_notification")
                    - _cumulative(stats, "json/__init__.py", "loads",
                                  caller="parse_notification")),
                "payloads (alert.to_payload)": _cumulative(stats, "engine/alerts/alert.py",
                                                           "to_payload"),
                "dedup + journal (enqueue_alerts)": _cumulative(
                    stats, "intake_journal.py", "enqueue_alerts"),
                "answer (jsonify)": _cumulative(stats, "flask/json/__init__.py", "jsonify",
                                                caller="receive_alerts"),
                "session cookie (open/save)": (
                    _cumulative(stats, "flask/sessions.py", "open_session")
                    + _cumulative(stats, "flask/sessions.py", "save_session")),
            }
            parts["Flask/werkzeug (the rest of wsgi_app)"] = app - sum(parts.values())
            print(f"\n  {size}-alert posts, {count} in this process: product "
                  f"{plain['product']:.0f} us a post, reference {plain['reference']:.0f} us "
                  f"(test client included: it stands in for the server); load average "
                  f"{os.getloadavg()[0]:.2f}")
            print(f"  product under cProfile ({whole / count * 1e6:.0f} us a post, of which "
                  f"the app {app / whole * 100:.0f}%, the test client the rest); the app's "
                  "time by part:")
            for part, seconds in parts.items():
                print(f"    {part:<40} {seconds / app * 100:5.1f}%  "
                      f"{seconds / count * 1e6:6.0f} us (profiled)")


# -- where a running server's time goes: py-spy on every http worker during a cell ------------
# Each stack is put in the part of its innermost frame that names one (leaf first).
SPY_PARTS = (
    ("metrics", ("webhook/request_metrics.py", "prometheus_client/")),
    ("logging (gunicorn's access log)", ("logging/__init__.py",)),
    ("dedup + journal", ("engine/store/", "sqlite3")),
    ("JSON parse", ("json/decoder.py", "json/__init__.py")),
    ("validation", ("webhook/notification.py", "engine/alerts/")),
    ("auth", ("webhook/auth.py", "engine/security/")),
    ("view (read, answer)", ("webhook/alerts.py", "reference_intake.py")),
    ("Flask/werkzeug", ("flask/", "werkzeug/", "itsdangerous/")),
    ("server (gunicorn gthread)", ("gunicorn/", "concurrent/futures", "selectors.py",
                                   "threading.py")),
)


def py_spy() -> str | None:
    """py-spy beside this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


class Spies:
    """``py-spy record --gil`` of ``pids`` for ``seconds``, from ``delay`` seconds on (the
    cell's measured window), each to a file of folded stacks."""

    def __init__(self, folder: Path, pids: list[int], delay: float, seconds: float) -> None:
        self.files = [folder / f"spy-{pid}.txt" for pid in pids]
        self.procs: list[subprocess.Popen] = []
        self.seconds = seconds
        self.thread = threading.Thread(target=self._start, args=(pids, delay), daemon=True)
        self.thread.start()

    def _start(self, pids: list[int], delay: float) -> None:
        time.sleep(delay)
        for pid, out in zip(pids, self.files, strict=True):
            self.procs.append(subprocess.Popen(
                [py_spy() or "py-spy", "record", "--pid", str(pid), "--gil", "--rate", "200",
                 "--duration", str(max(1, int(self.seconds))), "--format", "raw",
                 "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def parts(self) -> Counter:
        """Samples by part, once every recorder has finished (bounded)."""
        self.thread.join(30)
        for proc in self.procs:
            try:
                proc.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
        found: Counter = Counter()
        for path in self.files:
            if not path.exists():
                continue
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                found[_part(stack.split(";"))] += int(count)
        return found


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, marks in SPY_PARTS:
            if any(mark in frame for mark in marks):
                if part == "JSON parse" and any("request_metrics" in f for f in frames):
                    return "metrics"
                return part
    return "other"


def print_spied(name: str, size: int, found: Counter) -> None:
    total = sum(found.values())
    if not total:
        print(f"  {name}, {size}-alert posts: py-spy recorded nothing")
        return
    shares = ", ".join(f"{part} {n / total * 100:.1f}%" for part, n in found.most_common())
    print(f"  {name}, {size}-alert posts ({total} samples holding the GIL): {shares}")


def http_cpu_per_post(c: dict) -> float:
    """CPU microseconds the HTTP server's processes (gunicorn master and workers) spent a
    post answered: the cost of a request on this machine, whatever else runs on it."""
    seconds = c["cpu"].get("http", 0.0) + c["cpu"].get("master", 0.0)
    return seconds / max(c["req_s"] * c["window"], 1e-9) * 1e6


def row(name: str, c: dict) -> str:
    cores = sum(c["cpu"].values()) / c["window"]
    gen = c["gen_cpu"] / c["window"]
    return (f"  {name:<9} {c['size']:>6} {c['conns']:>5} {c['alerts_s']:>9,.0f} "
            f"{c['req_s']:>8,.0f} {c['p50']:>5.1f}ms {c['p99']:>6.1f}ms {c['errors']:>6} "
            f"{cores:>6.2f}c {http_cpu_per_post(c):>7,.0f} {gen:>5.2f}c {c['load']:>5.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per cell")
    parser.add_argument("--rounds", type=int, default=2, help="product/reference pairs a shape")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="also time both apps in this process (N single-alert posts, "
                             "N/20 of 20) and split the product's time by part (cProfile)")
    parser.add_argument("--py-spy", action="store_true",
                        help="also py-spy the http workers of both servers during round 1 "
                             "and say where their time goes (py-spy must be installed)")
    args = parser.parse_args()
    seconds = max(1.0, min(args.seconds, 120.0))
    rounds = max(1, min(args.rounds, 20))
    print("intake ratio: recovery serve against the reference intake, same run, same load")
    print(f"  machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"  both gunicorn gthread {HTTP_WORKERS} x {HTTP_THREADS}; {args.conns} connections "
          f"from {args.procs} generator processes; 1 s warm-up + {seconds:g} s a cell, "
          f"{rounds} round(s); target: product >= {TARGET_RATIO:g}x the reference, "
          f"p99 < {TARGET_P99_MS:g} ms")
    pairs: dict[int, list[tuple[dict, dict]]] = {size: [] for size in args.sizes}
    stalled = 0                 # pairs left out: a cell measured no answer at all
    spied: dict[tuple[str, int], Counter] = {}
    if args.py_spy and not py_spy():
        parser.error("--py-spy: py-spy is not installed (pip install py-spy)")

    def spying(server, round_: int, tmp: str) -> Spies | None:
        """Recorders on the http workers for the measured window of round 1's cells."""
        if not args.py_spy or round_:
            return None
        pids = [p.pid for p in server.processes()["http"]]
        return Spies(Path(tmp), pids, 2.0 + WARMUP + 0.2, seconds - 0.5)
    with tempfile.TemporaryDirectory(prefix="bench-intake-ratio-") as tmp:
        root = Path(tmp) / "product"
        root.mkdir()
        config = build(root, "NORMAL")
        product = Served(service_env(config, root), root / "home", free_port(),
                         "--workers", "1", cwd=root)
        reference = Reference(Path(tmp))
        try:
            product.start().wait_ready(START_TIMEOUT)
            reference.start()
            store = Store(product.home)
            print(f"\n  {'server':<9} {'alerts':>6} {'conns':>5} {'alerts/s':>9} {'posts/s':>8} "
                  f"{'p50':>7} {'p99':>8} {'errors':>6} {'server':>7} {'us/post':>7} {'gen':>6} "
                  f"{'load1':>5}"
                  "   ratio")
            for n in range(rounds):
                for size in args.sizes:
                    spy = spying(product, n, tmp)
                    mine = run_cell(product, store, size, args.conns, args.procs, seconds,
                                    f"p{n}s{size}")
                    print(row("product", mine), flush=True)
                    if spy:
                        spied[("product", size)] = spy.parts()
                    spy = spying(reference, n, tmp)
                    ref = run_cell(reference, reference, size, args.conns, args.procs,
                                   seconds, f"r{n}s{size}")
                    if spy:
                        spied[("reference", size)] = spy.parts()
                    valid = mine["alerts_s"] > 0 and ref["alerts_s"] > 0
                    shown = (f"{mine['alerts_s'] / ref['alerts_s']:.2f}x" if valid else
                             "n/a: a cell answered nothing in its window (machine stalled)")
                    print(row("reference", ref) + f"   {shown}", flush=True)
                    for c in (mine, ref):
                        for kind, count in c["error_kinds"].items():
                            print(f"            error: {count} x {kind}")
                    if valid:
                        pairs[size].append((mine, ref))
                    else:
                        stalled += 1
            store.close()
        finally:
            reference.stop()
            rc = product.terminate(STOP_TIMEOUT)
            print(f"  stopped (product exit {rc})")
    print(f"\nsummary (median of {rounds} round(s); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end):")
    errors, met = 0, True
    for size, runs in pairs.items():
        if not runs:
            print(f"  {size:>2}-alert posts: no valid pair of cells")
            met = False
            continue
        ratios = [m["alerts_s"] / max(r["alerts_s"], 1e-9) for m, r in runs]
        ratio = statistics.median(ratios)
        mine = statistics.median(m["alerts_s"] for m, _ in runs)
        ref = statistics.median(r["alerts_s"] for _, r in runs)
        p99 = statistics.median(m["p99"] for m, _ in runs)
        cpu = statistics.median(http_cpu_per_post(m) for m, _ in runs)
        ref_cpu = statistics.median(http_cpu_per_post(r) for _, r in runs)
        ref_p99 = statistics.median(r["p99"] for _, r in runs)
        errors += sum(m["errors"] + r["errors"] for m, r in runs)
        ok = ratio >= TARGET_RATIO
        met = met and ok
        print(f"  {size:>2}-alert posts: product {mine:,.0f} alerts/s (p99 {p99:.1f} ms), "
              f"reference {ref:,.0f} (p99 {ref_p99:.1f} ms): ratio {ratio:.2f}x "
              f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}) "
              f"{'MET' if ok else 'MISSED'} (>= {TARGET_RATIO:g}x); http CPU a post "
              f"{cpu:,.0f} us against {ref_cpu:,.0f} us")
    print(f"ratio target (>= {TARGET_RATIO:g}x on every shape): {'MET' if met else 'MISSED'}")
    print(f"errors in all cells: {errors}; pairs left out (a stalled cell): {stalled}")
    if spied:
        print("\npy-spy record --gil on every http worker, round 1's measured windows (parts "
              "of the time the workers held the GIL; SQLite's and the sockets' waits let go "
              "of it and are not in it):")
        for (name, size), found in spied.items():
            print_spied(name, size, found)
    if args.profile:
        print("\nin this process, no HTTP server (Flask's test client):")
        profile_apps(max(20, min(args.profile, 100_000)))
    return 1 if errors or stalled else 0


if __name__ == "__main__":
    sys.exit(main())
