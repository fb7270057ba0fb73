"""The incidents the metrics tests read back: a tiny ``demo`` runbook (actions from
tests/support/engine_actions.py) driven through ``open_incident`` + ``advance`` on four
inventory hosts: web-1 recovers, web-2 fails (exhausted: degraded mode on, failure
cooldown), web-3 is refused by a kill switch, web-2 again is deferred by the cooldown,
web-4 parks for approval."""

from __future__ import annotations

import time
from pathlib import Path

from engine.context import EngineContext
from engine.lifecycle import IncidentState
from engine.orchestration.attempt import advance
from engine.orchestration.triggers import TriggerRequest, open_incident
from engine.records import Switch, new_id

RUNBOOK = """\
name: demo
component: demo
match:
  - alertname="DemoDown"
target: "{{ labels.instance }}"
strategies:
  - name: first
    action: test.ok
    when: [ok]
  - name: broken
    action: test.fail
    when: [bad]
  - name: gated
    action: test.ok
    when: [gated]
    approval: required
cooldown: {max_attempts: 3, window: 1h, after_failure: 300s}
degraded_mode: {name: demo_unavailable, when: exhausted}
verify: {action: test.ok, interval: 0.05s}
"""

INVENTORY = """\
all:
  hosts:
    web-1: {ansible_connection: local}
    web-2: {ansible_connection: local}
    web-3: {ansible_connection: local}
    web-4: {ansible_connection: local}
"""

CONFIG = """\
home: var
runbooks: runbooks
playbooks: playbooks
inventory: inventory/hosts.yml
action_modules: [tests.support.engine_actions]
degraded_modes:
  demo_unavailable: {description: the demo service is down}
  other_mode: {description: "configured, never switched on"}
"""


def write_config(root: Path) -> Path:
    for folder in ("runbooks", "playbooks", "inventory"):
        (root / folder).mkdir()
    (root / "runbooks" / "demo.yml").write_text(RUNBOOK)
    (root / "inventory" / "hosts.yml").write_text(INVENTORY)
    config = root / "recovery.yml"
    config.write_text(CONFIG)
    return config


def drive(ctx: EngineContext, target: str, failure_type: str):
    opened = open_incident(ctx, TriggerRequest(
        runbook="demo", target=target, failure_type=failure_type, trigger="alert",
        labels={"alertname": "DemoDown", "instance": target}))
    assert opened.claimed, opened.refusal
    return advance(ctx, opened.incident.id)


def drive_scenario(ctx: EngineContext) -> None:
    assert drive(ctx, "web-1", "ok").state == IncidentState.RECOVERED
    assert drive(ctx, "web-2", "bad").state == IncidentState.FAILED
    ctx.store.add_switch(Switch(id=new_id("sw"), component="demo", target="web-3", until=None,
                                reason="maintenance", created_by="test",
                                created_at=time.time()))
    assert drive(ctx, "web-3", "ok").state == IncidentState.CANCELED
    deferred = drive(ctx, "web-2", "bad")
    assert deferred.state == IncidentState.OPEN and "cooldown" in deferred.reason
    parked = drive(ctx, "web-4", "gated")
    assert parked.state == IncidentState.REMEDIATING
