"""Webhook intake: accepted alerts/s and acknowledgement latency of ``recovery serve``.

Targets (docs/BENCHMARKS.md; on this 2-core machine, load generator included):
>= 2,000 alerts/s in single-alert notifications, >= 10,000 alerts/s in 20-alert
notifications, p99 acknowledgement < 20 ms.

A real ``recovery serve --workers 1 --http-workers N`` (gunicorn gthread, 8 threads per
worker) on a temporary RECOVERY_HOME, with durable journaling on: the default SQLite
store (WAL, ``state_synchronous: NORMAL``), each notification committed to the intake
queue before its 200. Its only runbook matches nothing the storm sends, so the engine
worker only drains and acknowledges the intake. The load comes from separate processes
(``--procs``, default 2), each running its share of the connections as threads, one
keep-alive ``httpx.Client`` per connection, closed loop (a connection sends its next
notification when the last one is answered). Every alert is distinct (its own
fingerprint and startsAt), so none is a duplicate; a 200 must say so (``accepted`` equal
to the alerts sent, no duplicates, nothing ignored), anything else counts as an error.

For each ``--http-workers`` setting (default 2 and 4) and each shape (1 and 20 alerts a
notification) and concurrency (8, 16, 32 connections): 1 s of warm-up, then ``--seconds``
(15) measured. Latency is the client's: from before ``post`` to the parsed answer. After
each cell the bench waits (bounded) for the engine worker to drain what was journaled,
so the next cell starts on an empty queue, and reports how long that took; it checks that
the store holds every alert a 200 accepted. CPU seconds of the service's processes, of
the generators and of the whole machine are read over the measured window (psutil), to
say where the time goes: the columns give cores used by the http workers (with gunicorn's
master), the engine worker, the generators and "other" processes (not ours: a busy
machine shows here, and a cell where they used more than 0.15 cores says so).

``--baseline`` adds GET /healthz rows (no work in the app: gunicorn and Flask only), the
ceiling of this server and load generator on this machine. ``--profile`` also runs the
same notifications through the Flask app in this process (``app.test_client()``, no HTTP
server) under cProfile: the application's share.

    .venv/bin/python bench/intake.py [--quick] [--seconds 15] [--http-workers 2 4]
                                     [--conns 8 16 32] [--sizes 1 20] [--procs 2]
                                     [--baseline] [--synchronous NORMAL|FULL] [--profile]

A full run takes 12-16 minutes, most of it waiting for the engine worker to drain the
20-alert cells (about 160,000 alerts each).

Every loop is bounded in count and time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests.support.service is the shared launcher
    sys.path.insert(0, str(ROOT))

from tests.support.service import Served, Store, free_port, service_env  # noqa: E402

TARGET_SINGLE = 2000.0      # alerts/s, single-alert notifications
TARGET_BATCH = 10000.0      # alerts/s, 20-alert notifications
TARGET_P99_MS = 20.0
WARMUP = 1.0                # seconds per cell, not measured
MAX_REQUESTS = 500_000      # per connection and cell: a bound besides the clock
START_TIMEOUT = 60.0        # the service's start (gunicorn, the engine imports)
DRAIN_TIMEOUT = 180.0       # per cell: the engine worker empties the intake queue
STOP_TIMEOUT = 45.0         # SIGTERM -> exit (shutdown grace 30 s + margin)
OTHER_LIMIT = 0.15          # cores used by processes not ours: the machine was not quiet

RUNBOOK = """\
name: bench-nothing
component: bench
match:
  - alertname="BenchNeverSent"
target: "{{ labels.instance }}"
strategies:
  - name: gc
    action: system.memory_gc
