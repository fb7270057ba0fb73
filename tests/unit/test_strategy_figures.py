"""Per-strategy figures (engine.reporting.strategies): attempts, success rate, median and
p95 time to recover, last failure, the failing flag; the same in `recovery status
--by-strategy` (text and --json), `GET /api/v1/strategies` and the
`infra_recovery_strategy_duration_seconds` histogram of /metrics."""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.cli import main
from engine.lifecycle import RunStatus
from engine.records import RunRecord
from engine.reporting.metrics import STRATEGY_DURATION, render_text
from engine.reporting.strategies import strategy_figures
from engine.store.sqlite import SQLiteStore
from tests.support.echo_runbook import install_echo_runbook
from tests.support.webhook_app import AS_ALICE, Service

NOW = 1_800_000_000.0
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "recovery.db")


def add(store: SQLiteStore, strategy: str, status: RunStatus, took: float, *,
        ago: float = HOUR, reason: str = "", check: bool = False,
        n: list[int] = [0]) -> None:  # noqa: B006 - a counter
    n[0] += 1
    started = NOW - ago
    store.add_run(RunRecord(id=f"run-{n[0]:05d}", component="redis", runbook="redis",
                            strategy=strategy, target="h", status=status,
                            started_at=started, finished_at=started + took, reason=reason,
                            check_mode=check))


def by_strategy(rows: list[dict]) -> dict[str, dict]:
    return {r["strategy"]: r for r in rows}


def test_figures_from_known_durations(store: SQLiteStore) -> None:
    # reconnect: 20 successes taking 1..20 s, 4 failures (one interrupted, one partial)
    for took in range(1, 21):
        add(store, "reconnect", RunStatus.SUCCEEDED, float(took))
    add(store, "reconnect", RunStatus.FAILED, 50.0, ago=2 * HOUR, reason="older failure")
    add(store, "reconnect", RunStatus.INTERRUPTED, 3.0, ago=HOUR / 2, reason="killed")
    add(store, "reconnect", RunStatus.PARTIAL, 3.0, ago=3 * HOUR, reason="one host")
    add(store, "reconnect", RunStatus.FAILED, 3.0, ago=4 * HOUR, reason="oldest")
    # not counted: check mode, refused, deferred, canceled, and a success outside the window
    add(store, "reconnect", RunStatus.FAILED, 1.0, check=True, reason="check")
    add(store, "reconnect", RunStatus.REFUSED, 0.0, reason="disabled")
    add(store, "reconnect", RunStatus.DEFERRED, 0.0, reason="cooldown")
    add(store, "reconnect", RunStatus.CANCELED, 0.0, reason="rejected")
    add(store, "reconnect", RunStatus.SUCCEEDED, 999.0, ago=30 * HOUR)
    # restart_container: 3 failures, no success -> failing
    for i in range(3):
        add(store, "restart_container", RunStatus.FAILED, 10.0, ago=HOUR + 1 + i,
            reason=f"docker said no {i}")
    # flush_corrupted: 2 failures only -> not enough to be called failing
    for _ in range(2):
        add(store, "flush_corrupted", RunStatus.FAILED, 10.0, reason="scan")

    rows = strategy_figures(store, [], 24 * HOUR, NOW)
    assert rows[0]["strategy"] == "restart_container", "a failing strategy comes first"
    got = by_strategy(rows)
    reconnect = got["reconnect"]
    assert (reconnect["attempts"], reconnect["succeeded"], reconnect["failed"]) == (24, 20, 4)
    assert reconnect["success_rate"] == pytest.approx(20 / 24)
    assert reconnect["median_seconds"] == pytest.approx(10.5)   # (10 + 11) / 2
    assert reconnect["p95_seconds"] == pytest.approx(19.0)      # rank ceil(0.95 * 20) = 19
    assert reconnect["last_failure"] == {"reason": "killed", "at": pytest.approx(
        NOW - HOUR / 2 + 3.0)}
    assert not reconnect["failing"]
    restart = got["restart_container"]
    assert restart["failing"] and restart["success_rate"] == 0.0 and restart["attempts"] == 3
    assert restart["median_seconds"] is None and restart["p95_seconds"] is None
    assert restart["last_failure"]["reason"] == "docker said no 0"
    assert got["flush_corrupted"]["attempts"] == 2 and not got["flush_corrupted"]["failing"]

    narrow = by_strategy(strategy_figures(store, [], HOUR, NOW))
    assert narrow["reconnect"]["attempts"] == 21   # 20 successes, the interrupted run
    assert "restart_container" not in narrow       # its runs began just before the hour


@pytest.mark.parametrize("durations, median, p95", [
    ([7.0], 7.0, 7.0),
    ([3.0, 1.0, 2.0], 2.0, 3.0),                          # rank ceil(2.85) = 3
    ([float(i) for i in range(100, 0, -1)], 50.5, 95.0),  # rank ceil(95) = 95
    ([float(i) for i in range(1, 102)], 51.0, 96.0),      # odd: rank 51; ceil(95.95) = 96
])
def test_median_and_nearest_rank_p95(store: SQLiteStore, durations, median, p95) -> None:
    for took in durations:
        add(store, "s", RunStatus.SUCCEEDED, took)
    [row] = strategy_figures(store, [], 24 * HOUR, NOW)
    assert row["median_seconds"] == pytest.approx(median)
    assert row["p95_seconds"] == pytest.approx(p95)
    assert row["attempts"] == len(durations)


