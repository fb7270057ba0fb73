"""The approval lifecycle, and canceling: what a person decides about a parked step.

Approve queues the step: a worker (or ``approve --now`` in the foreground) asks every
gate again and runs it only if the incident is still open. Reject and expiry end the
attempt, unless the strategy says ``on_reject: next``. Every decision records who.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.gates.base import when
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.notifier import post_soon
from engine.orchestrator import finish_attempt
from engine.records import Approval, Incident, RunRecord


class DecisionError(ValueError):
    """The decision cannot be taken (unknown run, already decided): the reason says why."""


@dataclass
class Decided:
    approval: Approval
    run: RunRecord | None


def approve(ctx: EngineContext, run_id: str, *, by: str, reason: str = "") -> Decided:
    waiting = ctx.store.get_approval(run_id)
    if waiting is not None and waiting.status == "pending" and waiting.expires_at <= time.time():
        reject(ctx, run_id, by=None, status="expired")   # no worker may have run since
        raise DecisionError(f"the approval for run {run_id} expired at "
                            f"{when(waiting.expires_at)}")
    if waiting is not None and waiting.incident_id:
        incident = ctx.store.get_incident(waiting.incident_id)
        if incident is None or not incident.state.is_open:
            state = incident.state.value if incident else "gone"
            raise DecisionError(f"run {run_id}'s incident is {state}: nothing to approve")
    approval = _decide(ctx, run_id, "approved", by, reason)
    run = ctx.store.update_run(run_id, status=RunStatus.QUEUED, approved_by=by,
                               reason=f"approved by {by}" + (f": {reason}" if reason else ""))
    if run is None:  # canceled between the decision and now: the approval goes with it
        ctx.store.decide_approval(run_id, status="canceled", by=by, reason="run canceled",
                                  at=time.time(), expect="approved")
        gone = ctx.store.get_run(run_id)
        raise DecisionError(f"run {run_id} is {gone.status.value if gone else 'gone'}: "
                            "nothing to approve")
    if approval.incident_id:
        incident = ctx.store.get_incident(approval.incident_id)
        if incident is not None:
            step = _index_of(ctx, incident, approval.strategy)
            ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                      approved_step=step, approved_by=by,
                                      reason=f"{approval.strategy} approved by {by}; queued")
    _note(ctx, run_id, {"approval": approval.to_dict(), "status": "queued"})
    return Decided(approval, run)


def reject(ctx: EngineContext, run_id: str, *, by: str | None, reason: str = "",
           status: str = "rejected") -> Decided:
    """Reject (or, with ``status='expired'``, expire) a parked step."""
    approval = _decide(ctx, run_id, status, by, reason)
    run_status = RunStatus.REJECTED if status == "rejected" else RunStatus.EXPIRED
    words = (f"rejected by {by}" if status == "rejected" else "approval expired") + (
        f": {reason}" if reason else "")
    run = ctx.store.update_run(run_id, status=run_status, reason=words,
                               finished_at=time.time())
    if run is not None:
        ctx.store.record_outcome(run.component, run.strategy, "canceled", None)
    _note(ctx, run_id, {"approval": approval.to_dict(), "status": run_status.value,
                        "reason": words})
    if approval.incident_id:
        _after_no(ctx, approval, words)
    return Decided(approval, run)


def claim(ctx: EngineContext, run_id: str, lease: float | None = None) -> RunRecord | None:
    """Take one approved (queued) run to run it here, as ``approve --now`` does; None if
    it is not queued or a worker holds it."""
    return ctx.store.claim_run(run_id, ctx.holder, time.time(),
                               lease if lease is not None else ctx.config.lock_ttl * 2)


def expire_due(ctx: EngineContext, now: float | None = None) -> list[Approval]:
    expired = []
    for approval in ctx.store.due_approvals(now or time.time()):
        try:
            expired.append(reject(ctx, approval.run_id, by=None, status="expired").approval)
        except DecisionError:
            continue  # decided by someone else meanwhile
    return expired


def cancel(ctx: EngineContext, ident: str, *, by: str) -> str:
    """Cancel a run or an incident; a running step is asked to stop (playbooks stop at
    the next task boundary; python actions cannot be interrupted and finish)."""
    run = ctx.store.get_run(ident)
    incident = ctx.store.get_incident(ident) if run is None else (
        ctx.store.get_incident(run.incident_id) if run.incident_id else None)
    if run is None and incident is None:
        raise DecisionError(f"no run or incident {ident}")
    said = []
    # Canceling an incident (directly, or through one of its runs) cancels everything
    # that still waits for it, so nothing parked can be approved afterwards.
    runs = [run] if incident is None else ctx.store.query_runs(incident_id=incident.id,
                                                               limit=None)
    for r in runs:
        if r.status == RunStatus.RUNNING:
            ctx.store.set_value(f"cancel:{r.id}", {"by": by, "at": time.time()})
            event = ctx.running.get(r.id)
            if event is not None:
                event.set()
            said.append(f"asked run {r.id} to stop")
        elif cancel_waiting(ctx, r, f"canceled by {by}", by):
            said.append(f"canceled run {r.id}")
    if incident is not None and incident.state.is_open:
        closed = ctx.store.update_incident(
            incident.id, expect=[IncidentState.OPEN, IncidentState.REMEDIATING],
            state=IncidentState.CANCELED, closed_at=time.time(), next_try_at=None,
            reason=f"canceled by {by}")
        if closed is not None:
            finish_attempt(ctx, incident, AttemptOutcome.CANCELED)
            said.append(f"canceled incident {incident.id}")
    return "; ".join(said) or f"{ident}: nothing left to cancel"


def cancel_waiting(ctx: EngineContext, run: RunRecord, reason: str, by: str | None) -> bool:
    """Cancel a run parked for approval or queued after it; False if it was neither."""
    if run.status not in (RunStatus.PENDING_APPROVAL, RunStatus.QUEUED):
        return False
    now = time.time()
    approval = ctx.store.get_approval(run.id)
    if approval is not None and approval.status in ("pending", "approved"):  # queued: approved
        ctx.store.decide_approval(run.id, status="canceled", by=by, reason=reason, at=now,
                                  expect=approval.status)
        post_soon(ctx)
    if ctx.store.update_run(run.id, status=RunStatus.CANCELED, reason=reason,
                            finished_at=now) is None:
        return False  # it started meanwhile: a running step is stopped another way
    ctx.store.record_outcome(run.component, run.strategy, "canceled", None)
    _note(ctx, run.id, {"status": "canceled", "reason": reason})
    return True


def _decide(ctx: EngineContext, run_id: str, status: str, by: str | None,
            reason: str) -> Approval:
    current = ctx.store.get_approval(run_id)
    if current is None:
        raise DecisionError(f"no approval is waiting for run {run_id}")
    decided = ctx.store.decide_approval(run_id, status=status, by=by, reason=reason,
                                        at=time.time())
    post_soon(ctx)   # its RecoveryApprovalPending resolves at the next worker pass
    if decided is None:
        now = ctx.store.get_approval(run_id)
        raise DecisionError(f"run {run_id} is not waiting for approval "
                            f"(approval {now.status if now else 'gone'})")
    return decided


def _after_no(ctx: EngineContext, approval: Approval, words: str) -> None:
    incident = ctx.store.get_incident(approval.incident_id or "")
    if incident is None or incident.state != IncidentState.REMEDIATING:
        return
    runbook = ctx.runbook(incident.runbook)
    strategy = runbook.strategy(approval.strategy)
    if strategy is not None and strategy.on_reject == "next":
        # Hand the rest of the attempt to a worker: it goes on at the next step.
        ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                  state=IncidentState.OPEN, next_try_at=time.time(),
                                  step=_index_of(ctx, incident, approval.strategy) + 1,
                                  reason=words)
        return
    closed = ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                       state=IncidentState.CANCELED, closed_at=time.time(),
                                       reason=words)
    if closed is not None:
        finish_attempt(ctx, incident, AttemptOutcome.REJECTED)


def _index_of(ctx: EngineContext, incident: Incident, strategy: str) -> int:
    runbook = ctx.runbook(incident.runbook)
    for i, s in enumerate(runbook.strategies):
        if s.name == strategy:
            return i
    return incident.step


def _note(ctx: EngineContext, run_id: str, data: dict) -> None:
    artifacts = RunArtifacts(ctx.artifacts_dir, run_id, ctx.redactor)
    if artifacts.path.exists():
        artifacts.create().write_run_json(data)
        status = data.get("status")
        if status and status != "queued":
            artifacts.set_status(status, 0)
