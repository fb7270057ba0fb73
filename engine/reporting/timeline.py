"""The story of an incident or an alert, in order: why did (or didn't) it act?

``recovery show INCIDENT_ID|FINGERPRINT`` prints it. Every kept delivery of the alert
and what the intake made of it (opened, attached, a late copy, refused at the door),
the incident opening and ending, each run with every gate's answer (allow, defer,
park, refuse, and why), the approval asked and decided, the run's end and its verify,
and the operator's acts on the kill switch that covered it. Read only: from the store
(incidents, runs, deliveries, approvals, audit events) and each run's artifacts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.gates.base import when
from engine.records import AsDict, Delivery, Incident, RunRecord, Switch
from engine.reporting.run_account import read_run

if TYPE_CHECKING:
    from engine.context import EngineContext

EVENT_SCAN = 10_000      # audit events looked through for the operator's acts
_SWITCH_ACTS = ("disable", "enable", "replay")


@dataclass
class Entry(AsDict):
    at: float
    kind: str                     # delivery | incident | gate | run | verify | approval | operator
    what: str                     # one line, in words
    run_id: str | None = None
    incident_id: str | None = None


@dataclass
class Timeline:
    subject: dict[str, Any]       # {"incident": id} or {"fingerprint": fp, "incidents": [...]}
    incidents: list[Incident]
    entries: list[Entry]

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject,
                "incidents": [i.to_dict() for i in self.incidents],
                "entries": [e.to_dict() for e in self.entries]}


def timeline(ctx: EngineContext, ident: str) -> Timeline | None:
    """The timeline of an incident (by id) or of an alert (by fingerprint); None when
    the store knows neither."""
    store = ctx.store
    incident = store.get_incident(ident)
    if incident is not None:
        incidents = [incident]
        subject: dict[str, Any] = {"incident": incident.id}
        deliveries = _deliveries_of(ctx, incident)
        runs = store.query_runs(incident_id=incident.id, limit=None)
    else:
        deliveries = store.deliveries(fingerprint=ident, limit=None)
        runs = store.query_runs(fingerprint=ident, limit=None)
        if not deliveries and not runs:
            return None
        ids = dict.fromkeys([*(d.incident_id for d in reversed(deliveries)),
                             *(r.incident_id for r in reversed(runs))])
        incidents = [i for i in (store.get_incident(x) for x in ids if x) if i is not None]
        subject = {"fingerprint": ident, "incidents": [i.id for i in incidents]}
        seen = {r.id for r in runs}
        for run_id in dict.fromkeys(d.run_id for d in deliveries if d.run_id):
            found = store.get_run(run_id) if run_id not in seen else None
            if found is not None:   # a refusal record past its listed alerts counts it too
                runs.append(found)
                seen.add(run_id)
        for other in incidents:   # steps of these incidents not caused by this alert
            runs += [r for r in store.query_runs(incident_id=other.id, limit=None)
                     if r.id not in seen]
    entries: list[Entry] = []    # in the order things happened where times are equal
    for delivery in sorted(deliveries, key=lambda d: d.id or 0):
        entries += _delivery_entries(delivery)
    for inc in incidents:
        entries += _incident_entries(inc)
    for run in sorted(runs, key=lambda r: (r.started_at, r.id)):
        entries += _run_entries(ctx, run)
    entries += _operator_entries(ctx, incidents, runs)
    order = {"delivery": 0, "incident": 1, "operator": 2, "gate": 3, "approval": 4,
             "verify": 5, "run": 6}
    entries.sort(key=lambda e: (e.at, order.get(e.kind, 9)))
    return Timeline(subject, incidents, entries)


def run_timeline(ctx: EngineContext, run: RunRecord) -> list[Entry]:
    """One run's part of its story, in order: each gate's answer, the approval asked and
    decided, its verify, its end (``GET /api/v1/runs/<id>``)."""
    return sorted(_run_entries(ctx, run), key=lambda e: e.at)


def _deliveries_of(ctx: EngineContext, incident: Incident) -> list[Delivery]:
    """The incident's own deliveries, and those of its alert (resolves that found
    nothing to close, late copies) while it was open."""
    mine = ctx.store.deliveries(incident_id=incident.id, limit=None)
    if not incident.fingerprint:
        return mine
    end = incident.closed_at if incident.closed_at is not None else float("inf")
    ids = {d.id for d in mine}
    return mine + [d for d in ctx.store.deliveries(fingerprint=incident.fingerprint,
                                                   limit=None)
                   if d.id not in ids and d.incident_id is None
                   and d.processed_at >= incident.opened_at
                   and (d.first_processed_at or d.processed_at) <= end]


def _delivery_entries(d: Delivery) -> list[Entry]:
    """A kept delivery: its first, and (repeated) its latest, each with what the intake
    made of it."""
    starts = f" (startsAt {d.starts_at})" if d.starts_at else ""
    replayed = f", replayed by {d.replayed_by}" if d.replayed_by else ""
    ids = {"run_id": d.run_id, "incident_id": d.incident_id}
    if d.count <= 1:
        return [Entry(d.received_at, "delivery",
                      f"alert {d.status}{starts}{replayed}: {d.outcome}", **ids)]
    return [Entry(d.first_received_at or d.received_at, "delivery",
                  f"alert {d.status}{starts}: {d.first_outcome or '?'}",
                  incident_id=d.incident_id),
            Entry(d.received_at, "delivery", f"alert {d.status}{starts} delivered again "
                  f"({d.count} in all){replayed}, the last: {d.outcome}", **ids)]


def _incident_entries(incident: Incident) -> list[Entry]:
    by = f" ({incident.requested_by})" if incident.requested_by else ""
    entries = [Entry(incident.opened_at, "incident",
                     f"incident {incident.id} opened ({incident.runbook} on "
                     f"{incident.target}), last asked for by {incident.trigger}{by}",
                     incident_id=incident.id)]
    if incident.closed_at is not None:
        entries.append(Entry(incident.closed_at, "incident",
                             f"incident {incident.id} ended {incident.state.value}: "
                             f"{incident.reason}", incident_id=incident.id))
    return entries


def _run_entries(ctx: EngineContext, run: RunRecord) -> list[Entry]:
    view = read_run(ctx, run.id)
    record = view.run_json if view is not None else {}
    ids = {"run_id": run.id, "incident_id": run.incident_id}
    by = run.requested_by or run.trigger
    first = "the first counted: " if run.count > 1 else ""   # run.json is the first's
    entries = [Entry(run.started_at, "gate", first + _gate_words(g), **ids)
               for g in record.get("gates") or [] if isinstance(g, dict)]
    approval = ctx.store.get_approval(run.id)
    if approval is not None:
        entries.append(Entry(approval.requested_at, "approval",
                             f"approval asked for {run.strategy} on {run.target} "
                             f"(requested by {approval.requested_by or '?'})", **ids))
        if approval.decided_at is not None:
            entries.append(Entry(approval.decided_at, "approval",
                                 f"approval {approval.status} by {approval.decided_by or '-'}"
                                 + (f": {approval.reason}" if approval.reason else ""), **ids))
    checks = [e for e in (view.events if view is not None else [])
              if e.get("event") == "verify_check"]
    if checks:
        last = checks[-1]
        data = last.get("event_data") or {}
        entries.append(Entry(_event_time(last, run), "verify",
                             f"verify {data.get('action', '')}: {len(checks)} check(s), "
                             f"last {'ok' if data.get('ok') else 'failing'}: "
                             f"{data.get('summary', '')}", **ids))
    forced = ", forced" if run.forced else ""
    counted = f" (one of {run.count} counted in this record)" if run.count > 1 else ""
    head = (f"run {run.id} {run.strategy} on {run.target} ({run.trigger}, {by}{forced}): "
            f"{run.status.value}{counted}")
    end = run.finished_at if run.finished_at is not None else time.time()
    entries.append(Entry(end if run.status.is_final else run.started_at, "run",
                         f"{head}: {run.reason}" if run.reason else head, **ids))
    return entries


def _gate_words(gate: dict[str, Any]) -> str:
    until = f" until {when(gate['until'])}" if gate.get("until") else ""
    reason = f" — {gate['reason']}" if gate.get("reason") else ""
    return f"gate {gate.get('gate')}: {gate.get('verdict')}{until}{reason}"


def _operator_entries(ctx: EngineContext, incidents: list[Incident],
                      runs: list[RunRecord]) -> list[Entry]:
    """Kill switch acts (disable, enable, replay) whose scope covers one of these
    incidents' or runs' (component, target) and that were in force while they were: a
    switch on then (whenever it was set), an enable or a replay meanwhile."""
    places = {(i.component, i.target) for i in incidents} | {(r.component, r.target)
                                                              for r in runs}
    moments = [i.opened_at for i in incidents] + [r.started_at for r in runs]
    if not places or not moments:
        return []
    now = time.time()
    start = min(moments)
    end = max([i.closed_at or now for i in incidents] + [r.finished_at or now for r in runs])
    events = [e for e in ctx.store.list_events(limit=EVENT_SCAN) if e.action in _SWITCH_ACTS]
    # A switch an `enable` removed before these incidents began was not in force for them.
    removed_before = {s.get("id") for e in events if e.action == "enable" and e.at < start
                      for s in (e.detail or {}).get("removed") or [] if isinstance(s, dict)}
    entries = []
    for event in events:
        detail = event.detail or {}
        if event.at > end:
            continue
        if event.at < start and not (event.action == "disable"
                                     and (detail.get("until") or now) >= start
                                     and detail.get("id") not in removed_before):
            continue
        scope = Switch.scope_of(detail.get("component"), detail.get("target"))
        if not any(scope.covers(c, t) for c, t in places):
            continue
        why = f": {detail['reason']}" if detail.get("reason") else ""
        entries.append(Entry(event.at, "operator",
                             f"{event.action} {scope.scope()} by {event.actor}{why}"))
    return entries


def _event_time(event: dict[str, Any], run: RunRecord) -> float:
    try:
        moment = datetime.strptime(str(event.get("created")), "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        return run.finished_at or run.started_at
    return moment.replace(tzinfo=UTC).timestamp()
