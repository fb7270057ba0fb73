"""Refusals are recorded without filling the disk: one record per (reason, runbook,
target or ``-``) per minute, with a ``count`` and up to 100 ``fingerprints``; metrics
still count every alert; ``recovery show FINGERPRINT`` still finds each alert's refusal.

Seen: a 200 KB notification of 2,000 alerts for unknown hosts created 2,000 refused run
records and 2,000 artifact directories."""

from __future__ import annotations

import time

import pytest

from engine.alerts.alert import Alert
from engine.alerts.intake import drain
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.refusals import MAX_FINGERPRINTS
from tests.support.alertmanager import iso_at
from tests.support.alerts import GHOST_RUNBOOK

# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """The whole test in one counting window: refusals count per minute, and a test that
    straddled a minute on a loaded machine counted its alerts into two records. The
    test of the minute rule reads ``WINDOW`` back, so it still crosses one."""
    from engine.orchestration import refusals

    monkeypatch.setattr(refusals, "WINDOW", 1e9)

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
    engine_env.runbook("ghosts", GHOST_RUNBOOK)
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

    engine_env.runbook("ghosts", GHOST_RUNBOOK)
    engine_env.runbook("other", GHOST_RUNBOOK.replace("GhostDown", "OtherDown"))
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
    engine_env.runbook("ghosts", GHOST_RUNBOOK)
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


def test_the_store_counts_lists_links_and_prunes_a_refusal_record(store_url):
    from engine.records import RunRecord
    from engine.store import open_store

    store = open_store(store_url)
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
    assert store.query_runs(incident_id="inc-2") == []          # its links went with it
    assert store.add_refusal(refusal(10), "key", max_fingerprints=3).id == "run-10"
