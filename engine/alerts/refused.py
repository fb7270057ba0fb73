"""Alerts a kill switch refused that still fire, and replaying them.

A kill switch refuses alerts and the engine never replays a refusal by itself: an
operator switched auto-recovery off on purpose. But the target stays down after the
switch goes, and Alertmanager repeats a firing alert only every ``repeat_interval``
(4 h by default): nothing would act until then, and status would say "ok". So status
lists these alerts (and a component with one is not "ok"), ``recovery enable`` lists
them, and ``recovery enable --replay`` re-queues them into the intake, where they go the
normal way (every gate asked again, trigger ``alert``, credited to the alert, "replayed
by" the operator).

An alert counts while the last thing the engine did with it (its fingerprint's newest
run) is a refusal by the kill switch. Refusals of alerts are counted into one record per
minute (engine.orchestration.refusals): each alert that record lists (its first 100) is one here.
Whether it still fires is what the engine knows, from its intake journal
(``Store.deliveries``): the newest delivery of that fingerprint was firing, no resolve
came after it. Alertmanager is not asked; an alert whose
deliveries were not kept (pruned, or triggered without the webhook) is "unknown" and is
listed but never replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.alerts.alert import FIRING, Alert
from engine.lifecycle import RunStatus
from engine.records import Delivery, RunRecord, Switch
from engine.store.base import Store

KILL_SWITCH = "kill_switch"     # the gate's name, as refused runs record it


@dataclass(frozen=True)
class RefusedAlert:
    run: RunRecord                  # the newest refusal record of this alert
    refusals: int                   # how many records of the window list it
    delivery: Delivery | None       # its newest kept delivery (what a replay re-queues)
    fingerprint: str                # this alert's (the record may count others too)

    @property
    def firing(self) -> bool | None:
        """True: its newest delivery fires; False: it resolved; None: not known."""
        if self.delivery is None:
            return None
        return self.delivery.status == FIRING

    @property
    def alertname(self) -> str:
        labels = (self.delivery.payload.get("labels") if self.delivery else None) or {}
        return str(labels.get("alertname", "")) if isinstance(labels, dict) else ""

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.run.component, "runbook": self.run.runbook,
                "target": self.run.target, "alertname": self.alertname,
                "fingerprint": self.fingerprint, "run_id": self.run.id,
                "incident_id": self.run.incident_id, "refused_at": self.run.started_at,
                "reason": self.run.reason, "refusals": self.refusals,
                "firing": self.firing}


def refused_alerts(store: Store, *, since: float, component: str | None = None,
                   target: str | None = None) -> list[RefusedAlert]:
    """Alerts (of ``component`` and ``target``, when given) refused by a kill switch
    since ``since`` whose newest run is still that refusal and that have not resolved
    since; newest refusal first."""
    scope = Switch.scope_of(component, target)
    refused: dict[str, list[RunRecord]] = {}
    for run in store.query_runs(status=RunStatus.REFUSED.value, since=since, limit=None):
        if (run.gate == KILL_SWITCH and run.trigger == "alert"
                and scope.covers(run.component, run.target)):
            for fingerprint in run.fingerprints or [run.fingerprint]:
                if fingerprint:
                    refused.setdefault(fingerprint, []).append(run)
    found = []
    for fingerprint, runs in refused.items():
        newest = store.query_runs(fingerprint=fingerprint, limit=1)
        if not newest or newest[0].id != runs[0].id:
            continue                  # something ran (or was refused otherwise) since
        kept = store.deliveries(fingerprint=fingerprint, limit=1)
        alert = RefusedAlert(runs[0], len(runs), kept[0] if kept else None, fingerprint)
        if alert.firing is not False:
            found.append(alert)
    return sorted(found, key=lambda a: a.run.started_at, reverse=True)


def replay(store: Store, alerts: list[RefusedAlert], *, by: str) -> list[RefusedAlert]:
    """Re-queue each firing alert's newest delivery into the intake, marked as replayed
    ``by`` the operator; the ones re-queued now (one already re-queued for the same
    refusal, or not known to fire, is not). A record that has counted more refusals
    since (a replay refused again under a switch still on) is a new refusal."""
    queued = []
    for alert in alerts:
        if not alert.firing or alert.delivery is None:
            continue
        payload = {**alert.delivery.payload, "replayed_by": by}
        refusal = alert.run.id if alert.run.count == 1 else f"{alert.run.id}#{alert.run.count}"
        key = f"{Alert.from_payload(payload).dedup_key}|replay:{refusal}"
        accepted, _ = store.enqueue_alerts([(key, payload)])
        if accepted:
            queued.append(alert)
    return queued
