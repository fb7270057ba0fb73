"""Per-host outcomes from a real ansible-runner run to where an operator reads them: the
run record in the store, run.json, `recovery show`, `recovery history --json`, the HTTP
API and the host metric.

A run over several hosts is recorded as a group step will record it (``new_run``,
``open_record``, the executor with a limit of several hosts, ``end_run``); a run of an
incident goes through the orchestrator. The hosts are local-connection hosts of
tests/fixtures/inventory/hosts.yml that per_host.yml treats each its own way, and
``ghost`` (SSH to 127.0.0.1 port 1: refused at once).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time

from engine.cli import main
from engine.config import load_config
from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.orchestration.step import end_run, new_run, open_record
from engine.records import Incident, new_id
from engine.reporting.metrics import render_text
from tests.support.paths import TEST_INVENTORY, TEST_PLAYBOOKS
from tests.support.webhook_app import AS_ALICE, Service

FLEET = "fleet_ok,fleet_changed,fleet_failed,ghost,fleet_skipped"
EXPECTED = [("fleet_ok", "ok"), ("fleet_changed", "changed"), ("fleet_failed", "failed"),
            ("ghost", "unreachable"), ("fleet_skipped", "skipped")]


def fleet_home(engine_env) -> None:
    """The engine home with the test inventory, per_host.yml and a runbook running it."""
    shutil.copy(TEST_INVENTORY, engine_env.root / "inventory" / "hosts.yml")
    shutil.copy(TEST_PLAYBOOKS / "per_host.yml", engine_env.root / "playbooks")
    engine_env.runbook("fleet", "component: web\n"
                       "strategies: [{name: act, playbook: per_host.yml}]\n")


def cli(engine_env, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--config", str(engine_env.config_path), *args]) == 0
    return out.getvalue()


def test_a_run_over_several_hosts_shows_each_hosts_outcome_everywhere(engine_env) -> None:
    fleet_home(engine_env)
    ctx = engine_env.context()
    runbook = ctx.runbook("fleet")
    strategy = runbook.strategies[0]
    incident = Incident(id=new_id("inc"), runbook="fleet", component="web",
                        target="fleet_ok", opened_at=time.time())
    run = new_run(ctx, incident, runbook, strategy, RunStatus.RUNNING, time.time(),
                  incident_id=None)
    artifacts = open_record(ctx, run, {})
    ctx.store.add_run(run)
    result = ctx.ansible.run(artifacts=artifacts, playbook="per_host.yml", limit=FLEET,
                             extravars={}, forks=3, timeout=60)
    end_run(ctx, run, artifacts, result.status, result.reason, None, None,
            data=result.data, already_added=True)

    stored = ctx.store.get_run(run.id)
    assert stored.status == RunStatus.PARTIAL, stored.reason
    assert [(h["host"], h["outcome"]) for h in stored.hosts] == EXPECTED
    assert stored.hosts == result.data["hosts"]
    assert stored.reason.startswith("2 of 5 hosts failed: ")
    assert artifacts.read_run_json()["hosts"] == stored.hosts
    assert artifacts.read_run_json()["ansible"]["forks"] == 3

    [listed] = json.loads(cli(engine_env, "history", "--json"))
    assert listed["status"] == "partial" and listed["hosts"] == stored.hosts
    shown = cli(engine_env, "show", run.id)
    assert "  hosts:" in shown
    assert ("    fleet_failed   failed       task 'Break on purpose': fleet_failed is "
            "broken on purpose") in shown
    assert "    ghost          unreachable  task 'Reach the host': " in shown
    assert "    fleet_skipped  skipped      -" in shown

    metrics = render_text(ctx)
    for outcome in ("ok", "changed", "failed", "unreachable", "skipped"):
        assert (f'infra_recovery_host_outcomes_total{{component="web",outcome="{outcome}",'
                f'strategy="act"}} 1.0') in metrics
    assert ('infra_recovery_attempts_total{component="web",outcome="failed",'
            'strategy="act"} 1.0') in metrics   # a partial run counts as failed

    config = load_config(engine_env.config_path)
    service = Service(config, context=EngineContext(config))
    [api_run] = service.client.get("/api/v1/runs", headers=AS_ALICE).json["runs"]
    assert api_run["hosts"] == stored.hosts
    one = service.client.get(f"/api/v1/runs/{run.id}", headers=AS_ALICE).json
    assert one["run"]["hosts"] == stored.hosts and one["run_json"]["hosts"] == stored.hosts


def test_an_incidents_playbook_run_records_its_hosts_outcome(engine_env, run_incident) -> None:
    """Through the orchestrator: the executor's own entry for the incident's host (the
    failing task's words), counted in the host metric."""
    fleet_home(engine_env)
    ctx = engine_env.context()
    opened = run_incident(ctx, "fleet", target="fleet_failed")
    [run] = ctx.store.query_runs(incident_id=opened.incident.id)

    assert run.status == RunStatus.FAILED
    assert run.hosts == [{"host": "fleet_failed", "outcome": "failed",
                          "reason": "task 'Break on purpose': fleet_failed is broken on "
                          "purpose"}]
    assert ('infra_recovery_host_outcomes_total{component="web",outcome="failed",'
            'strategy="act"} 1.0') in render_text(ctx)
