"""The approval lifecycle, and canceling: what a person decides about a parked step.

Approve queues the step: a worker (or ``approve --now`` in the foreground) asks every
gate again and runs it only if the incident is still open. Reject and expiry end the
attempt, unless the strategy says ``on_reject: next``. Cancel stops a run or an
incident; ``stop_in_scope`` (``disable --cancel-running``) rejects and cancels all that
waits or runs in a scope. Every decision records who.

An approval is bound to the runbook text it was asked under (the plan's
``runbook_sha256``): once a reload has put another text in force, approving it is refused
(``RunbookChanged``), its run ends ``canceled`` with the reason ``runbook_changed``, and the
step is planned again under the new text (and parked again, if it still needs approval)
when the new runbook still has it; else the incident ends ``canceled`` with that reason.
A worker that finds the text changed between the approval and its claim does the same.
Approving a step of a runbook the deciding process has not loaded at all is refused
(``RunbookNotLoaded``) and changes nothing: after ``recovery reload`` it can be approved.
A step whose approval says ``allow_self: false`` (or, when the step says nothing,
recovery.yml's ``approval: {allow_self: false}``) cannot be approved by whoever asked for
it (``SelfApproval``): a second person must. This is the one place approvals are
decided, for the CLI and the HTTP API alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.gates.base import when
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.notify_due import post_soon
from engine.orchestration.settle import close_incident
from engine.records import Approval, Incident, RunRecord, Switch, fanned_from
from engine.runbooks.model import Runbook


class DecisionError(ValueError):
    """The decision cannot be taken (unknown run, already decided): the reason says why.
    ``code`` names the case for machines (the HTTP API's ``error``) where it has one."""

    code: str | None = None


class RunbookNotLoaded(DecisionError):
    """The step's runbook is not in the set this process acts on: nothing was decided."""

    code = "runbook_not_loaded"


class RunbookChanged(DecisionError):
    """The runbook changed since the step was asked for: the run was canceled and the
    step planned again (or its incident ended): the message says which."""

    code = "runbook_changed"


class SelfApproval(DecisionError):
    """Whoever asked for the step tried to approve it where a second person must."""

    code = "self_approval"


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
    if waiting is not None and waiting.status == "pending":
        _check_runbook(ctx, waiting, by)
        _check_second_person(ctx, waiting, by)
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


def _check_runbook(ctx: EngineContext, approval: Approval, by: str | None) -> None:
    """Refuse to approve a step whose runbook is not loaded here, or whose text changed
    since it was asked for (then the step is planned again: ``replan_changed``)."""
    runbook = ctx.find_runbook(approval.runbook)
    if runbook is None:
        if ctx.files.sha256:
            where = (f"the set in force in the service ({ctx.files.sha256[:12]}): `recovery "
                     "reload` puts the files on disk in force, then approve again")
        else:
            where = (f"{ctx.files.paths.runbooks_dir} any more: restore it, or reject the "
                     "step")
        raise RunbookNotLoaded(f"runbook {approval.runbook} of run {approval.run_id} is not "
                               f"in {where}")
    why = runbook_change(approval, runbook)
    if why is not None:
        raise RunbookChanged(replan_changed(ctx, approval, runbook, why, by))


def _check_second_person(ctx: EngineContext, approval: Approval, by: str) -> None:
    """Refuse the requester's own approval where the step (else recovery.yml) says
    ``allow_self: false``. Names are compared as recorded: the API's token name, the
    CLI's ``--as``/RECOVERY_OPERATOR/``cli:$USER``."""
    runbook = ctx.find_runbook(approval.runbook)
    strategy = runbook.strategy(approval.strategy) if runbook is not None else None
    allow_self = (strategy.allow_self if strategy is not None and strategy.allow_self
                  is not None else ctx.config.approval_allow_self)
    if allow_self or by not in (approval.requested_by,
                                _first_requester(ctx, approval.requested_by)):
        return
    source = ("the step says" if strategy is not None and strategy.allow_self is not None
              else "recovery.yml says")
    raise SelfApproval(f"{by} asked for step {approval.strategy} on {approval.target} (run "
                       f"{approval.run_id}) and cannot approve it: {source} allow_self: "
                       "false, so a second person must approve it (rejecting it is still "
                       "yours)")


def _first_requester(ctx: EngineContext, requested_by: str) -> str:
    """Who asked, behind a fanned-out incident's ``requested_by``: the requester of the
    incident the fan-out came from (the same person asked for every host's step)."""
    origin_id = fanned_from(requested_by)
    origin = ctx.store.get_incident(origin_id) if origin_id else None
    return (origin.requested_by or origin.trigger) if origin is not None else requested_by


def runbook_change(approval: Approval, runbook: Runbook) -> str | None:
    """Why ``runbook`` is not the text the approval was asked under; None when it is (or
    the approval predates the binding: no hash in its plan)."""
    asked = (approval.plan or {}).get("runbook_sha256")
    if not asked or asked == runbook.sha256:
        return None
    return (f"runbook {runbook.name} changed since step {approval.strategy} was asked for "
            f"(sha256 {str(asked)[:12]}, now {runbook.sha256[:12]})")


def replan_changed(ctx: EngineContext, approval: Approval, runbook: Runbook | None, why: str,
                   by: str | None) -> str:
    """The runbook changed under a parked or queued step: its run ends ``canceled`` with
    ``runbook_changed``; the incident goes back to the workers at that step of the new
    text (planned, and parked, again), or ends ``canceled`` when the step is gone. Returns
    what happened, in words."""
    reason = f"runbook_changed: {why}"
    run = ctx.store.get_run(approval.run_id)
    if run is None:
        ctx.store.decide_approval(approval.run_id, status="canceled", by=by, reason=reason,
                                  at=time.time(), expect=approval.status)
    elif not cancel_waiting(ctx, run, reason, by):   # it started or ended meanwhile
        now = ctx.store.get_run(run.id)
        return f"{reason}; run {run.id} is {now.status.value if now else 'gone'}: left as it is"
    incident = ctx.store.get_incident(approval.incident_id or "")
    if incident is None or not incident.state.is_open:
        return f"{reason}; run {approval.run_id} canceled"
    names = [s.name for s in runbook.strategies] if runbook is not None else []
    if approval.strategy not in names:
        words = (f"{reason}; run {approval.run_id} canceled; the runbook has no step "
                 f"{approval.strategy} any more: incident {incident.id} canceled")
        close_incident(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED, words,
                       expect=[IncidentState.OPEN, IncidentState.REMEDIATING],
                       approved_step=None, approved_by=None)
        return words
    words = (f"{reason}; run {approval.run_id} canceled; step {approval.strategy} of "
             f"incident {incident.id} is planned again under the new text")
    # Still the request that parked the step (its trigger, requester, --strategy and
    # --force): handed back to the workers, who plan it again, not a new signal.
    ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                              state=IncidentState.OPEN, next_try_at=time.time(),
                              step=names.index(approval.strategy), forced=incident.forced,
                              approved_step=None, approved_by=None, reason=words)
    return words


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


