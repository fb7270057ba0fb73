"""Alert storm: 10,000 notifications for 500 targets give exactly 500 remediations.

Target (docs/BENCHMARKS.md): an alert storm of 10,000 notifications for 500 targets
gives exactly 500 remediations (attempts), none lost; report the time to drain.

A real ``recovery serve`` (gunicorn gthread for the webhook, ``--workers`` engine worker
processes, default 1) on a temporary RECOVERY_HOME: an inventory of 500 hosts (h000 ..
h499, ``ansible_connection: local``), one runbook matching the storm's alertname whose
only strategy is a cheap python action (``storm.nudge``, from a module written into the
temp dir and listed in ``action_modules``, imported by the service's workers through
PYTHONPATH; it appends one line per run to a trace file, so the runs that really
happened are counted apart from the store), verified by ``storm.ok`` (passes at once).

The storm: each target's alert (one fingerprint and startsAt per target) arrives in 18
single-alert notifications (identical repeats, from both members of an unclustered HA
pair of Alertmanagers) and in the 10 re-sends of its group (5 targets a group, by
``rack``): 9,000 + 1,000 = 10,000 notifications, 14,000 alert deliveries (28 a target),
shuffled, posted over ``--conns`` (16) keep-alive connections. Then the bench waits
(bounded, 180 s) until the intake queue is empty and no incident is open or remediating,
and reads the store: attempts (must be exactly 500), incidents (exactly one per target,
recovered: none lost), runs, and what the webhook answered (500 accepted, 13,500
duplicates). When the count is not exactly 500 it prints what it found about the extras.

    .venv/bin/python bench/storm.py [--quick] [--workers 1] [--conns 16] [--seed 7]

``--quick``: 50 targets, 1,000 notifications. Traffic only to 127.0.0.1; every loop is
bounded in count and time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests.support.service is the shared launcher
    sys.path.insert(0, str(ROOT))

from tests.support.service import Served, Store, free_port, service_env  # noqa: E402

GROUP = 5                   # targets a group (rack): a group re-send carries 5 alerts
SINGLES = 18                # single-alert notifications per target
RESENDS = 10                # re-sends of each group
START_TIMEOUT = 60.0
POST_TIMEOUT = 120.0        # the whole posting phase
DRAIN_TIMEOUT = 180.0       # from the first post until nothing is left to do
STOP_TIMEOUT = 45.0

RUNBOOK = """\
name: storm
component: storm
match:
  - alertname="StormNodeDown"
target: "{{ labels.instance }}"
strategies:
  - name: nudge
    action: storm.nudge
verify: {action: storm.ok, interval: 0.05s}
"""

ACTIONS = '''\
"""The storm bench's actions: cheap, and each run of ``storm.nudge`` leaves a line."""
import os
import time

from engine.actions.base import REMOTE, Action, ActionResult

TRACE = {trace!r}


class Nudge(Action):
    name, scope, timeout = "storm.nudge", REMOTE, 10.0

    def run(self, ctx):
        with open(TRACE, "a") as fh:
            fh.write(f"{{ctx.target}} {{os.getpid()}} {{time.time():.6f}}\\n")
        return ActionResult(True, f"nudged {{ctx.target}}")


class Ok(Action):
    name, scope, timeout = "storm.ok", REMOTE, 10.0

    def run(self, ctx):
        return ActionResult(True, "ok")


def register(registry):
    registry.register(Nudge())
    registry.register(Ok())
