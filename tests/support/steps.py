"""Steps the HTTP tests act on: one parked for approval (the runbook of
tests/unit/test_approvals.py), and a real playbook that says hello on its target."""

from __future__ import annotations

from engine.lifecycle import RunStatus

HELLO = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: say something
          ansible.builtin.debug:
            msg: "hello from {{ recovery_target }}"
"""


def park_a_step(engine_env, run_incident):
    """An incident on cache-1 whose first step (``test.touch`` of a marker file) waits
    for approval: (ctx, incident, run, marker)."""
    marker = engine_env.root / "flushed"
    engine_env.runbook("demo", f"""
        approval_timeout: 1h
        strategies:
          - {{name: flush, action: test.touch, with: {{path: "{marker}"}},
              approval: required}}
        degraded_mode: {{name: test_down}}
    """)
    ctx = engine_env.context()
    incident = run_incident(ctx, "demo", target="cache-1", requested_by="pager").incident
    [run] = ctx.store.query_runs(incident_id=incident.id)
    assert run.status == RunStatus.PENDING_APPROVAL
    return ctx, incident, run, marker