def cancel(ctx: EngineContext, ident: str, *, by: str, why: str = "") -> str:
    """Cancel a run or an incident; a running step is asked to stop (playbooks stop at
    the next task boundary; python actions cannot be interrupted and finish). Every
    record it ends says "canceled by WHO" (": WHY" when given)."""
    run = ctx.store.get_run(ident)
    incident = ctx.store.get_incident(ident) if run is None else (
        ctx.store.get_incident(run.incident_id) if run.incident_id else None)
    if run is None and incident is None:
        raise DecisionError(f"no run or incident {ident}")
    said = []
    words = f"canceled by {by}" + (f": {why}" if why else "")
    # Canceling an incident (directly, or through one of its runs) cancels everything
    # that still waits for it, so nothing parked can be approved afterwards.
    runs = [run] if incident is None else ctx.store.query_runs(incident_id=incident.id,
                                                               limit=None)
    for r in runs:
        if r.status == RunStatus.RUNNING:
            ctx.store.set_value(f"cancel:{r.id}", {"by": by, "at": time.time(),
                                                   "reason": words})
            event = ctx.running.get(r.id)
            if event is not None:
                event.set()
            said.append(f"asked run {r.id} to stop")
        elif cancel_waiting(ctx, r, words, by):
            said.append(f"canceled run {r.id}")
    if incident is not None and incident.state.is_open:
        closed = close_incident(ctx, incident, IncidentState.CANCELED,
                                AttemptOutcome.CANCELED, words,
                                expect=[IncidentState.OPEN, IncidentState.REMEDIATING])
        if closed is not None:
            said.append(f"canceled incident {incident.id}")
    return "; ".join(said) or f"{ident}: nothing left to cancel"


