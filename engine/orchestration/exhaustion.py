"""Exhausted targets: a runbook tried everything on a target and the target is still down.

The condition belongs to (runbook, target), not to the incident that found it: it goes
on when an incident ends exhausted and stays on while new incidents for the same target
are deferred (cooldown), refused or fail again, until the target is seen healthy (a
passing verify, a passing probe, an application's own health check) or an operator
acknowledges it (``recovery ack INCIDENT_ID``). While on, the workers post
``RecoveryExhausted`` for it (engine/service/notifier.py).

Kept in the store under one key, changed atomically (``update_value``), so every process
sharing the store agrees and a restart forgets nothing. The incidents themselves are not
touched: an acknowledgement is an audit event (who, when, which incident).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.context import EngineContext
from engine.notify_due import post_soon
from engine.records import AsDict, AuditEvent, Incident

KEY = "exhausted"


class AckRefused(ValueError):
    """The acknowledgement cannot be taken; ``str()`` says why, in words for an operator."""


class UnknownIncident(AckRefused):
    """No such incident, and no exhausted alert names it."""


@dataclass(frozen=True)
class Exhaustion(AsDict):
    runbook: str
    component: str
    target: str
    incident_id: str        # the incident that ended exhausted (the latest, if several)
    since: float            # when it first went on for this (runbook, target)
    reason: str = ""


def _key(runbook: str, target: str) -> str:
    return f"{runbook}\x00{target}"


def current(ctx: EngineContext) -> list[Exhaustion]:
    """What is exhausted now, oldest first."""
    entries = ctx.store.get_value(KEY) or {}
    return sorted((Exhaustion(**entry) for entry in entries.values()),
                  key=lambda e: (e.since, e.runbook, e.target))


def mark(ctx: EngineContext, incident: Incident, reason: str) -> None:
    """``incident`` ended exhausted: the condition goes (or stays) on for its target, now
    naming this incident (an acknowledgement names the latest)."""
    def put(entries: dict | None) -> dict:
        entries = dict(entries or {})
        key = _key(incident.runbook, incident.target)
        since = entries.get(key, {}).get("since") or time.time()
        entries[key] = Exhaustion(incident.runbook, incident.component, incident.target,
                                  incident.id, since, reason).to_dict()
        return entries

    ctx.store.update_value(KEY, put)
    post_soon(ctx)


def clear(ctx: EngineContext, runbook: str, target: str) -> Exhaustion | None:
    """The target was seen healthy: the condition goes off. None if it was not on (read
    first, so a passing probe every interval writes nothing)."""
    key = _key(runbook, target)
    if key not in (ctx.store.get_value(KEY) or {}):
        return None
    return _remove(ctx, key, lambda entry: True)


def acknowledge(ctx: EngineContext, incident_id: str, *, by: str) -> Exhaustion:
    """An operator has seen it: the condition goes off (until the target's next exhausted
    incident), recorded with who. Raises AckRefused when ``incident_id`` is not the
    incident an exhausted alert names (UnknownIncident when there is no such incident)."""
    entries = ctx.store.get_value(KEY) or {}
    named = next((key for key, entry in entries.items()
                  if entry["incident_id"] == incident_id), None)
    if named is not None:   # its incident row may be gone (retention): the alert is not
        return _acknowledged(ctx, named, incident_id, by)
    incident = ctx.store.get_incident(incident_id)
    if incident is None:
        raise UnknownIncident(f"no incident {incident_id}")
    firing = entries.get(_key(incident.runbook, incident.target))
    if firing is None:
        raise AckRefused(f"incident {incident_id} ({incident.runbook} on {incident.target}, "
                         f"{incident.state.value}): no exhausted alert of it is firing "
                         "(never exhausted, already acknowledged, or the target recovered)")
    raise AckRefused(f"incident {incident_id} is not the one the exhausted alert of "
                     f"{incident.runbook} on {incident.target} names: acknowledge "
                     f"{firing['incident_id']}")


def _acknowledged(ctx: EngineContext, key: str, incident_id: str, by: str) -> Exhaustion:
    removed = _remove(ctx, key, lambda entry: entry["incident_id"] == incident_id)
    if removed is None:
        raise AckRefused(f"incident {incident_id}: the exhausted alert stopped meanwhile")
    ctx.store.add_event(AuditEvent(at=time.time(), actor=by, action="ack",
                                   detail={"incident_id": incident_id, **removed.to_dict()}))
    return removed


def _remove(ctx: EngineContext, key: str, only_if) -> Exhaustion | None:
    removed: list[Exhaustion] = []

    def drop(entries: dict | None) -> dict:
        entries = dict(entries or {})
        entry = entries.get(key)
        if entry is not None and only_if(entry):
            removed.append(Exhaustion(**entries.pop(key)))
        return entries

    ctx.store.update_value(KEY, drop)
    if removed:
        post_soon(ctx)
    return removed[0] if removed else None
