"""A storm of 2,000 alerts for hosts the inventory does not know, posted to a real
``recovery serve``, leaves a bounded record: one refusal record per (reason, runbook,
target or ``-``) per minute with a ``count`` and up to 100 ``fingerprints``; metrics and
the API still count every alert; ``recovery show FINGERPRINT`` still finds each alert's
refusal.

Seen: a 200 KB notification of 2,000 alerts for unknown hosts created 2,000 refused run
records and 2,000 artifact directories."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from engine.orchestration.refusals import MAX_FINGERPRINTS
from tests.support.alerts import GHOST_RUNBOOK
from tests.support.service import Store, history, wait_for

pytestmark = pytest.mark.slow

STORM = 2000


def ghost(i: int, status: str = "firing") -> dict:
    return {"status": status, "labels": {"alertname": "GhostDown",
                                         "instance": f"ghost-{i}.example:9100"},
            "startsAt": "2024-05-01T10:00:00Z", "fingerprint": f"ghost{i:04d}"}


def refused_records(store: Store) -> list:
    return store.rows("SELECT * FROM runs WHERE status = 'refused'")


def artifact_dirs(home) -> list:
    root = home / "artifacts"
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


def test_a_storm_of_alerts_for_unknown_hosts_leaves_a_bounded_record(engine_env, serve):
    engine_env.runbook("ghosts", GHOST_RUNBOOK)
    served = serve().start()
    served.wait_ready()
    body = json.dumps({"version": "4", "status": "firing", "receiver": "recovery",
                       "groupKey": "{}:{}", "alerts": [ghost(i) for i in range(STORM)]},
                      separators=(",", ":"))
    assert 150_000 < len(body) < 400_000   # a few hundred KB
    answer = httpx.post(served.url + "/api/v1/alerts", content=body, timeout=30,
                        headers={"Authorization": f"Bearer {served.token}",
                                 "Content-Type": "application/json"})
    assert answer.json() == {"accepted": STORM, "duplicates": 0, "ignored": 0}

    store = Store(served.home)
    try:
        assert wait_for(lambda: store.depth() == 0 and store.one(
            "SELECT COUNT(*) FROM deliveries") == STORM, 120), served.stderr()[-2000:]
        records = refused_records(store)
        # one minute's record; a storm that straddles a minute boundary makes two
        assert 1 <= len(records) <= 2, len(records)
        assert len(artifact_dirs(served.home)) == len(records)
        assert sum(r["count"] for r in records) == STORM
        assert {r["target"] for r in records} == {"-"}
        assert store.one("SELECT COUNT(*) FROM incidents") == 0
    finally:
        store.close()

    runs = [r for r in history(served) if r["status"] == "refused"]
    assert sum(r["count"] for r in runs) == STORM
    first = runs[-1]
    assert len(first["fingerprints"]) == MAX_FINGERPRINTS and "ghost0000" in first["fingerprints"]
    assert "unknown target" in first["reason"]

    operator = (served.home / "operator.token").read_text().strip()
    auth = {"Authorization": f"Bearer {operator}"}
    api = httpx.get(served.url + "/api/v1/runs?status=refused", headers=auth, timeout=10)
    assert sum(r["count"] for r in api.json()["runs"]) == STORM
    metrics = httpx.get(served.url + "/metrics", headers=auth, timeout=10).text
    line = ('infra_recovery_attempts_total{component="ghosts",outcome="refused",'
            'strategy="-"}')
    assert f"{line} {float(STORM)}" in metrics, [m for m in metrics.splitlines()
                                                  if "attempts_total" in m]

    # every alert's refusal is still found by its fingerprint: listed in the record, or
    # (past the first 100) through its delivery, which names the record
    for fingerprint in ("ghost0000", f"ghost{STORM - 1:04d}"):
        shown = subprocess.run([sys.executable, "-m", "engine", "show", fingerprint],
                               env=served.environ(), capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "unknown target" in shown.stdout and "refused" in shown.stdout
        assert any(r["id"] in shown.stdout for r in runs), shown.stdout

