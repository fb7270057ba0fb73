"""Runbooks and inventory edits for the tests of reloading: a host to add to the
inventory, a runbook whose one step needs approval, and that step parked."""

from __future__ import annotations

from pathlib import Path

from engine.lifecycle import RunStatus
from tests.support.engine_env import EngineEnv

NEW_HOST = """\
    cache-3:
      ansible_host: 192.0.2.12
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


def add_host(env: EngineEnv) -> None:
    inventory = env.root / "inventory" / "hosts.yml"
    inventory.write_text(inventory.read_text() + NEW_HOST)


def guarded(env: EngineEnv, marker: Path, *, match: bool = False) -> Path:
    return env.runbook("guarded", ("""
        match:
          - alertname="test-alert"
        target: "{{ labels.instance }}"
    """ if match else "\n") + f"""
        strategies:
          - name: touch
            action: test.touch
            with: {{path: "{marker}"}}
            approval: required
    """)


def parked_step(engine_env: EngineEnv, run_incident) -> tuple:
    """A step of ``guarded`` on cache-1 parked for approval: (ctx, incident, run, marker)."""
    marker = engine_env.root / "touched"
    guarded(engine_env, marker)
    ctx = engine_env.context()
    incident = run_incident(ctx, "guarded", target="cache-1", requested_by="pager").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.PENDING_APPROVAL
    return ctx, incident, run, marker