def canceled_by(ctx: EngineContext, run_id: str) -> str | None:
    """Who asked a running step to stop, and why ("canceled by carol: emergency stop:
    fire"), as ``cancel`` recorded it; None if nobody did."""
    asked = ctx.store.get_value(f"cancel:{run_id}")
    if not asked:
        return None
    return asked.get("reason") or f"canceled by {asked.get('by') or 'someone'}"


@dataclass
class Stopped:
    """What an emergency stop did: runs asked to stop (running) or canceled (approved,
    queued), approvals rejected, incidents canceled (with no run in flight: claimed, or
    deferred); ``said`` in words, one line each."""

    canceled_runs: list[str]
    rejected_approvals: list[str]
    said: list[str]
    canceled_incidents: list[str] = field(default_factory=list)


def stop_in_scope(ctx: EngineContext, component: str | None, target: str | None, *,
                  by: str, reason: str = "") -> Stopped:
    """Reject every approval waiting in the scope (a component, a target, both, or
    everything when both are None), then cancel every run in flight there: running
    (asked to stop, its incident canceled) or approved and queued; then every incident
    still open there. Run after the kill switch is on, so nothing new starts there
    meanwhile; the open incidents are what the switch cannot stop: a step whose gates
    said yes before it went on, not begun yet (``begin_step`` refuses a canceled
    incident)."""
    scope = Switch.scope_of(component, target)
    stopped = Stopped([], [], [])
    words = "emergency stop" + (f": {reason}" if reason else "")
    for approval in ctx.store.list_approvals("pending"):
        if not scope.covers(approval.component, approval.target):
            continue
        try:
            reject(ctx, approval.run_id, by=by, reason=words)
        except DecisionError as exc:
            stopped.said.append(f"not rejected {approval.run_id}: {exc}")
            continue
        stopped.rejected_approvals.append(approval.run_id)
        stopped.said.append(f"rejected {approval.run_id} ({approval.strategy} on "
                            f"{approval.target})")
    for status in (RunStatus.RUNNING, RunStatus.QUEUED):
        for run in ctx.store.query_runs(status=status.value, limit=None):
            if not scope.covers(run.component, run.target):
                continue
            stopped.canceled_runs.append(run.id)
            stopped.said.append(cancel(ctx, run.id, by=by, why=words))
    for incident in ctx.store.list_incidents(open_only=True, limit=100_000):
        if not scope.covers(incident.component, incident.target):
            continue
        said = cancel(ctx, incident.id, by=by, why=words)
        closed = ctx.store.get_incident(incident.id)
        if closed is not None and closed.state == IncidentState.CANCELED:
            stopped.canceled_incidents.append(incident.id)
            stopped.said.append(said)
    return stopped


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
    runbook = ctx.find_runbook(incident.runbook)
    strategy = runbook.strategy(approval.strategy) if runbook is not None else None
    if strategy is not None and strategy.on_reject == "next":
        # Hand the rest of the attempt to a worker: it goes on at the next step.
        ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                  state=IncidentState.OPEN, next_try_at=time.time(),
                                  step=_index_of(ctx, incident, approval.strategy) + 1,
                                  reason=words)
        return
    close_incident(ctx, incident, IncidentState.CANCELED, AttemptOutcome.REJECTED, words)


def _index_of(ctx: EngineContext, incident: Incident, strategy: str) -> int:
    runbook = ctx.find_runbook(incident.runbook)
    if runbook is None:
        return incident.step
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
