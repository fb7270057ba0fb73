"""engine.reporting.reports: the figures `recovery status` (and later /api/v1/status) show,
computed from a seeded store whose right answers are known."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import load_config
from engine.context import EngineContext
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import (
    Approval,
    Attempt,
    DegradedReason,
    Incident,
    RunRecord,
    Switch,
)
from engine.reporting.reports import component_stats, cooldowns, degraded_modes, status_report
from engine.runbooks.model import Cooldown, DegradedModeSpec, Runbook, Strategy
from engine.store import Store, open_store

NOW = 1_800_000_000.0
HOUR = 3600.0
WINDOW = 24 * HOUR


# Every test runs on each state backend (tests/support/state_backends.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()


def add_run(store: Store, component: str, status: RunStatus, started: float, *,
            check: bool = False, n: list[int] = [0]) -> None:  # noqa: B006 - a counter
    n[0] += 1
    store.add_run(RunRecord(id=f"run-{n[0]:04d}", component=component, runbook=component,
                            strategy="s", target="h", status=status, started_at=started,
                            finished_at=started + 1, check_mode=check))


def add_incident(store: Store, component: str, target: str, state: IncidentState,
                 opened: float, closed: float | None = None) -> Incident:
    incident = Incident(id=f"inc-{component}-{target}-{opened:.0f}", runbook=component,
                        component=component, target=target, state=IncidentState.REMEDIATING,
                        opened_at=opened, updated_at=opened)
    store.open_incident(incident)
    if state != IncidentState.REMEDIATING:
        store.update_incident(incident.id, state=state, closed_at=closed,
                              updated_at=closed or opened)
    return store.get_incident(incident.id)


def seed(store: Store) -> None:
    # redis, in the window: 3 succeeded, 1 failed, 1 interrupted (counts as failed);
    # not counted: a failed check-mode run, a skipped and a refused run, a success
    # from before the window.
    for status in (RunStatus.SUCCEEDED,) * 3 + (RunStatus.FAILED, RunStatus.INTERRUPTED):
        add_run(store, "redis", status, NOW - HOUR)
    add_run(store, "redis", RunStatus.FAILED, NOW - HOUR, check=True)
    add_run(store, "redis", RunStatus.SKIPPED, NOW - HOUR)
    add_run(store, "redis", RunStatus.REFUSED, NOW - HOUR)
    add_run(store, "redis", RunStatus.SUCCEEDED, NOW - WINDOW - HOUR)
    # redis incidents: two recovered in the window (60 s and 120 s), one recovered long
    # ago, one failed in the window, one still open.
    add_incident(store, "redis", "a", IncidentState.RECOVERED, NOW - 2 * HOUR, NOW - 2 * HOUR + 60)
    add_incident(store, "redis", "b", IncidentState.RECOVERED, NOW - 3 * HOUR, NOW - 3 * HOUR + 120)
    add_incident(store, "redis", "c", IncidentState.RECOVERED, NOW - 3 * WINDOW,
                 NOW - 3 * WINDOW + 5)
    add_incident(store, "redis", "d", IncidentState.FAILED, NOW - HOUR, NOW - HOUR + 30)
    add_incident(store, "redis", "e", IncidentState.REMEDIATING, NOW - 60)


def test_success_rate_and_mttr_over_the_window(store: Store) -> None:
    seed(store)
    redis, chroma = component_stats(store, ["redis", "chromadb"], WINDOW, NOW)
    assert redis["component"] == "redis"
    assert (redis["succeeded"], redis["failed"]) == (3, 2)
    assert redis["success_rate"] == pytest.approx(0.6)
    assert redis["runs"] == 7  # counted ones plus skipped and refused, check mode never
    assert redis["recovered"] == 2
    assert redis["mttr_seconds"] == pytest.approx(90.0)
    assert redis["incidents_ended"]["failed"] == 1
    assert redis["incidents_ended"]["recovered"] == 2
    assert redis["open_incidents"] == 1
    assert redis["last_incident"]["target"] == "e"
    assert chroma["success_rate"] is None and chroma["mttr_seconds"] is None
    assert chroma["runs"] == 0 and chroma["open_incidents"] == 0


def test_a_shorter_window_sees_less(store: Store) -> None:
    seed(store)
    (redis,) = component_stats(store, ["redis"], 2.5 * HOUR, NOW)
    assert redis["recovered"] == 1 and redis["mttr_seconds"] == pytest.approx(60.0)
    assert redis["success_rate"] == pytest.approx(0.6)  # the runs were an hour ago


def start_attempt(store: Store, attempt_id: str, target: str, started: float) -> None:
    """An attempt as the engine starts one: with its first step, on a remediating incident."""
    incident = add_incident(store, "redis", f"{target}-{attempt_id}", IncidentState.REMEDIATING,
                            started)
    run = RunRecord(id=f"run-{attempt_id}", component="redis", runbook="redis",
                    strategy="reconnect", target=target, status=RunStatus.RUNNING,
                    incident_id=incident.id, started_at=started)
    store.begin_step(run, Attempt(id=attempt_id, incident_id=incident.id, runbook="redis",
                                  target=target, started_at=started))


def runbook(name: str = "redis", **kw) -> Runbook:
    return Runbook(name=name, component=name, path=f"runbooks/{name}.yml", sha256="0" * 64,
                   strategies=(Strategy(name="reconnect", action="test.ok"),), **kw)


def test_cooldowns_report_attempts_and_the_next_allowed_time(store: Store) -> None:
    rb = runbook(cooldown=Cooldown(max_attempts=2, window=HOUR, after_failure=300))
    add_incident(store, "redis", "cache-1", IncidentState.RECOVERED, NOW - 600, NOW - 500)
    add_incident(store, "redis", "cache-2", IncidentState.FAILED, NOW - 200, NOW - 100)
    for i, started in enumerate((NOW - 1800, NOW - 600)):
        start_attempt(store, f"att-{i}", "cache-1", started)
        store.finish_attempt(f"att-{i}", AttemptOutcome.RECOVERED, started + 10)
    start_attempt(store, "att-f", "cache-2", NOW - 200)
    store.finish_attempt("att-f", AttemptOutcome.FAILED, NOW - 100)

    rows = {r["target"]: r for r in cooldowns(store, [rb], NOW)}
    assert rows["cache-1"]["attempts"] == 2 and rows["cache-1"]["cooling"]
    assert rows["cache-1"]["next_allowed_at"] == pytest.approx(NOW - 1800 + HOUR)
    assert rows["cache-2"]["attempts"] == 1 and rows["cache-2"]["cooling"]
    assert rows["cache-2"]["next_allowed_at"] == pytest.approx(NOW - 100 + 300)
    assert "failed" in rows["cache-2"]["reason"]
    later = {r["target"]: r for r in cooldowns(store, [rb], NOW + 2 * HOUR)}
    assert later == {}


def test_degraded_modes_merge_config_runbooks_and_reasons(store: Store) -> None:
    store.add_degraded(DegradedReason(mode="redis_unavailable", key="incident:i1",
                                      target="cache-1", incident_id="i1", since=NOW))
    store.add_degraded(DegradedReason(mode="ad_hoc", key="manual", manual=True,
                                      created_by="ops", since=NOW))
    configured = {"redis_unavailable": {"capabilities": {"cache_reads": False}}}
    rbs = [runbook(degraded_mode=DegradedModeSpec("redis_unavailable")),
           runbook("chromadb", degraded_mode=DegradedModeSpec("chromadb_unavailable"))]
    modes = {m["mode"]: m for m in degraded_modes(store, configured, rbs)}
    assert list(modes) == ["redis_unavailable", "chromadb_unavailable", "ad_hoc"]
    assert modes["redis_unavailable"]["active"] and not modes["redis_unavailable"]["manual"]
    assert modes["redis_unavailable"]["capabilities"] == {"cache_reads": False}
    assert modes["redis_unavailable"]["runbooks"] == ["redis"]
    assert not modes["chromadb_unavailable"]["active"]
    assert modes["ad_hoc"]["manual"] and not modes["ad_hoc"]["configured"]


def test_status_report_puts_it_together(tmp_path: Path, store: Store) -> None:
    (tmp_path / "recovery.yml").write_text(
        "home: var\nstatus_window: 24h\n"
        "degraded_modes:\n  redis_unavailable:\n    capabilities: {cache_reads: false}\n")
    config = load_config(tmp_path / "recovery.yml", environ={})
    rbs = [runbook(degraded_mode=DegradedModeSpec("redis_unavailable")), runbook("system")]
    ctx = EngineContext(config, store=store, runbooks=rbs)
    seed(store)
    store.add_degraded(DegradedReason(mode="redis_unavailable", key="manual", manual=True,
                                      created_by="ops", since=NOW))
    store.add_switch(Switch(id="sw-1", component="system", target=None, until=None,
                            created_by="ops", created_at=NOW))
    store.add_approval(Approval(run_id="run-p", incident_id=None, runbook="redis",
                                component="redis", strategy="reconnect", target="a",
                                requested_at=NOW, expires_at=NOW + HOUR))
    store.acquire_lock("cache-9", "someone", 3600, run_id="run-l", component="redis")

    report = status_report(ctx, NOW)
    assert report["store"]["reachable"] and report["problems"] == []
    comps = {c["component"]: c for c in report["components"]}
    assert comps["redis"]["health"] == "degraded"
    assert comps["redis"]["degraded_modes"] == ["redis_unavailable"]
    assert comps["redis"]["success_rate"] == pytest.approx(0.6)
    assert comps["system"]["health"] == "idle"
    assert [s["scope"] for s in report["switches"]] == ["component=system"]
    assert report["pending_approvals"] == 1
    assert [lk["target"] for lk in report["locks"]] == ["cache-9"]
    assert report["window"] == WINDOW


def test_a_target_down_under_a_kill_switch_is_not_ok(tmp_path: Path, store: Store) -> None:
    """RedisDown fires and a kill switch refuses it: status shows the refusal (per
    component and target, the newest one) and redis is "refused", not "ok". An alert
    that resolved since, or ran since, is not listed."""
    from engine.records import Delivery

    (tmp_path / "recovery.yml").write_text("home: var\nstatus_window: 24h\n")
    ctx = EngineContext(load_config(tmp_path / "recovery.yml", environ={}), store=store,
                        runbooks=[runbook(), runbook("system")])
    add_run(store, "redis", RunStatus.SUCCEEDED, NOW - 2 * HOUR)        # it was fine

    def refusal(run_id: str, fingerprint: str, at: float, gate: str = "kill_switch") -> None:
        store.add_run(RunRecord(
            id=run_id, component="redis", runbook="redis", strategy="reconnect",
            target="cache-1", status=RunStatus.REFUSED, trigger="alert", started_at=at,
            finished_at=at, fingerprint=fingerprint, gate=gate,
            reason="auto-recovery disabled for target=cache-1 until enabled again"))

    def delivered(fingerprint: str, status: str, at: float) -> None:
        store.ack_intake([], [Delivery(
            fingerprint=fingerprint, status=status, starts_at=None, received_at=at,
            processed_at=at, outcome="-", payload={"labels": {"alertname": "RedisDown"}})])

    delivered("fp-down", "firing", NOW - 600)
    refusal("run-r1", "fp-down", NOW - 600)
    delivered("fp-down", "firing", NOW - 60)
    refusal("run-r2", "fp-down", NOW - 60)              # refused again: the newest counts
    delivered("fp-gone", "firing", NOW - 500)
    refusal("run-r3", "fp-gone", NOW - 500)
    delivered("fp-gone", "resolved", NOW - 400)         # resolved since: not listed
    refusal("run-r4", "fp-unknown-target", NOW - 300, gate="target")   # not the switch

    report = status_report(ctx, NOW)
    comps = {c["component"]: c for c in report["components"]}
    assert comps["redis"]["health"] == "refused"
    assert comps["system"]["health"] == "idle"
    [row] = report["refused_alerts"]
    assert (row["component"], row["target"], row["alertname"], row["run_id"],
            row["refusals"], row["firing"]) == ("redis", "cache-1", "RedisDown", "run-r2",
                                                2, True)
    # once it has run again, it is no longer "refused"
    store.add_run(RunRecord(id="run-replayed", component="redis", runbook="redis",
                            strategy="reconnect", target="cache-1", trigger="alert",
                            status=RunStatus.SUCCEEDED, started_at=NOW - 30,
                            finished_at=NOW - 20, fingerprint="fp-down"))
    report = status_report(ctx, NOW)
    assert report["refused_alerts"] == []
    assert {c["component"]: c for c in report["components"]}["redis"]["health"] == "ok"