verify: {action: system.health, interval: 1s}
"""

ALERT = ('{"status":"firing","labels":{"alertname":"BenchIntake","instance":"node-%d:9100",'
         '"job":"node","severity":"warning","cell":"%s"},"annotations":{"summary":'
         '"bench intake alert","description":"load generator %d thread %d"},'
         '"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z",'
         '"generatorURL":"http://prometheus.bench:9090/graph?g0.expr=up%%3D%%3D0",'
         '"fingerprint":"%s"}')
NOTIFICATION = ('{"version":"4","groupKey":"{}:{alertname=\\"BenchIntake\\"}",'
                '"truncatedAlerts":0,"status":"firing","receiver":"infra-recovery",'
                '"groupLabels":{"alertname":"BenchIntake"},"commonLabels":{"alertname":'
                '"BenchIntake","job":"node","severity":"warning"},"commonAnnotations":{},'
                '"externalURL":"http://alertmanager.bench:9093","alerts":[%s]}')


# -- the service (tests/support/service.py: Served, the shared launcher; Store, read-only looks) --
def build(root: Path, synchronous: str) -> Path:
    for folder in ("runbooks", "playbooks", "inventory"):
        (root / folder).mkdir()
    (root / "runbooks" / "nothing.yml").write_text(RUNBOOK)
    (root / "inventory" / "hosts.yml").write_text(
        "all:\n  hosts:\n    bench-1: {ansible_connection: local}\n")
    config = root / "recovery.yml"
    config.write_text("home: home\nrunbooks: runbooks\nplaybooks: playbooks\n"
                      "inventory: inventory/hosts.yml\n"
                      f"state_synchronous: {synchronous}\n"
                      "webhook: {workers: 1, shutdown_grace: 5s, graceful_timeout: 5s}\n")
    return config


# -- the load generator (separate processes) -----------------------------------------------
def body(size: int, cell: str, proc: int, thread: int, serial: int) -> bytes:
    """One notification of ``size`` distinct alerts: fingerprints and startsAt are unique
    per (cell, process, thread, serial)."""
    alerts = []
    day = 1 + sum(map(ord, cell)) % 28
    for i in range(size):
        n = serial * size + i
        starts = (f"2026-11-{day:02d}T{proc % 24:02d}:{thread % 60:02d}:"
                  f"{(n // 1_000_000) % 60:02d}.{n % 1_000_000:06d}Z")
        alerts.append(ALERT % (n % 1000, cell, proc, thread, starts,
                               f"{cell}-{proc}-{thread}-{n:x}"))
    return (NOTIFICATION % ",".join(alerts)).encode()


def _connection(url: str, token: str, size: int, cell: str, proc: int, thread: int,
                begin: float, measure_from: float, end: float, out: dict) -> None:
    lat, done = array("d"), array("d")
    errors: Counter = Counter()
    sent_alerts = accepted = requests = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=url, headers=headers, timeout=10.0, limits=limits) as client:
        client.get("/healthz")   # open the connection before the clock
        time.sleep(max(0.0, begin - time.monotonic()))
        serial = 0
        expect = {"accepted": size, "duplicates": 0, "ignored": 0} if size else {"ok": True}
        while serial < MAX_REQUESTS:
            payload = body(size, cell, proc, thread, serial) if size else b""
            serial += 1
            t0 = time.monotonic()
            if t0 >= end:
                break
            try:
                if size:
                    r = client.post("/api/v1/alerts", content=payload)
                else:   # the baseline: no work in the app, the server and Flask only
                    r = client.get("/healthz")
                answer = r.json() if r.status_code == 200 else None
            except (httpx.HTTPError, ValueError) as exc:
                errors[f"transport: {type(exc).__name__}"] += 1
                time.sleep(0.01)
                continue
            t1 = time.monotonic()
            requests += 1
            sent_alerts += size
            if r.status_code != 200:
                errors[f"HTTP {r.status_code}"] += 1
                continue
            accepted += int(answer.get("accepted", 0))
            if answer != expect:
                errors[f"answer {answer}"] += 1
                continue
            if t0 >= measure_from and t1 <= end:
                lat.append((t1 - t0) * 1000.0)
                done.append(t1)
    out[thread] = (lat, done, errors, sent_alerts, accepted, requests)


def generator(url: str, token: str, size: int, cell: str, proc: int, threads: int,
              begin: float, measure_from: float, end: float, results) -> None:
    """One load-generator process: ``threads`` connections, results put on ``results``."""
    out: dict = {}
    workers = [threading.Thread(target=_connection, daemon=True,
                                args=(url, token, size, cell, proc, t, begin, measure_from,
                                      end, out)) for t in range(threads)]
    for w in workers:
        w.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu0 = os.times()
    for w in workers:
        w.join(end - time.monotonic() + 15)
    cpu1 = os.times()
    lat, done = array("d"), array("d")
    errors: Counter = Counter()
    sent = accepted = requests = 0
    for t_lat, t_done, t_err, t_sent, t_acc, t_req in out.values():
        lat.extend(t_lat)
        done.extend(t_done)
        errors.update(t_err)
        sent += t_sent
        accepted += t_acc
        requests += t_req
    if len(out) < threads:
        errors["connection thread did not finish"] += threads - len(out)
    results.put({"lat": lat.tobytes(), "done": done.tobytes(), "errors": dict(errors),
                 "sent": sent, "accepted": accepted, "requests": requests,
                 "cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def collect(gens: list, results, end: float) -> list[dict]:
    """The generators' results, each waited for until a bound past ``end``; fewer than
    ``gens`` when one is stuck (the caller counts it as an error)."""
    got = []
    for _ in gens:
        try:
            got.append(results.get(timeout=max(1.0, end - time.monotonic()) + 30))
        except Exception:  # noqa: BLE001 - queue.Empty: a generator is stuck
            break
    return got


def run_cell(service: Served, store: Store, size: int, conns: int, procs: int,
             seconds: float, cell: str) -> dict:
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    procs = max(1, min(procs, conns))
    shares = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    begin = time.monotonic() + 2.0     # the generators start together, connections open
    measure_from, end = begin + WARMUP, begin + WARMUP + seconds
    seen_before = store.seen()
    gens = [mp.Process(target=generator, daemon=True,
                       args=(service.url, service.token, size, cell, i, shares[i], begin,
                             measure_from, end, results)) for i in range(procs)]
    for g in gens:
        g.start()
    time.sleep(max(0.0, measure_from - time.monotonic()))
    cpu0, machine0 = service.cpu(), psutil.cpu_times()
    got = collect(gens, results, end)
    cpu1, machine1 = service.cpu(), psutil.cpu_times()
    window = time.monotonic() - measure_from
    for g in gens:
        g.join(10)
        if g.is_alive():
            g.kill()
            g.join(5)
    backlog = store.depth()
    t_drain = time.monotonic()
    while store.depth() and time.monotonic() - t_drain < DRAIN_TIMEOUT:
        time.sleep(0.1)
    drained = time.monotonic() - t_drain
    left = store.depth()
    lat: list[float] = []
    done: list[float] = []
    errors: Counter = Counter()
    sent = accepted = requests = 0
    gen_cpu = 0.0
    for r in got:
        a = array("d")
        a.frombytes(r["lat"])
        lat.extend(a)
        d = array("d")
        d.frombytes(r["done"])
        done.extend(d)
        errors.update(r["errors"])
        sent += r["sent"]
        accepted += r["accepted"]
        requests += r["requests"]
        gen_cpu += r["cpu"]
    if len(got) < len(gens):
        errors["generator process lost"] += len(gens) - len(got)
    journaled = store.seen() - seen_before
    if journaled != accepted:
        errors[f"store holds {journaled} new alerts, the 200s accepted {accepted}"] += 1
    measured = len(lat)
    idle = ((machine1.idle + machine1.iowait) - (machine0.idle + machine0.iowait))
    busy = sum(machine1) - sum(machine0) - idle
    return {
        "size": size, "conns": conns, "alerts_s": measured * max(size, 1) / seconds,
        "req_s": measured / seconds, "p50": percentile(lat, 50), "p90": percentile(lat, 90),
        "p99": percentile(lat, 99), "max": max(lat) if lat else float("nan"),
        "mean": statistics.fmean(lat) if lat else float("nan"),
        "errors": sum(errors.values()), "error_kinds": dict(errors), "accepted": accepted,
        "requests": requests, "backlog": backlog, "drained": drained, "left": left,
        "cpu": {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}, "window": window,
        "gen_cpu": gen_cpu, "load": os.getloadavg()[0],
        "machine_busy": busy / max(1e-9, busy + idle), "machine_cores": busy / window,
    }


def verdict(cell: dict) -> str:
    if not cell["size"]:
        return "(baseline: GET /healthz, no target)" + (" ERRORS" if cell["errors"] else "")
    target = TARGET_SINGLE if cell["size"] == 1 else TARGET_BATCH
    rate_ok = cell["alerts_s"] >= target
    p99_ok = cell["p99"] < TARGET_P99_MS
    if cell["errors"]:
        return "MISSED (errors)"
    if rate_ok and p99_ok:
        return "MET"
    missed = [w for w, ok in (("rate", rate_ok), ("p99", p99_ok)) if not ok]
    return "MISSED (" + ", ".join(missed) + ")"


def print_header() -> None:
    print(f"  {'http':>4} {'alerts/post':>11} {'conns':>5} {'alerts/s':>9} {'posts/s':>8} "
          f"{'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'errors':>6} {'backlog':>8} "
          f"{'drain':>6}   {'cpu: http':>9} {'engine':>6} {'gen':>5} {'other':>6} {'busy':>5}  "
          "verdict")


def print_cell(http: int, c: dict) -> None:
    cores = {k: v / c["window"] for k, v in c["cpu"].items()}
    gen = c["gen_cpu"] / c["window"]
    other = c["machine_cores"] - sum(cores.values()) - gen
    shape = c["size"] or "GET"
    print(f"  {http:>4} {shape:>11} {c['conns']:>5} {c['alerts_s']:>9,.0f} "
          f"{c['req_s']:>8,.0f} {c['p50']:>5.1f}ms {c['p90']:>5.1f}ms {c['p99']:>5.1f}ms "
          f"{c['max']:>5.0f}ms {c['errors']:>6} {c['backlog']:>8,} {c['drained']:>5.1f}s   "
          f"{cores.get('http', 0) + cores.get('master', 0):>8.2f}c {cores.get('engine', 0):>5.2f}c "
          f"{gen:>4.2f}c {other:>5.2f}c {c['machine_busy'] * 100:>4.0f}%  {verdict(c)}",
          flush=True)
    if other > OTHER_LIMIT:
        print(f"         other processes used {other:.2f} cores in this cell: not a quiet "
              "machine, the figures above are low")
    for kind, n in c["error_kinds"].items():
        print(f"         error: {n} x {kind}")
    if c["left"]:
        print(f"         intake NOT drained within {DRAIN_TIMEOUT:g}s: {c['left']:,} left")


# -- in-process profile of the application -------------------------------------------------
def profile_app(root: Path, config: Path, n: int) -> None:
    """cProfile of ``n`` single-alert and ``n/20`` 20-alert posts through the Flask app in
    this process (the store, the parser, Flask; no gunicorn, no HTTP)."""
    os.environ["RECOVERY_CONFIG"] = str(config)
    os.environ["RECOVERY_HOME"] = str(root / "home")
    os.environ.pop("RECOVERY_STATE_URL", None)
    from engine.config import load_config
    from webhook import create_app

    app = create_app(load_config(config))
    client = app.test_client()
    token = (root / "home" / "webhook.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for size, count in ((1, n), (20, max(1, n // 20))):
        bodies = [body(size, f"prof{size}", 0, 0, i) for i in range(count)]
        client.post("/api/v1/alerts", data=bodies[0], headers=headers)  # warm
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        for b in bodies[1:]:
            r = client.post("/api/v1/alerts", data=b, headers=headers)
            assert r.status_code == 200, r.data
        profiler.disable()
        took = time.perf_counter() - t0
        print(f"--- in-process app, {size}-alert posts: {count - 1} in {took:.2f}s under "
              f"cProfile ({took / (count - 1) * 1e6:.0f} us a post) ---")
        stats = pstats.Stats(profiler)
        for key, top in (("tottime", 20), ("cumulative", 30)):
            out = io.StringIO()
            stats.stream = out
            stats.sort_stats(key).print_stats(top)
            print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s a cell, 8 and 16 connections, 2 http workers")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured per cell")
    parser.add_argument("--http-workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--conns", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--baseline", action="store_true",
                        help="also GET /healthz at each concurrency (the server's floor)")
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile the app in-process (no HTTP server)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.conns, args.http_workers = 2.0, [8, 16], [2]
    seconds = max(1.0, min(args.seconds, 120.0))
    print("intake: accepted alerts/s and acknowledgement latency of recovery serve")
    print(f"  machine: {os.cpu_count()} cpu, python {platform.python_version()}, sqlite "
          f"{sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.2f} at start, "
          f"temp dir {tempfile.gettempdir()}")
    print(f"  {WARMUP:g}s warm-up + {seconds:g}s measured per cell, {args.procs} generator "
          f"processes (httpx, keep-alive, closed loop); engine workers 1; gunicorn gthread, "
          f"8 threads per http worker")
    print(f"  targets: >= {TARGET_SINGLE:,.0f} alerts/s single-alert, >= {TARGET_BATCH:,.0f} "
          f"alerts/s in 20-alert posts, p99 < {TARGET_P99_MS:g} ms; 0 errors")
    cells: list[tuple[int, dict]] = []
    last_root: tuple[Path, Path] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        for http in args.http_workers:
            root = Path(tmp) / f"http{http}"
            root.mkdir()
            config = build(root, args.synchronous)
            service = Served(service_env(config, root), root / "home", free_port(),
                             "--workers", "1", "--http-workers", str(http), cwd=root)
            try:
                t0 = time.monotonic()
                service.start().wait_ready(START_TIMEOUT)
                store = Store(service.home)
                roles = service.processes()
                print(f"\n  --http-workers {http}: ready in {time.monotonic() - t0:.1f}s; "
                      f"{len(roles['http'])} http worker(s), {len(roles['engine'])} engine "
                      f"worker(s); store journal_mode={store.journal()}, "
                      f"state_synchronous={args.synchronous}")
                print_header()
                for size in ([0] if args.baseline else []) + args.sizes:
                    for conns in args.conns:
                        cell = f"h{http}s{size}c{conns}"
                        c = run_cell(service, store, size, conns, args.procs, seconds, cell)
                        cells.append((http, c))
                        print_cell(http, c)
                store.close()
            finally:
                rc = service.terminate(STOP_TIMEOUT)
                print(f"  stopped (exit {rc})")
            last_root = (root, config)
        if args.profile and last_root:
            profile_app(last_root[0], last_root[1], 400 if args.quick else 4000)
    print("\nbest per shape and concurrency (alerts/s):")
    for size in args.sizes:
        for conns in args.conns:
            row = [(c["alerts_s"], http) for http, c in cells
                   if c["size"] == size and c["conns"] == conns]
            if row:
                rate, http = max(row)
                print(f"  {size:>2}-alert posts, {conns:>2} conns: --http-workers {http} "
                      f"({rate:,.0f} alerts/s)")
    errors = sum(c["errors"] for _, c in cells)
    print(f"errors in all cells: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
