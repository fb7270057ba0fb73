"""What the engine tells Alertmanager about itself now: one alert per condition, computed
from the store (engine/service/notifier.py posts them).

Each condition is switchable in recovery.yml (``alertmanager.alert_on``); the label set
names the condition and nothing else (alertname, severity, ``source="infra-recovery"``,
and the component, runbook and target, or the degraded mode), so a new incident for a
target still down is the same alert. Incident and run ids, the run's link
(``external_url`` + ``/api/v1/runs/<id>``) and the command to run are annotations.

- ``RecoveryExhausted`` (``exhaustion``): a (runbook, target) is exhausted
  (engine/orchestration/exhaustion.py), until the target recovers or is acknowledged.
- ``RecoveryDegradedMode`` (``degraded_mode``): while a degraded mode is on.
- ``RecoveryCooldown`` (``cooldown``): an incident waits because the cooldown gate
  deferred it, and the cooldown still holds the target.
- ``RecoveryActionInProgress`` (``in_progress``): a destructive step runs (``destructive``
  says which), so people do not work against the engine.
- ``RecoverySucceeded`` (``recovery``): an incident recovered. Unlike the others it is not
  a condition that lasts: ``recovered`` lists the recoveries of the last ``SUCCEEDED_FOR``
  seconds, and the notifier posts each once, with that ``endsAt``.
- ``RecoveryApprovalPending`` (always): a step waits for a person.

The ``severity`` label is the runbook's priority through
``alertmanager.severity_by_priority``; a degraded mode's is that of the highest-priority
runbook that declares the mode (``degraded_mode:``), ``medium``'s when none does (a mode
an application or an operator switched on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.context import EngineContext
from engine.gates.cooldown import cooldown_state
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.exhaustion import current as exhausted
from engine.records import RunRecord
from engine.runbooks.model import Mode, Priority, Runbook

SOURCE = "infra-recovery"
SUCCEEDED_FOR = 300.0      # a RecoverySucceeded's endsAt, after the recovery
_RUNNING_LIMIT = 1000      # running steps looked at per pass (more would be a fleet outage)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Recovered:
    """One recovery to tell once: its incident, and the alert."""

    incident_id: str
    ends: float
    alert: dict[str, Any]


class _Alerts:
    """The alerts of one pass: the config's switches, severities and link, and the
    runbooks in force, read once."""

    def __init__(self, ctx: EngineContext, now: float) -> None:
        self.ctx, self.now = ctx, now
        self.ends = now + 3 * ctx.config.notify_interval
        self.books = {rb.name: rb for rb in ctx.runbooks}

    def on(self, event: str) -> bool:
        return bool(self.ctx.config.alert_on.get(event, True))

    def severity(self, priority: Priority) -> str:
        return self.ctx.config.severity_by_priority[priority.name.lower()]

    def severity_of(self, runbook: str) -> str:
        """A runbook's severity; a runbook no longer in force counts as ``medium``."""
        book = self.books.get(runbook)
        return self.severity(book.priority if book else Priority.MEDIUM)

    def link(self, run_id: str | None) -> dict[str, str]:
        base = self.ctx.config.external_url
        return {"link": f"{base}/api/v1/runs/{run_id}"} if base and run_id else {}

    def last_run(self, incident_id: str, status: str | None = None) -> RunRecord | None:
        runs = self.ctx.store.query_runs(incident_id=incident_id, status=status, limit=1)
        return runs[0] if runs else None

    def alert(self, name: str, severity: str, labels: dict[str, str],
              annotations: dict[str, str], since: float,
              ends: float | None = None) -> dict[str, Any]:
        return {"labels": {"alertname": name, "severity": severity, "source": SOURCE,
                           **labels},
                "annotations": {k: v for k, v in annotations.items() if v is not None},
                "startsAt": iso(since or self.now), "endsAt": iso(ends or self.ends)}

    # -- one builder per condition -----------------------------------------------------
    def degraded(self) -> list[dict[str, Any]]:
        by_mode: dict[str, list] = {}
        for reason in self.ctx.store.degraded_reasons():
            by_mode.setdefault(reason.mode, []).append(reason)
        out = []
        for mode, reasons in sorted(by_mode.items()):
            first = min(reasons, key=lambda r: r.since)
            declaring = [rb.priority for rb in self.books.values()
                         if rb.degraded_mode and rb.degraded_mode.name == mode]
            out.append(self.alert(
                "RecoveryDegradedMode", self.severity(max(declaring, default=Priority.MEDIUM)),
                {"mode": mode},
                {"summary": f"degraded mode {mode} is on ({len(reasons)} reason(s)): "
                            f"{first.reason or first.key}",
                 "incident": first.incident_id},
                first.since))
        return out

    def exhausted(self) -> list[dict[str, Any]]:
        out = []
        for gone in exhausted(self.ctx):
            run = self.last_run(gone.incident_id)
            out.append(self.alert(
                "RecoveryExhausted", self.severity_of(gone.runbook),
                {"component": gone.component, "runbook": gone.runbook, "target": gone.target},
                {"summary": f"{gone.runbook} exhausted on {gone.target}: {gone.reason}",
                 "incident": gone.incident_id, "run": run.id if run else None,
                 **self.link(run.id if run else None),
                 "command": f"recovery ack {gone.incident_id}  (once handled; it also "
                            "resolves when the target recovers)"},
                gone.since))
        return out

    def pending(self) -> list[dict[str, Any]]:
        return [self.alert(
            "RecoveryApprovalPending", self.severity_of(approval.runbook),
            {"component": approval.component, "runbook": approval.runbook,
             "target": approval.target},
            {"summary": f"{approval.strategy} on {approval.target} waits for approval",
             "incident": approval.incident_id or "", "run": approval.run_id,
             "strategy": approval.strategy, **self.link(approval.run_id),
             "command": f"recovery approve {approval.run_id}  (or --reject)"},
            approval.requested_at) for approval in self.ctx.store.list_approvals("pending")]

    def cooling(self) -> list[dict[str, Any]]:
        out = []
        for incident in self.ctx.store.list_incidents(open_only=True, limit=_RUNNING_LIMIT):
            book = self.books.get(incident.runbook)
            if (book is None or incident.state != IncidentState.OPEN
                    or not incident.next_try_at or incident.next_try_at <= self.now):
                continue
            held = cooldown_state(self.ctx.store, book, incident.target, self.now)
            if held is None:
                continue
            reason, until = held
            run = self.last_run(incident.id)
            out.append(self.alert(
                "RecoveryCooldown", self.severity(book.priority),
                {"component": incident.component, "runbook": incident.runbook,
                 "target": incident.target},
                {"summary": f"{incident.runbook} on {incident.target} is held back by its "
                            f"{reason}", "incident": incident.id,
                 "run": run.id if run else None, **self.link(run.id if run else None),
                 "next_attempt": iso(until)},
                incident.updated_at, ends=min(self.ends, until)))
        return out

    def in_progress(self) -> list[dict[str, Any]]:
        out = []
        for run in self.ctx.store.query_runs(status=RunStatus.RUNNING.value,
                                             limit=_RUNNING_LIMIT):
            book = self.books.get(run.runbook)
            if run.check_mode or not destructive(run, book):
                continue
            out.append(self.alert(
                "RecoveryActionInProgress",
                self.severity(book.priority if book else Priority.MEDIUM),
                {"component": run.component, "runbook": run.runbook, "target": run.target},
                {"summary": f"{run.strategy} ({run.kind}) is running on {run.target}: "
                            "leave the target to the engine until it ends",
                 "incident": run.incident_id, "run": run.id, "strategy": run.strategy,
                 **self.link(run.id)},
                run.started_at))
        return out

    def recovered(self) -> list[Recovered]:
        out = []
        for runbook, target in sorted(self.ctx.store.attempt_keys_since(
                self.now - SUCCEEDED_FOR)):
            incident = self.ctx.store.latest_incident(runbook, target)
            if incident is None or incident.state != IncidentState.RECOVERED:
                continue
            at = incident.closed_at or incident.updated_at
            if at + SUCCEEDED_FOR <= self.now:
                continue
            run = self.last_run(incident.id, RunStatus.SUCCEEDED.value)
            alert = self.alert(
                "RecoverySucceeded", self.severity_of(runbook),
                {"component": incident.component, "runbook": runbook, "target": target},
                {"summary": f"{runbook} recovered {target}"
                            + (f" with {run.strategy}" if run else ""),
                 "incident": incident.id, "run": run.id if run else None,
                 "strategy": run.strategy if run else None,
                 **self.link(run.id if run else None)},
                at, ends=at + SUCCEEDED_FOR)
            out.append(Recovered(incident.id, at + SUCCEEDED_FOR, alert))
        return out


