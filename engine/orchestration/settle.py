"""How an attempt ends: its incident closed, its attempt finished, degraded modes on or off.

Whoever ends an incident (the orchestrator at the end of an attempt, an operator's
cancel or rejection, a resolved alert) closes it here, so the attempt it held always
ends with it (the cooldown counts attempts). A degraded mode is switched on for an
incident whose strategies failed (or at once, ``when: failing``) and off when its target
is seen healthy (a passing verify or probe); a mode switched on by hand is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from engine.context import EngineContext
from engine.lifecycle import AttemptOutcome, IncidentState
from engine.notify_due import post_soon
from engine.orchestration import exhaustion
from engine.records import DegradedReason, Incident, RunRecord
from engine.runbooks.model import Runbook
from engine.store.fencing import Fence

# An incident ended by someone else while its attempt was in hand: how that attempt ends.
ENDED_BY = {IncidentState.RESOLVED: AttemptOutcome.RESOLVED,
            IncidentState.CANCELED: AttemptOutcome.CANCELED}


def close_incident(ctx: EngineContext, incident: Incident, state: IncidentState,
                   outcome: AttemptOutcome, reason: str, *,
                   expect: Iterable[IncidentState] = (IncidentState.REMEDIATING,),
                   fence: Fence | None = None, **fields: Any) -> Incident | None:
    """Close the incident (only from one of the states ``expect``s), then finish its
    attempt with ``outcome``. None, with nothing changed, when it was not in those
    states: someone else ended it first, and their account stands. ``fence``: the lock
    the closing step holds (StaleLease, nothing written, once it was taken)."""
    closed = ctx.store.update_incident(incident.id, expect=list(expect), state=state,
                                       closed_at=time.time(), next_try_at=None,
                                       reason=reason, fence=fence, **fields)
    if closed is not None:
        finish_attempt(ctx, closed, outcome, fence)
    return closed


def end_attempt(ctx: EngineContext, incident: Incident, state: IncidentState,
                outcome: AttemptOutcome, reason: str, *, fence: Fence | None = None,
                **fields: Any) -> Incident:
    """The attempt the caller carries (the orchestrator's) ends with ``outcome``, and its
    incident, still remediating, ends ``state``; no step of it is left unverified.
    Returns the incident as it is now (another process may have ended it first)."""
    closed = close_incident(ctx, incident, state, outcome, reason, interrupted_run=None,
                            fence=fence, **fields)
    if closed is None:
        finish_attempt(ctx, incident, outcome, fence)   # once only: a first end stands
    post_soon(ctx)          # RecoverySucceeded (or what the end resolves): the next pass
    return closed or ctx.store.get_incident(incident.id) or incident


def ended_elsewhere(ctx: EngineContext, incident: Incident) -> None:
    """The incident was resolved or canceled while its attempt was in hand: the attempt
    ends the same way (canceled, when the incident is gone)."""
    finish_attempt(ctx, incident, ENDED_BY.get(incident.state, AttemptOutcome.CANCELED))


def finish_attempt(ctx: EngineContext, incident: Incident, outcome: AttemptOutcome,
                   fence: Fence | None = None) -> None:
    """The incident's attempt, if one is under way, ends with ``outcome``."""
    if incident.attempt_id:
        ctx.store.finish_attempt(incident.attempt_id, outcome, time.time(), fence=fence)
        ctx.store.update_incident(incident.id, attempt_id=None, fence=fence)


def hand_back_interrupted(ctx: EngineContext, run: RunRecord, reason: str, now: float,
                          retry_at: float, fence: Fence | None = None) -> None:
    """A step stopped before it could say what it did (its process died, or its record
    could not be written while it ran): its attempt ends ``interrupted`` and the
    incident goes back to the workers, due at ``retry_at``, at the same step. Before
    that step runs again, its verify is asked (``Incident.interrupted_run``): the step
    may well have done its work. ``fence``: the lock of the step that hands it back."""
    incident = ctx.store.get_incident(run.incident_id or "")
    if incident is None or incident.state != IncidentState.REMEDIATING:
        return
    if incident.attempt_id:
        ctx.store.finish_attempt(incident.attempt_id, AttemptOutcome.INTERRUPTED, now,
                                 fence=fence)
    ctx.store.update_incident(
        incident.id, expect=[IncidentState.REMEDIATING], fence=fence, state=IncidentState.OPEN,
        next_try_at=retry_at, attempt_id=None, interrupted_run=run.id,
        reason=f"run {run.id} interrupted: {reason}")


def exhausted(ctx: EngineContext, incident: Incident, runbook: Runbook) -> Incident:
    """Every strategy was tried and none fixed it: degraded mode on, the incident
    ``failed`` (its cooldown follows from the failed attempt) and the target exhausted
    (``RecoveryExhausted`` goes out)."""
    if incident.state != IncidentState.REMEDIATING:
        return incident
    tried = incident.reason or "no strategy applied"
    degrade(ctx, incident, runbook, f"{runbook.name} exhausted on {incident.target}")
    closed = end_attempt(ctx, incident, IncidentState.FAILED, AttemptOutcome.FAILED,
                         f"exhausted: {tried}")
    if closed.state == IncidentState.FAILED:
        exhaustion.mark(ctx, closed, closed.reason)
    return closed


def degrade(ctx: EngineContext, incident: Incident, runbook: Runbook, reason: str) -> None:
    """Switch the runbook's degraded mode on for this incident (if it has one)."""
    if runbook.degraded_mode is None:
        return
    ctx.store.add_degraded(DegradedReason(
        mode=runbook.degraded_mode.name, key=f"incident:{incident.id}", target=incident.target,
        incident_id=incident.id, reason=reason,
        created_by=incident.requested_by or incident.trigger,
        since=time.time()))
    post_soon(ctx)          # RecoveryDegradedMode: told at the next worker pass


def seen_healthy(ctx: EngineContext, runbook: Runbook, target: str) -> list[DegradedReason]:
    """A passing verify or probe for the target (or an application's health check): its
    automatic degraded-mode reasons go off (a mode switched on by hand stays), and so
    does its exhausted alert. Returns the degraded reasons cleared."""
    exhaustion.clear(ctx, runbook.name, target)
    if runbook.degraded_mode is None:
        return []
    cleared = ctx.store.clear_degraded(mode=runbook.degraded_mode.name, target=target,
                                       manual=False)
    if cleared:
        post_soon(ctx)      # its RecoveryDegradedMode resolves at the next worker pass
    return cleared
