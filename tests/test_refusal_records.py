"""Refusals are recorded without filling the disk: one record per (reason, runbook,
target or ``-``) per minute, with a ``count`` and up to 100 ``fingerprints``; metrics
still count every alert; ``recovery show FINGERPRINT`` still finds each alert's refusal.

Seen: a 200 KB notification of 2,000 alerts for unknown hosts created 2,000 refused run
records and 2,000 artifact directories."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from engine.alerts.alert import Alert
from engine.alerts.intake import drain
from engine.orchestration.lifecycle import IncidentState, RunStatus
from engine.orchestration.refusals import MAX_FINGERPRINTS
from tests.alertmanager import iso_at
from tests.service import Store, history, wait_for

RUNBOOK = """
    match: ['alertname="GhostDown"']
    target: "{{ labels.instance }}"
    strategies: [{name: fix, action: test.ok}]
"""
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
    engine_env.runbook("ghosts", RUNBOOK)
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


# -- the rule, in this process ------------------------------------------------------------


def alert(i: int, *, instance: str | None = None, fingerprint: str | None = None,
          **labels: str) -> Alert:
    return Alert(status="firing",
                 labels={"alertname": "GhostDown",
                         "instance": instance or f"ghost-{i}.example:9100", **labels},
                 starts_at=iso_at(time.time() - 60), fingerprint=fingerprint or f"fp{i}",
                 receiver="recovery")


def journal(ctx, *alerts: Alert) -> None:
    ctx.store.enqueue_alerts([(a.dedup_key, a.to_payload()) for a in alerts])
    while drain(ctx):
        pass


@pytest.fixture
def ghosts(engine_env):
    engine_env.runbook("ghosts", RUNBOOK)
    return engine_env.context()


def test_a_record_keeps_the_first_hundred_fingerprints_and_counts_them_all(ghosts):
    ctx = ghosts
    journal(ctx, *(alert(i) for i in range(150)))
    [record] = ctx.store.query_runs(status="refused")
    assert record.count == 150 and record.target == "-"
    assert record.fingerprints == [f"fp{i}" for i in range(MAX_FINGERPRINTS)]
    assert record.to_dict()["count"] == 150
    assert ctx.store.query_runs(fingerprint="fp7") == [record]
    assert ctx.store.query_runs(fingerprint="fp120") == []          # counted, not listed
    assert {d.run_id for d in ctx.store.deliveries(limit=None)} == {record.id}
    assert len(list(ctx.artifacts_dir.iterdir())) == 1
    assert "ghost-0.example" in record.reason                        # the first one's words


def test_refusals_of_another_reason_runbook_or_minute_are_records_of_their_own(engine_env):
    from engine.orchestration import refusals
    from engine.records import Switch

    engine_env.runbook("ghosts", RUNBOOK)
    engine_env.runbook("other", RUNBOOK.replace("GhostDown", "OtherDown"))
    ctx = engine_env.context()
    ctx.store.add_switch(Switch("sw-1", None, "cache-1", None, created_at=time.time()))
    journal(ctx, alert(1), alert(2), alert(3, instance=""),     # unknown, whatever the words
            alert(4, alertname="OtherDown"),                    # another runbook
            alert(5, instance="cache-1"))                       # another reason and target
    records = ctx.store.query_runs(status="refused")
    assert sorted((r.runbook, r.target, r.gate, r.count) for r in records) == [
        ("ghosts", "-", "target", 3), ("ghosts", "cache-1", "kill_switch", 1),
        ("other", "-", "target", 1)]
    now = time.time()
    assert (refusals.refusal_key(records[0], "k", now)
            != refusals.refusal_key(records[0], "k", now + refusals.WINDOW))


def test_a_manual_refusal_of_an_unknown_target_is_counted_too(ghosts, run_incident):
    ctx = ghosts
    for name in ("nope-1", "nope-2", "{{ lookup('pipe','id') }}"):
        opened = run_incident(ctx, "ghosts", target=name)
        assert opened.incident is None and opened.refusal.startswith("unknown target")
        assert name in opened.refusal                    # the operator reads their own
    [record] = ctx.store.query_runs(status="refused")
    assert (record.count, record.trigger) == (3, "manual")


def test_kill_switch_refusals_of_alerts_are_counted_into_one_record(engine_env):
    engine_env.runbook("ghosts", RUNBOOK)
    ctx = engine_env.context()
    from engine.records import Switch

    ctx.store.add_switch(Switch("sw-1", None, "cache-1", None, reason="drill",
                                created_by="alice", created_at=time.time()))
    journal(ctx, *(alert(i, instance="cache-1") for i in range(5)))
    [record] = ctx.store.query_runs(status="refused")
    assert (record.count, record.gate, record.target) == (5, "kill_switch", "cache-1")
    incidents = ctx.store.list_incidents()
    assert len(incidents) == 5 and {i.state for i in incidents} == {IncidentState.CANCELED}
    for incident in incidents:                    # each incident still finds its refusal
        assert ctx.store.query_runs(incident_id=incident.id) == [record]
    assert len(list(ctx.artifacts_dir.iterdir())) == 1
    assert record.status == RunStatus.REFUSED


def test_the_store_counts_lists_links_and_prunes_a_refusal_record(tmp_path):
    from engine.records import RunRecord
    from engine.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "r.db")
    t = time.time() - 3600

    def refusal(i: int) -> RunRecord:
        return RunRecord(id=f"run-{i}", component="c", runbook="c", strategy="-",
                         target="-", status=RunStatus.REFUSED, trigger="alert",
                         started_at=t, finished_at=t, fingerprint=f"fp{i % 4}",
                         incident_id=f"inc-{i}", reason=f"refused {i}")

    records = [store.add_refusal(refusal(i), "key", max_fingerprints=3) for i in range(6)]
    assert [r.id for r in records] == ["run-0"] * 6
    record = store.get_run("run-0")
    assert (record.count, record.fingerprints, record.reason) == (6, ["fp0", "fp1", "fp2"],
                                                                 "refused 0")
    assert store.query_runs(incident_id="inc-2") == [record]
    assert store.query_runs(incident_id="inc-4") == []       # past the first 3: counted only
    assert store.add_refusal(refusal(9), "another", max_fingerprints=3).id == "run-9"
    assert sorted(store.delete_before(time.time())) == ["run-0", "run-9"]   # retention
    assert store.query_runs(fingerprint="fp0") == []
    assert store._read("SELECT COUNT(*) AS n FROM refusal_members")[0]["n"] == 0