def test_the_figures_index_answers_the_query_alone(store: SQLiteStore,
                                                  tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "recovery.db")
    plan = " ".join(r[-1] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT component, strategy, sum(status = 'succeeded') FROM runs "
        "WHERE status IN ('succeeded', 'failed') AND coalesce(check_mode, 0) = 0 "
        "AND started_at BETWEEN 0 AND 1 GROUP BY component, strategy"))
    db.close()
    assert "COVERING INDEX runs_figures" in plan, plan


# -- through the real engine: real ansible-playbook runs of the echo runbook ----------------

HOSTS = ("web-1", "web-2", "web-3", "web-4", "web-5")


@pytest.fixture
def engine_runs(engine_env, run_incident):
    """Two runs of the echo runbook that succeed (web-1, web-2) and three of a strategy
    whose playbook fails (web-3..5), all of component ``echo``."""
    (engine_env.root / "inventory" / "hosts.yml").write_text(
        "all:\n  hosts:\n" + "".join(
            f"    {h}: {{ansible_connection: local, ansible_python_interpreter: "
            "'{{ ansible_playbook_python }}'}\n" for h in HOSTS))
    install_echo_runbook(engine_env)
    engine_env.playbook("broken.yml", """
        - hosts: all
          gather_facts: false
          tasks:
            - ansible.builtin.fail: {msg: the service will not come back}
    """)
    engine_env.runbook("echo_broken", """
        component: echo
        match: [alertname="EchoBroken"]
        strategies:
          - name: broken
            playbook: broken.yml
    """)
    ctx = engine_env.context()
    for host in HOSTS[:2]:
        run_incident(ctx, None, target=None, trigger="alert",
                     labels={"alertname": "Echo", "instance": host, "message": "hi"})
    for host in HOSTS[2:]:
        run_incident(ctx, None, target=None, trigger="alert",
                     labels={"alertname": "EchoBroken", "instance": host})
    runs = ctx.store.query_runs(component="echo", limit=None)
    assert sorted((r.strategy, r.status.value) for r in runs) == [
        ("broken", "failed")] * 3 + [("echo", "succeeded")] * 2, [r.reason for r in runs]
    return ctx, runs


def test_figures_of_real_runs_in_cli_json_api_and_metrics(engine_env, engine_runs,
                                                          capsys) -> None:
    ctx, runs = engine_runs
    took = sorted(r.duration for r in runs if r.strategy == "echo")
    failure = max((r for r in runs if r.strategy == "broken"), key=lambda r: r.finished_at)
    config = str(engine_env.config_path)

    assert main(["--config", config, "status", "--by-strategy", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    got = by_strategy(report["strategies"])
    echo, broken = got["echo"], got["broken"]
    assert (echo["attempts"], echo["succeeded"], echo["success_rate"]) == (2, 2, 1.0)
    assert echo["median_seconds"] == pytest.approx(statistics.median(took))
    assert echo["p95_seconds"] == pytest.approx(took[-1])
    assert (broken["attempts"], broken["success_rate"], broken["failing"]) == (3, 0.0, True)
    assert broken["last_failure"]["reason"] == failure.reason
    assert "the service will not come back" in failure.reason
    assert report["strategies"][0]["strategy"] == "broken"
    assert report["window"] == ctx.config.status_window

    assert main(["--config", config, "status", "--by-strategy", "--window", "1h"]) == 0
    text = capsys.readouterr().out
    assert "(last 1h;" in text and "failing: 3 or more attempts" in text
    line = next(x for x in text.splitlines() if x.split()[1:2] == ["broken"])
    assert "FAILING" in line and "0% (0/3)" in line and "will not come back" in line
    line = next(x for x in text.splitlines() if x.split()[1:2] == ["echo"])
    assert "100% (2/2)" in line and "FAILING" not in line

    service = Service(ctx.config, context=ctx)
    answer = service.client.get("/api/v1/strategies?window=1h", headers=AS_ALICE)
    assert answer.status_code == 200
    assert by_strategy(answer.get_json()["strategies"])["broken"]["failing"]
    assert answer.get_json()["window"] == HOUR
    same = service.client.get("/api/v1/status?by=strategy", headers=AS_ALICE).get_json()
    assert by_strategy(same["strategies"])["echo"]["attempts"] == 2
    assert service.client.get("/api/v1/strategies?window=soon",
                              headers=AS_ALICE).status_code == 400
    assert service.client.get("/api/v1/strategies").status_code == 401
    assert service.client.get("/api/v1/status?by=target", headers=AS_ALICE).status_code == 400

    series = {}
    for family in text_string_to_metric_families(render_text(ctx)):
        if family.name == STRATEGY_DURATION:
            for s in family.samples:
                series[(s.name, s.labels.get("strategy"), s.labels.get("outcome"),
                        s.labels.get("le"))] = s.value
    name = STRATEGY_DURATION
    assert series[(name + "_count", "echo", "succeeded", None)] == 2
    assert series[(name + "_sum", "echo", "succeeded", None)] == pytest.approx(sum(took))
    assert series[(name + "_count", "broken", "failed", None)] == 3
    assert series[(name + "_bucket", "echo", "succeeded", "14400.0")] == 2
    assert series[(name + "_bucket", "echo", "succeeded", "+Inf")] == 2
    assert (name + "_count", "echo", "failed", None) not in series


def test_window_goes_with_by_strategy(engine_env, capsys) -> None:
    code = main(["--config", str(engine_env.config_path), "status", "--window", "1h"])
    assert code == 2 and "--by-strategy" in capsys.readouterr().err
