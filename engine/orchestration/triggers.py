"""A failure arrives (alert, operator, probe, application): find its runbook and
target, then open its incident or attach to the one already open.

At most one incident is open per (runbook, target), and only the caller that opens
or claims it runs the attempt, so one firing episode never gets two attempts at once.
A target that resolves to nothing is refused and recorded, never guessed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.alerts.alert import timestamp_of
from engine.alerts.routing import match_runbook
from engine.context import EngineContext, UnknownRunbook
from engine.gates.base import when
from engine.inventory import AmbiguousTarget, UnknownTarget
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration import refusals
from engine.records import Incident, RunRecord, new_id
from engine.runbooks.model import Runbook
from engine.runbooks.templating import TemplateError, render

NO_TARGET = "-"     # a refusal's target when the request names no inventory host


@dataclass
class TriggerRequest:
    runbook: str | None = None            # a runbook or component name; else matched by labels
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    target: str | None = None             # a host name or instance; else from the runbook
    failure_type: str | None = None
    trigger: str = "manual"               # alert | manual | probe
    requested_by: str = ""
    fingerprint: str | None = None
    strategy: str | None = None           # manual: run this one strategy only
    force: bool = False                   # manual: pass the kill switch and the cooldown
    received_at: float | None = None      # alert: when it was journaled (not processed)
    starts_at: str | None = None          # alert: its episode's startsAt (normalized UTC)
    context: dict[str, Any] = field(default_factory=dict)  # application: recorded only


@dataclass
class Opened:
    incident: Incident | None = None
    created: bool = False
    claimed: bool = False                 # this caller owns the attempt: it must advance it
    refusal: str | None = None
    refused_run: str | None = None
    note: str = ""                        # what was done, in words (a delivery's outcome)


def resolve_target(ctx: EngineContext, runbook: Runbook, request: TriggerRequest) -> str:
    """The inventory host a request names, by its inventory name (so switches, locks and
    incidents agree whoever names it). Labels reach only exact names, never patterns."""
    if request.target:
        if ctx.inventory.get(request.target) is not None:
            return request.target
        try:
            return ctx.inventory.resolve_instance(request.target).name
        except AmbiguousTarget:
            raise
        except UnknownTarget:
            if request.target in ctx.resources.targets():
                return request.target  # known to this application alone (embedded mode)
            raise
    value = render(runbook.target, request.labels, request.annotations)
    if not value:
        raise UnknownTarget(f"runbook {runbook.name}: target template {runbook.target!r} "
                            "gave nothing for this alert")
    return ctx.inventory.resolve_instance(value).name


def open_incident(ctx: EngineContext, request: TriggerRequest) -> Opened:
    """Open the incident or attach to the open one. When ``claimed``, the caller owns
    the attempt and must ``advance`` it (at once: a claim left idle for three leases is
    taken for abandoned by the workers).

    An alert received before the fix of the (runbook, target)'s recovered incident was
    verified attaches to it, whichever of the target's alerts opened it (of the same
    failure type, when the alert names one): it says nothing the verify did not see. The
    same alert still firing after that window reopens the incident."""
    from engine.orchestration.approvals import expire_due

    expire_due(ctx)  # an unanswered approval past its time must not hold the incident
    try:
        if request.runbook:
            runbook = ctx.runbook(request.runbook)
        else:
            matched = match_runbook(ctx.runbooks, request.labels)
            if matched is None:
                return _refused("no runbook matches this alert")
            runbook = matched
    except UnknownRunbook as exc:
        return _refused(str(exc.args[0]))
    try:
        target = resolve_target(ctx, runbook, request)
    except (UnknownTarget, TemplateError) as exc:
        reason = f"unknown target: {exc.args[0] if exc.args else exc}"
        return _refused(reason, record_refusal(ctx, runbook, request, reason))
    step = 0
    if request.strategy:
        names = [s.name for s in runbook.strategies]
        if request.strategy not in names:
            return _refused(f"runbook {runbook.name} has no strategy "
                            f"{request.strategy!r} (it has: {', '.join(names)})")
        step = names.index(request.strategy)
    now = time.time()
    failure_type = request.failure_type or runbook.failure_type_of(request.labels)
    if request.trigger == "alert" and request.fingerprint:
        latest = ctx.store.latest_incident(runbook.name, target)
        if latest is not None and latest.state == IncidentState.RECOVERED:
            before_fix = _sent_before_fix_verified(latest, request, now)
            if latest.fingerprint == request.fingerprint:
                if before_fix:
                    # A repeat of the episode that was being fixed, sent before the fix
                    # was verified: not a new signal. (A re-fire that started after the
                    # fix is.)
                    return Opened(latest, note=f"attached to incident {latest.id} "
                                  f"(recovered): sent before its fix was verified (until "
                                  f"{when(latest.verify_until)})")
                reopened = ctx.store.reopen_incident(
                    latest.id, "reopened: the alert still fires after the fix was verified",
                    trigger=request.trigger, requested_by=request.requested_by)
                if reopened is not None:
                    return Opened(reopened, claimed=True,
                                  note=f"reopened incident {latest.id}: the alert fires "
                                  "again after its fix was verified")
            elif before_fix and failure_type in (None, latest.failure_type):
                # Another alert of the same failure (a storm: several alerts per host),
                # received before the fix was verified, processed only now (a worker
                # died holding it): evidence from before the fix, not a new failure.
                return Opened(latest, note=f"attached to incident {latest.id} (recovered): "
                              f"received before its fix was verified (until "
                              f"{when(latest.verify_until)}); another alert of {target} "
                              f"(fingerprint {latest.fingerprint}) opened it")
    incident = Incident(
        id=new_id("inc"), runbook=runbook.name, component=runbook.component, target=target,
        state=IncidentState.REMEDIATING, failure_type=failure_type,
        trigger=request.trigger, requested_by=request.requested_by,
        fingerprint=request.fingerprint, starts_at=request.starts_at,
        labels=dict(request.labels), opened_at=now,
        updated_at=now, only_strategy=request.strategy, forced=request.force, step=step,
        reason=f"opened by {request.trigger}", context=dict(request.context),
    )
    stored, created = ctx.store.open_incident(incident)
    if created:
        return Opened(stored, created=True, claimed=True, note=f"opened incident {stored.id}")
    if stored.state != IncidentState.OPEN:   # an attempt is under way (or parked): attach
        return Opened(stored, note=f"attached to incident {stored.id} ({stored.state.value}):"
                      " its attempt is under way")
    if request.trigger == "manual":
        # An operator takes over now, whatever the deferral said: the gates decide.
        changes: dict[str, Any] = {"state": IncidentState.REMEDIATING, "next_try_at": None,
                                   "forced": request.force, "trigger": "manual",
                                   "requested_by": request.requested_by,
                                   "only_strategy": request.strategy}
        if request.strategy:
            changes["step"] = step
        elif stored.attempt_id is None:
            changes["step"] = 0
        claimed = ctx.store.update_incident(stored.id, expect=[IncidentState.OPEN], **changes)
    else:
        # A repeat of the signal retries a deferred incident once its time has come, so
        # progress never depends on a worker running somewhere.
        claimed = ctx.store.claim_incident(stored.id, now, trigger=request.trigger,
                                           requested_by=request.requested_by)
    if claimed is not None:
        return Opened(claimed, claimed=True, note=f"took up incident {stored.id} (open)")
    later = f" until {when(stored.next_try_at)}" if stored.next_try_at else ""
    return Opened(stored, note=f"attached to incident {stored.id} (open, deferred{later}): "
                  f"{stored.reason}")


def _refused(reason: str, run_id: str | None = None) -> Opened:
    return Opened(refusal=reason, refused_run=run_id,
                  note=f"refused: {reason}" + (f" (run {run_id})" if run_id else ""))


def _sent_before_fix_verified(latest: Incident, request: TriggerRequest, now: float) -> bool:
    """The alert was received before the recovered incident's fix was verified (its
    ``verify_until``), and its episode did not start after the fix (a re-fire is a new
    failure)."""
    received = request.received_at or now
    return bool(latest.verify_until and received < latest.verify_until
                and not _started_after(request.starts_at, latest.closed_at))


def _started_after(starts_at: str | None, moment: float | None) -> bool:
    """An alert episode that started after ``moment`` (a new failure, not a repeat)."""
    started = timestamp_of(starts_at)
    return started is not None and moment is not None and started > moment


def record_refusal(ctx: EngineContext, runbook: Runbook, request: TriggerRequest,
                   reason: str) -> str:
    """A request refused for its target leaves a record too (the audit shows what was
    not done), counted with the others of its minute (engine.orchestration.refusals): the target is
    ``-`` (no inventory host), the key "unknown target" (the words name the instance:
    a sender's choice). Returns the id of the record it counts in."""
    now = time.time()
    run = RunRecord(
        id=new_id("run"), component=runbook.component, runbook=runbook.name,
        strategy=request.strategy or "-", target=NO_TARGET, status=RunStatus.REFUSED,
        trigger=request.trigger, started_at=now, finished_at=now,
        fingerprint=request.fingerprint, requested_by=request.requested_by, reason=reason,
        runbook_sha256=runbook.sha256, gate="target", replica=ctx.replica,
    )
    asked = request.target or str(request.labels.get("instance", ""))
    stored = refusals.record_counted(
        ctx, run, {"labels": request.labels, "requested_target": asked,
                   "gates": [{"gate": "target", "verdict": "refuse", "reason": reason}]},
        reason_key="unknown target")
    return stored.id
