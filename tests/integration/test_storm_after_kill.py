"""A storm of alerts, the whole service SIGKILLed after journaling it, a restart: every
host's step runs once. The alerts name a handful of inventory hosts, several alerts
(other names, other fingerprints) per host, behind alerts for hosts the inventory does
not know; the step is a real playbook that counts its executions per host.

What went wrong: the items a killed engine worker had claimed were taken again only once
their claim lapsed (a minute later), after the alerts journaled behind them had opened,
fixed and verified each host's incident; each late alert then opened a new incident and
ran the step again on a host already fixed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.alertmanager import iso_at
from tests.support.counted_step import CountedStep, counted_step
from tests.support.service import GRACE, Store, post_alerts, store_rows, wait_for

pytestmark = pytest.mark.slow

HOSTS = [f"web-{n}" for n in range(1, 6)]
EARLY = ("StormDown", "StormSlow")          # journaled first: a killed worker holds them
LATE = ("StormErrors", "StormLatency")      # journaled after a queue's worth of others


def storm_alert(alertname: str, instance: str, started: float) -> dict:
    return {"status": "firing", "labels": {"alertname": alertname, "instance": instance,
                                           "severity": "critical"},
            "annotations": {"summary": f"{alertname} on {instance}"},
            "startsAt": iso_at(started), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example", "fingerprint":
            f"{alertname}-{instance}".lower()}


def notification(alerts: list[dict]) -> dict:
    return {"version": "4", "status": "firing", "receiver": "storm",
            "groupKey": "{}:{alertname=~\"Storm.*\"}", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager.example", "alerts": alerts}


def storm(started: float) -> tuple[list[dict], list[str], list[str]]:
    """80 alerts for unknown hosts (each one a refusal to record: they take the worker a
    while), the early alerts of every host (in the same claim of 100), 110 more unknown
    ones (a second worker's claim), the late alerts of every host. Returns the alerts and
    the fingerprints of the early and the late ones."""
    def ghosts(first: int, n: int) -> list[dict]:
        return [storm_alert("StormDown", f"ghost-{i}", started) for i in range(first, first + n)]

    early = [storm_alert(name, host, started) for host in HOSTS for name in EARLY]
    late = [storm_alert(name, host, started) for host in HOSTS for name in LATE]
    alerts = ghosts(0, 80) + early + ghosts(80, 110) + late
    return alerts, [a["fingerprint"] for a in early], [a["fingerprint"] for a in late]


def post_quietly(served, payload: dict) -> None:
    try:
        post_alerts(served, payload)
    except (httpx.HTTPError, AssertionError):
        pass


def intake(home: Path) -> dict[str, str | None]:
    """The journaled alerts not processed yet: fingerprint -> who holds its claim."""
    return {row["dedup_key"].split("|", 1)[0]: row["claimed_by"]
            for row in store_rows(home, "SELECT dedup_key, claimed_by FROM intake")}


def settled(home: Path, step: CountedStep) -> bool:
    """The queue is empty, no incident open or remediating, no step running, every host
    fixed."""
    store = Store(home)
    try:
        left, busy, running = store.busy()
    finally:
        store.close()
    return not left and not busy and not running and step.all_done()


def test_no_host_runs_its_step_again_after_a_kill_in_a_storm(serve, engine_env, tmp_path):
    step = counted_step(engine_env, tmp_path, "storm", 'alertname=~"Storm.*"', HOSTS)
    engine_env.write_config(threads=4, webhook=f"{{workers: 2, http_workers: 1, "
                            f"shutdown_grace: {GRACE}s, graceful_timeout: 2s}}")
    served = serve().start()
    served.wait_ready()
    alerts, early, late = storm(time.time() - 60)
    tree = [served.seen[served.proc.pid], *served.children()]

    # Post the storm; SIGKILL the whole tree as soon as an engine worker claims from it.
    # (The answer may be cut by the kill: the store says what was journaled.)
    poster = threading.Thread(target=post_quietly, args=(served, notification(alerts)))
    poster.start()
    claimed = wait_for(lambda: any(intake(served.home).values()), 30, every=0.005)
    for process in tree:
        process.kill()
    served.kill_all()
    poster.join(30)
    assert claimed, "no engine worker claimed the storm"
    assert len(store_rows(served.home, "SELECT * FROM intake_seen")) == len(alerts)
    held = intake(served.home)
    assert all(held.get(fp) for fp in early), (  # the test's premise: see the docstring
        f"the kill came too late: a killed worker no longer held the early alerts {held}")
    assert all(fp in held for fp in late)
    assert sum(step.counts().values()) == 0

    served.start()
    served.wait_ready()
    assert wait_for(lambda: settled(served.home, step), 150), (
        intake(served.home), step.counts(), served.stderr()[-3000:])
    assert step.counts() == dict.fromkeys(HOSTS, 1), served.stderr()[-3000:]
    incidents = store_rows(served.home, "SELECT target, state FROM incidents "
                                        "WHERE runbook = 'storm' ORDER BY target")
    assert [(r["target"], r["state"]) for r in incidents] == [
        (host, "recovered") for host in HOSTS]
    served.terminate()
