"""Alerts as Alertmanager posts them, for the tests: the promgen fixture pointed at
inventory hosts, notifications built by hand, the engine's own ``Alert`` records, and the
runbook that touches a marker for each test alert."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from engine.alerts.alert import Alert
from tests.support.paths import ALERTMANAGER_FIXTURES

FIXTURE = ALERTMANAGER_FIXTURES / "01_promgen_firing_2alerts.json"


def alert_payload(marker_dir: Path, *instances: str, starts_at: str | None = None) -> dict:
    """The promgen fixture, its alerts pointed at inventory hosts."""
    body = json.loads(FIXTURE.read_text())
    alerts = []
    for i, instance in enumerate(instances):
        alert = copy.deepcopy(body["alerts"][i % len(body["alerts"])])
        alert["labels"]["instance"] = instance
        alert["fingerprint"] = f"{alert['fingerprint']}{i}{instance}"
        if starts_at:
            alert["startsAt"] = starts_at
        alerts.append(alert)
    body["alerts"] = alerts
    return body


def touch_runbook(env, marker_dir: Path, name: str = "touchy",
                  marker: str = "{{ labels.instance }}.marker",
                  trace: Path | None = None) -> None:
    """A runbook for the test alerts that touches ``marker_dir/marker`` (a template);
    with ``trace``, each touch appends a line there (``touch <target> <pid>``)."""
    traced = f', trace: "{trace}"' if trace else ""
    env.runbook(name, f"""
        match:
          - alertname="test-alert"
        target: "{{{{ labels.instance }}}}"
        strategies:
          - name: touch
            action: test.touch
            with: {{path: "{marker_dir}/{marker}"{traced}}}
    """)


def good_alert(instance: str, status: str = "firing") -> dict:
    return {"status": status, "labels": {"alertname": "RedisDown", "instance": instance},
            "annotations": {"summary": "down"}, "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"fp-{instance}"}


def notification(*alerts: dict, **top) -> dict:
    body = {"version": "4", "status": "firing", "receiver": "recovery",
            "groupKey": '{}:{alertname="RedisDown"}', "alerts": list(alerts)}
    body.update(top)
    return body


# A runbook for alerts of hosts the inventory does not know (ghost-N.example).
GHOST_RUNBOOK = """
    match: ['alertname="GhostDown"']
    target: "{{ labels.instance }}"
    strategies: [{name: fix, action: test.ok}]
"""


STARTS = "2024-05-01T10:00:00.000000Z"


def alert(status: str = "firing", *, instance: str = "cache-1.example:9121",
          starts_at: str = STARTS, fingerprint: str = "fp-demo",
          ends_at: str = "2024-05-01T10:05:00.000000Z", **labels: str) -> Alert:
    return Alert(status=status,
                 labels={"alertname": "DemoDown", "component": "demo", "instance": instance,
                         **labels},
                 annotations={"summary": "demo is down"}, starts_at=starts_at,
                 ends_at=None if status == "firing" else ends_at,
                 fingerprint=fingerprint, receiver="web\\.hook")


def journal(ctx, *alerts: Alert) -> None:
    accepted, _ = ctx.store.enqueue_alerts([(a.dedup_key, a.to_payload()) for a in alerts])
    assert accepted == len(alerts)