'''


def build(root: Path, hosts: int) -> Path:
    for folder in ("runbooks", "playbooks", "inventory"):
        (root / folder).mkdir()
    (root / "runbooks" / "storm.yml").write_text(RUNBOOK)
    (root / "bench_storm_actions.py").write_text(ACTIONS.format(trace=str(root / "trace.log")))
    lines = ["all:", "  hosts:"]
    lines += [f"    h{i:03d}: {{ansible_connection: local}}" for i in range(hosts)]
    (root / "inventory" / "hosts.yml").write_text("\n".join(lines) + "\n")
    config = root / "recovery.yml"
    config.write_text("home: home\nrunbooks: runbooks\nplaybooks: playbooks\n"
                      "inventory: inventory/hosts.yml\naction_modules: [bench_storm_actions]\n"
                      "webhook: {shutdown_grace: 5s, graceful_timeout: 5s}\n")
    return config


# -- the storm -------------------------------------------------------------------------------
def alert(i: int) -> dict:
    labels = {"alertname": "StormNodeDown", "instance": f"h{i:03d}:9100", "job": "node",
              "severity": "critical", "rack": f"r{i // GROUP:02d}"}
    fingerprint = hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
    return {"status": "firing", "labels": labels,
            "annotations": {"summary": f"node h{i:03d} is down"},
            "startsAt": f"2026-11-28T09:{(i // 60) % 60:02d}:{i % 60:02d}.{i:06d}Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up%3D%3D0",
            "fingerprint": fingerprint}


def notification(alerts: list[dict], group: dict[str, str], am: str) -> bytes:
    common = dict(alerts[0]["labels"]) if len(alerts) == 1 else {
        k: v for k, v in alerts[0]["labels"].items()
        if all(a["labels"].get(k) == v for a in alerts)}
    key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}"
    return json.dumps({
        "version": "4", "groupKey": key, "truncatedAlerts": 0, "status": "firing",
        "receiver": "infra-recovery", "groupLabels": group, "commonLabels": common,
        "commonAnnotations": {} if len(alerts) > 1 else alerts[0]["annotations"],
        "externalURL": f"http://{am}.bench:9093", "alerts": alerts}).encode()


def storm(targets: int, seed: int) -> list[bytes]:
    """SINGLES identical single-alert repeats per target (alternately from either
    Alertmanager of an HA pair) and RESENDS re-sends of each group of GROUP targets."""
    alerts = [alert(i) for i in range(targets)]
    bodies = []
    for a in alerts:
        group = {"alertname": "StormNodeDown", "instance": a["labels"]["instance"]}
        bodies += [notification([a], group, "am-a" if k % 2 else "am-b")
                   for k in range(SINGLES)]
    for start in range(0, targets, GROUP):
        members = alerts[start:start + GROUP]
        group = {"alertname": "StormNodeDown", "rack": members[0]["labels"]["rack"]}
        bodies += [notification(members, group, "am-a" if k % 2 else "am-b")
                   for k in range(RESENDS)]
    random.Random(seed).shuffle(bodies)
    return bodies


class Poster:
    """Posts every body once over ``conns`` keep-alive connections (threads), bounded."""

    def __init__(self, url: str, token: str, bodies: list[bytes], conns: int) -> None:
        self.url, self.token, self.bodies, self.conns = url, token, bodies, conns
        self._next = 0
        self._lock = threading.Lock()
        self.answers: Counter = Counter()   # accepted / duplicates / ignored, summed
        self.errors: Counter = Counter()
        self.latencies: list[float] = []
        self.last_ack = 0.0

    def _take(self) -> bytes | None:
        with self._lock:
            if self._next >= len(self.bodies):
                return None
            self._next += 1
            return self.bodies[self._next - 1]

    def _connection(self, deadline: float) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        answers: Counter = Counter()
        errors: Counter = Counter()
        lat: list[float] = []
        with httpx.Client(base_url=self.url, headers=headers, timeout=10.0,
                          limits=limits) as client:
            for _ in range(len(self.bodies)):
                body = self._take()
                if body is None or time.monotonic() > deadline:
                    break
                t0 = time.monotonic()
                try:
                    r = client.post("/api/v1/alerts", content=body)
                except httpx.HTTPError as exc:
                    errors[f"transport: {type(exc).__name__}"] += 1
                    continue
                t1 = time.monotonic()
                lat.append((t1 - t0) * 1000.0)
                if r.status_code != 200:
                    errors[f"HTTP {r.status_code}"] += 1
                    continue
                answers.update(r.json())
        with self._lock:
            self.answers.update(answers)
            self.errors.update(errors)
            self.latencies += lat
            self.last_ack = max(self.last_ack, time.monotonic())

    def run(self) -> None:
        deadline = time.monotonic() + POST_TIMEOUT
        threads = [threading.Thread(target=self._connection, args=(deadline,), daemon=True)
                   for _ in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 15)
        if self._next < len(self.bodies):
            self.errors[f"not posted within {POST_TIMEOUT:g}s"] += len(self.bodies) - self._next


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def explain_extras(store: Store, targets: int) -> None:
    """Why there are more (or fewer) attempts than targets: what the store says."""
    rows = store.rows("SELECT target, COUNT(*) AS n FROM attempts GROUP BY target "
                      "HAVING n != 1 ORDER BY target")
    names = {f"h{i:03d}" for i in range(targets)}
    without = sorted(names - {r["target"] for r in store.rows(
        "SELECT DISTINCT target FROM attempts")})
    print(f"  targets with more than one attempt: {len(rows)}; without any: {len(without)}"
          + (f" (first: {', '.join(without[:10])})" if without else ""))
    for r in rows[:10]:
        print(f"  -- {r['target']}: {r['n']} attempts")
        for a in store.rows("SELECT a.id, a.incident_id, a.started_at, a.finished_at, "
                            "a.outcome, i.state, i.trigger, i.fingerprint, i.reason "
                            "FROM attempts a LEFT JOIN incidents i ON i.id = a.incident_id "
                            "WHERE a.target = ? ORDER BY a.started_at", r["target"]):
            print(f"     attempt {a['id']} incident {a['incident_id']} "
                  f"outcome={a['outcome']} incident={a['state']} trigger={a['trigger']} "
                  f"fingerprint={a['fingerprint']} reason={a['reason']!r}")
    events = store.rows("SELECT action, COUNT(*) AS n FROM events GROUP BY action")
    if events:
        print("  audit events: " + ", ".join(f"{e['action']}={e['n']}" for e in events))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 targets")
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--workers", type=int, default=1, help="engine worker processes")
    parser.add_argument("--http-workers", type=int, default=2)
    parser.add_argument("--conns", type=int, default=16, help="concurrent connections")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    targets = 50 if args.quick else max(GROUP, args.targets - args.targets % GROUP)
    bodies = storm(targets, args.seed)
    deliveries = targets * (SINGLES + RESENDS)
    print(f"storm: {len(bodies):,} notifications ({deliveries:,} alert deliveries) for "
          f"{targets} targets -> exactly {targets} attempts, none lost")
    print(f"  machine: {os.cpu_count()} cpu, python {platform.python_version()}, sqlite "
          f"{sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.2f} at start")
    print(f"  recovery serve --workers {args.workers} --http-workers {args.http_workers}; "
          f"{args.conns} connections; store WAL, synchronous NORMAL; workers.threads 2, "
          f"poll_interval 1s (defaults)")
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        root = Path(tmp)
        config = build(root, targets)
        service = Served(service_env(config, root), root / "home", free_port(),
                         "--workers", str(args.workers), "--http-workers",
                         str(args.http_workers), cwd=root)
        try:
            service.start().wait_ready(START_TIMEOUT)
            store = Store(service.home)
            poster = Poster(service.url, service.token, bodies, args.conns)
            t0 = time.monotonic()
            posting = threading.Thread(target=poster.run, daemon=True)
            posting.start()
            busy_seen, done_at, last = False, None, (0, 0, 0)
            while time.monotonic() - t0 < DRAIN_TIMEOUT:
                last = store.busy()
                busy_seen = busy_seen or any(last)
                if not posting.is_alive() and not any(last):
                    done_at = time.monotonic()
                    break
                time.sleep(0.05)
            posting.join(1)
            posted = poster.last_ack - t0
            attempts = store.one("SELECT COUNT(*) FROM attempts")
            attempt_targets = store.one("SELECT COUNT(DISTINCT target) FROM attempts")
            incidents = store.rows("SELECT state, COUNT(*) AS n FROM incidents GROUP BY state")
            recovered_targets = store.one(
                "SELECT COUNT(DISTINCT target) FROM incidents WHERE state = 'recovered'")
            per_target = store.one("SELECT COUNT(*) FROM (SELECT target FROM incidents "
                                   "GROUP BY target HAVING COUNT(*) > 1)")
            runs = store.rows("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            seen = store.one("SELECT COUNT(*) FROM intake_seen")
            outcomes = store.rows("SELECT outcome, COUNT(*) AS n FROM attempts "
                                  "GROUP BY outcome")
            trace = root / "trace.log"
            ran = trace.read_text().splitlines() if trace.exists() else []
            ran_targets = {line.split()[0] for line in ran}
            lost = targets - recovered_targets
            lat = poster.latencies
            print(f"  posted {len(lat):,} notifications in {posted:.2f}s "
                  f"({len(lat) / max(posted, 1e-9):,.0f}/s), ack p50 "
                  f"{percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, "
                  f"max {max(lat) if lat else float('nan'):.0f} ms")
            print(f"  webhook answered: accepted {poster.answers['accepted']:,}, duplicates "
                  f"{poster.answers['duplicates']:,}, ignored {poster.answers['ignored']:,}; "
                  f"errors {sum(poster.errors.values())}"
                  + "".join(f"\n    error: {n} x {k}" for k, n in poster.errors.items()))
            print(f"  store: intake_seen {seen:,} alerts journaled; attempts {attempts} "
                  f"({attempt_targets} targets; "
                  + ", ".join(f"{r['outcome']} {r['n']}" for r in outcomes) + "); incidents "
                  + ", ".join(f"{r['state']} {r['n']}" for r in incidents)
                  + "; runs " + ", ".join(f"{r['status']} {r['n']}" for r in runs))
            print(f"  actions that ran (trace file): {len(ran)} on {len(ran_targets)} targets")
            if done_at is None:
                print(f"  NOT DRAINED within {DRAIN_TIMEOUT:g}s: intake {last[0]}, incidents "
                      f"open/remediating {last[1]}, runs not final {last[2]}")
            else:
                print(f"  time to drain: {done_at - t0:.2f}s from the first post "
                      f"({done_at - poster.last_ack:.2f}s after the last acknowledgement)")
            exact = attempts == targets and attempt_targets == targets
            checks = [
                (f"attempts == {targets}", exact),
                ("one incident per target, recovered (lost 0)", lost == 0 and per_target == 0),
                (f"accepted == {targets}, duplicates == {deliveries - targets}",
                 poster.answers["accepted"] == targets
                 and poster.answers["duplicates"] == deliveries - targets),
                (f"actions ran == {targets}", len(ran) == targets
                 and len(ran_targets) == targets),
                ("0 errors", not poster.errors),
                ("drained", done_at is not None),
            ]
            for label, good in checks:
                print(f"  {'MET   ' if good else 'MISSED'} {label}")
                ok = ok and good
            print(f"  lost: {lost} (targets without a recovered incident)")
            if not exact:
                print(f"  NOT EXACTLY {targets} ATTEMPTS: {attempts}")
                explain_extras(store, targets)
            store.close()
        finally:
            rc = service.terminate(STOP_TIMEOUT)
            print(f"  stopped (exit {rc})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
