"""The whole service SIGKILLed at exact points of a storm, again and again, started again
each time on the same RECOVERY_HOME: in a request before the journal write, after it
before the answer, and in a playbook (``RECOVERY_FAULT_AT``, engine.fault_injection:
the service kills its own process tree there). The alerts are posted as Alertmanager
posts them: a notification not answered 200 is sent again, to whichever service answers.

The step is a real playbook that appends a line naming its run to a file per host
(one alert per host), then does its work (a file its verify checks). Once a last start
without a fault has settled: every acknowledged alert processed, each host's incident
recovered by one verified run and never run again after it, every execution a run of
the record (an extra one only after a run the kills left ``interrupted``), the store
whole, no lock left behind and no attempt left open.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from engine.fault_injection import ENV
from tests.support.counted_step import CountedStep, counted_step
from tests.support.service import GRACE, Served, Store, free_port, store_rows, wait_for

pytestmark = pytest.mark.slow      # five starts and a settle: 80-110 s on 2 shared cores

HOSTS = [f"crash-{n}" for n in range(1, 9)]
# One start per kill, in this order: the 3rd notification dies unjournaled, the 3rd of the
# next start journaled but unanswered; then the first task a playbook reports done, and
# the second (another playbook's first, or the same one's work).
KILLS = ("in_request:3", "after_journal:3", "in_playbook:1", "in_playbook:2")
DEATH = 90.0           # s: bound on a start until its kill point
SETTLE = 120.0         # s: bound on the last start until everything is processed
# An attempt a kill interrupted counts for the cooldown (a service that a step kills
# again and again stops acting on its target): room for one per kill and the last one.
MAX_ATTEMPTS = len(KILLS) + 1


def alert(host: str) -> dict:
    return {"status": "firing", "labels": {"alertname": "CrashStorm", "instance": host},
            "startsAt": "2026-01-01T00:00:00Z", "fingerprint": f"crash-{host}"}


class Alertmanager(threading.Thread):
    """Posts one notification per host, in order, each again until it is answered 200
    (refused, cut or 5xx: sent again 0.1 s later), whichever service is up then."""

    def __init__(self, served: Served, deadline: float) -> None:
        super().__init__(daemon=True)
        self.served, self.deadline = served, deadline
        self.acknowledged: list[str] = []
        self.attempts = 0

    def run(self) -> None:
        for host in HOSTS:
            body = {"version": "4", "status": "firing", "receiver": "recovery",
                    "groupKey": f"{{}}:{{instance={host!r}}}", "alerts": [alert(host)]}
            while time.monotonic() < self.deadline:
                self.attempts += 1
                try:
                    answer = httpx.post(self.served.url + "/api/v1/alerts", json=body,
                                        timeout=10, headers={
                                            "Authorization": f"Bearer {self.served.token}"})
                    if answer.status_code == 200:
                        self.acknowledged.append(host)
                        break
                except (httpx.HTTPError, OSError):
                    pass
                time.sleep(0.1)


def settled(home: Path, step: CountedStep, poster: Alertmanager) -> bool:
    store = Store(home)
    try:
        left, busy, running = store.busy()
    finally:
        store.close()
    return (not poster.is_alive() and not left and not busy and not running
            and step.all_done())


def killed_at(served: Served, fault: str) -> None:
    """Wait until the service killed itself at ``fault``; nothing of it may be left."""
    served.start()
    died = wait_for(lambda: served.remember() or served.proc.poll() is not None, DEATH,
                    every=0.2)
    assert died, f"{fault}: the service was not killed within {DEATH:g}s\n" + \
        served.stderr()[-3000:]
    assert served.proc.returncode == -9, (fault, served.proc.returncode,
                                          served.stderr()[-3000:])
    left = wait_for(lambda: not served.alive(), 10)
    assert left, f"{fault}: processes of the service outlived its kill: {served.alive()}"


def test_kills_at_each_point_of_a_storm_lose_nothing_and_rerun_only_interrupted_steps(
        engine_env, tmp_path):
    step = counted_step(engine_env, tmp_path, "crash", 'alertname="CrashStorm"', HOSTS,
                        deadline="3s", extra=f"cooldown: {{max_attempts: {MAX_ATTEMPTS}, "
                                             "window: 1h, after_failure: 0s}")
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: "
                                    f"{GRACE}s, graceful_timeout: 2s}}")
    environ = engine_env.env()
    served = Served(environ, tmp_path / "home", free_port())
    poster = Alertmanager(served, time.monotonic() + DEATH * len(KILLS) + SETTLE)
    try:
        poster.start()              # refused until the first start answers
        for fault in KILLS:
            environ[ENV] = fault
            killed_at(served, fault)
        environ.pop(ENV)
        served.start()
        served.wait_ready()
        assert wait_for(lambda: settled(served.home, step, poster), SETTLE), (
            poster.acknowledged, step.executions(), served.stderr()[-3000:])
        check_the_record(served, step, poster)
    finally:
        served.terminate()


def check_the_record(served: Served, step: CountedStep, poster: Alertmanager) -> None:
    home = served.home
    assert poster.acknowledged == HOSTS                    # every notification answered 200
    assert poster.attempts > len(HOSTS)                    # ... some only when sent again

    # every acknowledged alert processed: its delivery done, its incident recovered
    deliveries = {r["fingerprint"]: r for r in store_rows(
        home, "SELECT fingerprint, processed_at, incident_id FROM deliveries")}
    assert all(deliveries[f"crash-{h}"]["processed_at"] for h in HOSTS), deliveries
    incidents = store_rows(home, "SELECT id, target, state FROM incidents "
                                 "WHERE runbook = 'crash' ORDER BY target")
    assert sorted((r["target"], r["state"]) for r in incidents) == [
        (h, "recovered") for h in sorted(HOSTS)]                   # one incident per host

    # a host's own runs (target: the host), and the runs that executed the playbook (one
    # run of ansible-playbook can serve several hosts: its target names each of them)
    runs = store_rows(home, "SELECT id, target, status FROM runs WHERE runbook = 'crash' "
                            "ORDER BY started_at")
    ran = step.executions()
    interrupted = Counter(r["target"] for r in runs if r["status"] == "interrupted")
    for host in HOSTS:
        statuses = [r["status"] for r in runs if r["target"] == host]
        # the verified run is the last: nothing ran after a passing verify; every run
        # before it was cut by a kill (none is left "running")
        assert statuses[-1] in ("succeeded", "skipped"), (host, statuses)
        assert set(statuses[:-1]) <= {"interrupted"}, (host, statuses)
        # each execution is a run of the record, executed once; an extra execution only
        # after a run of this host the kills left interrupted
        serving = {r["id"]: r["status"] for r in runs if host in r["target"].split(",")}
        assert len(ran[host]) == len(set(ran[host])), (host, ran[host])
        assert set(ran[host]) <= set(serving), (host, ran[host], serving)
        assert [serving[i] for i in ran[host][:-1]] == ["interrupted"] * (len(ran[host]) - 1)
        assert 1 <= len(ran[host]) <= 1 + interrupted[host], (host, ran[host], statuses)
    # the kills cut steps in flight: such runs are on the record as interrupted
    assert sum(interrupted[h] for h in HOSTS) >= 1, [dict(r) for r in runs]

    # the store opens cleanly, in SQLite and through the CLI
    db = sqlite3.connect(f"file:{home / 'recovery.db'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    shown = subprocess.run([sys.executable, "-m", "engine", "history", "--json"],
                           env=served.environ(), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr

    # locks: nothing holds a host or a fleet slot now; a row left is a killed worker's,
    # lapsed with its lease (a step verified after its interruption takes no lock, so
    # nothing replaced it). The fencing counter went on across the kills (each execution
    # held a lock, each lock a new token). Cooldowns: every attempt on the record ended.
    live = {w.pid for w in served.engine_workers()}
    locks = store_rows(home, "SELECT target, holder, expires_at FROM locks")
    assert all(r["expires_at"] < time.time() and int(r["holder"].split(":")[1]) not in live
               for r in locks), [dict(r) for r in locks]
    [fence] = store_rows(home, "SELECT MAX(value) FROM fencing")
    assert (fence[0] or 0) >= sum(len(ids) for ids in ran.values())
    attempts = store_rows(home, "SELECT target, finished_at, outcome FROM attempts "
                                "WHERE runbook = 'crash' ORDER BY started_at")
    assert all(r["finished_at"] for r in attempts), [dict(r) for r in attempts]
    for host in HOSTS:
        outcomes = [r["outcome"] for r in attempts if r["target"] == host]
        assert outcomes == ["interrupted"] * interrupted[host] + ["recovered"], (host, outcomes)