def destructive(run: RunRecord, book: Runbook | None) -> bool:
    """A step that changes the target in a way a person must not cross: one that needed
    approval (approved, ``approval: required`` or by condition, even when the facts of
    this run did not ask, or a runbook in ``mode: approve``), a
    playbook (it acts on hosts through Ansible: restarts, configuration), or a step
    marked ``idempotent: false``. A python action of an ``auto`` runbook (a reconnect, a
    cache flush) is not: it is quick and safe to run again."""
    if run.approved_by or run.kind == "playbook":
        return True
    if book is None:
        return False
    step = book.strategy(run.strategy)
    return book.mode is Mode.APPROVE or (step is not None
                                         and (step.approval or bool(step.approval_when)
                                              or not step.idempotent))


def current_alerts(ctx: EngineContext, now: float | None = None) -> list[dict[str, Any]]:
    """The conditions on now that are switched on (``alertmanager.alert_on``), with the
    approvals that wait; not the one-shot ``RecoverySucceeded`` (``recovered_alerts``)."""
    alerts = _Alerts(ctx, now or time.time())
    out: list[dict[str, Any]] = []
    for event, build in (("degraded_mode", alerts.degraded), ("exhaustion", alerts.exhausted),
                         ("cooldown", alerts.cooling), ("in_progress", alerts.in_progress)):
        if alerts.on(event):
            out += build()
    return out + alerts.pending()


def recovered_alerts(ctx: EngineContext, now: float | None = None) -> list[Recovered]:
    """The recent recoveries (``RecoverySucceeded``), told or not: the notifier keeps
    which it told."""
    alerts = _Alerts(ctx, now or time.time())
    return alerts.recovered() if alerts.on("recovery") else []
