"""One attempt: walk the strategies, gate each step, run it, verify it, escalate.

``advance`` is called by whoever owns the incident's attempt (the caller that opened
or claimed it, a worker resuming an approved or deferred step). It stops when the
incident is recovered or degraded, when the strategies are exhausted (degraded mode
on, failure cooldown), or when a gate defers, parks or refuses a step.

Each step goes through four phases, a ``Step`` passed from one to the next:
``_gate`` (what every gate says, and the run that records it; a step the gates hold
back is deferred, refused or parked by ``_held``) -> ``_begin`` (its record, its attempt,
its run row: one transaction) -> ``_run`` (run and verify under the target's lock, its
end recorded) -> ``_settle`` (what its end means for the incident). Running a step is
engine.orchestration.step's; ending an attempt is engine.orchestration.settle's.
"""

from __future__ import annotations

import enum
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine import log_context
from engine.artifacts import RunArtifacts
from engine.context import EngineContext, UnknownRunbook
from engine.executors import StepResult
from engine.gates import Decision, GateContext, Verdict
from engine.gates.base import when
from engine.gates.lock import Lease
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus, TransitionError
from engine.notify_due import post_soon
from engine.orchestration.approvals import (
    cancel_waiting,
    canceled_by,
    replan_changed,
    runbook_change,
)
from engine.orchestration.fanout import fan_out, fans_out, record_not_here
from engine.orchestration.lost_lease import fence_of, record_lost_lease, still_held
from engine.orchestration.planner import plan_step
from engine.orchestration.refusals import record_refusal
from engine.orchestration.rollout import run_step
from engine.orchestration.settle import (
    degrade,
    end_attempt,
    ended_elsewhere,
    exhausted,
    hand_back_interrupted,
    seen_healthy,
)
from engine.orchestration.step import (
    Patience,
    RunCallback,
    action_context,
    beat,
    end_run,
    keep,
    new_run,
    open_record,
)
from engine.orchestration.step_facts import (
    StepFacts,
    approved_pins,
    facts_needed,
    judged_for_approval,
)
from engine.orchestration.verify import verify
from engine.outages import describe, is_outage
from engine.records import Approval, Attempt, Incident, Lock, RunRecord, new_id
from engine.runbooks.model import Runbook, Strategy
from engine.store.fencing import Fence, StaleLease

log = logging.getLogger(__name__)


class StepEnd(enum.Enum):
    NEXT = "next"      # failed or skipped: escalate to the next strategy
    DONE = "done"      # the incident ended (recovered, degraded)
    HALT = "halt"      # deferred, parked, refused or canceled: the attempt pauses or ends


@dataclass
class Step:
    """One strategy step on its way through the phases: what the gates said, the run
    that records it, and, once it has begun, the locks it holds."""

    incident: Incident              # as it is now: begin_step returns it with its attempt
    runbook: Runbook
    index: int                      # of the strategy in the runbook
    strategy: Strategy
    resume: RunRecord | None        # the approved run taken up again, if it is one
    run: RunRecord
    details: dict[str, Any]         # run.json beside the record: the gates' answers, labels
    decision: Decision              # the gates' final answer
    asked: list[Decision]           # every gate's answer
    asked_at: float
    artifacts: RunArtifacts
    # What the gates took once they allowed: the target's lock, a fleet slot.
    locks: tuple[Lock, ...] = ()
    cancel: threading.Event = field(default_factory=threading.Event)
    # What its plan pinned when an approval was judged on it: the run is held to it.
    pins: dict[str, Any] = field(default_factory=dict)
    lease: Lease | None = None      # its locks, renewed from its run until it has settled

    @property
    def fence(self) -> Fence | None:
        """What its writes carry while it holds its target's lock (engine.store.fencing)."""
        return fence_of(self.locks, self.incident.target)


def advance(ctx: EngineContext, incident_id: str, *, resume: RunRecord | None = None,
            on_run: RunCallback | None = None) -> Incident:
    """Carry the incident's attempt as far as the gates allow; return the incident. The
    whole call acts on the set of runbooks, playbooks and inventory in force when it
    began, whatever a reload puts in force meanwhile (engine.runbooks.loaded_set)."""
    with ctx.pinned(), log_context.scope(incident_id=incident_id):
        return _advance(ctx, incident_id, resume, on_run)


def _advance(ctx: EngineContext, incident_id: str, resume: RunRecord | None,
             on_run: RunCallback | None) -> Incident:
    incident = ctx.store.get_incident(incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id}")
    log_context.note(fingerprint=incident.fingerprint)   # its lines carry its alert's
    if incident.state != IncidentState.REMEDIATING:
        if resume is not None:
            cancel_waiting(ctx, resume, f"incident is {incident.state.value}", None)
        return incident
    try:
        runbook = ctx.runbook(incident.runbook)
    except UnknownRunbook as exc:
        reason = f"runbook {incident.runbook} is not in the set in force: {exc.args[0]}"
        if resume is not None:   # its approved step goes with it, on the record
            cancel_waiting(ctx, resume, reason, None)
        return end_attempt(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
                           reason)
    if resume is not None and _replanned(ctx, resume, runbook):
        return ctx.store.get_incident(incident_id) or incident
    steps = _steps(runbook, incident)
    if not _steps(runbook, incident, from_step=0):
        return _refuse_unhandled(ctx, incident, runbook)
    for n, (index, strategy) in enumerate(steps):
        if n:   # the first step's incident was just read (and begin_step checks it again)
            incident = ctx.store.get_incident(incident_id) or incident
        if incident.state != IncidentState.REMEDIATING:  # resolved or canceled meanwhile
            ended_elsewhere(ctx, incident)
            return incident
        this_resume = resume if resume is not None and resume.strategy == strategy.name else None
        resume = None
        if this_resume is None and fans_out(incident, strategy):
            done = fan_out(ctx, incident, runbook, strategy, advance)
            if done.error or not done.includes(incident.target):
                status, why = record_not_here(ctx, incident, runbook, strategy, done, on_run)
                ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                          step=index + 1,
                                          reason=f"{strategy.name} {status.value}: {why}")
                continue
        end = _step(ctx, incident, runbook, index, strategy, this_resume, on_run)
        if end is not StepEnd.NEXT:
            return ctx.store.get_incident(incident_id) or incident
    return exhausted(ctx, ctx.store.get_incident(incident_id) or incident, runbook)


def _replanned(ctx: EngineContext, resume: RunRecord, runbook: Runbook) -> bool:
    """An approved step whose runbook changed since it was asked for is not run: it is
    planned again under the text in force (engine.orchestration.approvals.replan_changed)."""
    approval = ctx.store.get_approval(resume.id)
    why = runbook_change(approval, runbook) if approval is not None else None
    if why is None:
        return False
    log.info("run %s not started: %s", resume.id,
             replan_changed(ctx, approval, runbook, why, None))
    return True


def _steps(runbook: Runbook, incident: Incident,
           from_step: int | None = None) -> list[tuple[int, Strategy]]:
    """The strategies this incident's attempt runs, from its next step (or ``from_step``)."""
    first = incident.step if from_step is None else from_step
    if incident.only_strategy:
        return [(i, s) for i, s in enumerate(runbook.strategies)
                if s.name == incident.only_strategy and i >= first]
    return [(i, s) for i, s in runbook.strategies_for(incident.failure_type) if i >= first]


def _step(ctx: EngineContext, incident: Incident, runbook: Runbook, index: int,
          strategy: Strategy, resume: RunRecord | None, on_run: RunCallback | None) -> StepEnd:
    """One step: gate -> begin -> run and verify -> settle. A step whose last run was
    interrupted is verified first: if the target passes, it is not run again."""
    run_id = resume.id if resume else new_id("run")
    with log_context.scope(run_id=run_id):    # the step's lines carry its run's id
        return _gated_step(ctx, incident, runbook, index, strategy, resume, on_run, run_id)


def _gated_step(ctx: EngineContext, incident: Incident, runbook: Runbook, index: int,
                strategy: Strategy, resume: RunRecord | None, on_run: RunCallback | None,
                run_id: str) -> StepEnd:
    after_interruption = None
    interrupted = _interrupted_run(ctx, incident, strategy) if resume is None else None
    if interrupted is not None:
        verified, after_interruption = _verify_after_interruption(
            ctx, incident, runbook, strategy, run_id, interrupted, on_run)
        if verified:
            return StepEnd.DONE
    step = _gate(ctx, incident, runbook, index, strategy, resume, run_id, after_interruption)
    if step.decision.verdict != Verdict.ALLOW:
        return _held(ctx, step, on_run)
    if (not_started := _begin(ctx, step, on_run)) is not None:
        return not_started
    try:
        result = _run(ctx, step, on_run)
        if result is None:
            return StepEnd.HALT
        return _settle(ctx, step, result)
    except StaleLease as exc:   # settled under a lease taken meanwhile: the rest is theirs
        log.warning("run %s: its end was recorded, the rest is left to the lock's new "
                    "holder: %s", step.run.id, exc)
        return StepEnd.HALT
    finally:
        _let_go(step)


def _gate(ctx: EngineContext, incident: Incident, runbook: Runbook, index: int,
          strategy: Strategy, resume: RunRecord | None, run_id: str,
          after_interruption: str | None) -> Step:
    """Ask every gate whether the step may start now; the run that will record it."""
    approved_by = incident.approved_by if incident.approved_step == index else None
    facts = (StepFacts(ctx, incident, runbook, strategy)
             if facts_needed(runbook, strategy, approved_by) else None)
    now = time.time()
    final, asked = ctx.gates.decide(GateContext(
        runbook=runbook, strategy=strategy, target=incident.target, store=ctx.store,
        trigger=incident.trigger, incident=incident, forced=incident.forced,
        approved_by=approved_by, starts_attempt=incident.attempt_id is None,
        holder=ctx.holder, run_id=run_id, lock_ttl=ctx.config.lock_ttl, now=now,
        after_interruption=after_interruption, inventory=ctx.inventory,
        facts=facts.get if facts is not None else None))
    run = new_run(ctx, incident, runbook, strategy, RunStatus.RUNNING,
                  resume.started_at if resume else now, id=run_id,
                  attempt_id=incident.attempt_id, approved_by=approved_by,
                  forced=any(d.forced for d in asked), reason=final.reason,
                  gate=final.gate if final.verdict != Verdict.ALLOW else None)
    details = {"gates": [d.to_dict() for d in asked], "labels": incident.labels,
               "failure_type": incident.failure_type}
    if incident.context:
        details["context"] = incident.context   # what the application said: a record
    if after_interruption:
        details["after_interruption"] = after_interruption
    if facts is not None and (judged := facts.record()) is not None:
        details["plan_facts"] = judged      # what the approval's conditions were judged on
    pins = facts.pins if facts is not None else {}
    if resume is not None and approved_by:  # held to the plan its approver was shown
        pins = approved_pins(ctx.store.get_approval(run_id), approved_by)
        if pins:
            details["approved_pins"] = pins
    return Step(incident, runbook, index, strategy, resume, run, details, final, asked, now,
                RunArtifacts(ctx.artifacts_dir, run_id, ctx.redactor), pins=pins)


def _held(ctx: EngineContext, step: Step, on_run: RunCallback | None) -> StepEnd:
    """The gates said not now (defer: the incident waits, open, until then), not at all
    (refuse: it ends canceled) or not without a person (park)."""
    final, incident, run = step.decision, step.incident, step.run
    if final.verdict == Verdict.REFUSE:
        if final.gate == "observe":  # shadow mode: what the whole escalation would do
            step.details["plan"] = _plan(ctx, incident, step.runbook)
        record_refusal(ctx, run, step.details, resume=step.resume, on_run=on_run)
        end_attempt(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
                    f"refused: {final.reason}")
        return StepEnd.HALT
    keep(run.id, lambda: open_record(ctx, run, step.details, step.artifacts))
    if final.verdict == Verdict.DEFER:
        end_run(ctx, run, step.artifacts, RunStatus.DEFERRED, final.reason, step.resume, on_run)
        ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                  state=IncidentState.OPEN, next_try_at=final.until,
                                  step=step.index, reason=final.reason)
        return StepEnd.HALT
    _park(ctx, step, on_run)
    ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                              step=step.index, reason=final.reason)
    return StepEnd.HALT


def _begin(ctx: EngineContext, step: Step, on_run: RunCallback | None) -> StepEnd | None:
    """Start the allowed step: its record, its attempt (if it starts one) and its run row.
    None once it has begun; else how the attempt goes on (``_not_started``)."""
    run = step.run
    step.locks = tuple(lock for d in step.asked for lock in d.locks)
    attempt = None
    if step.incident.attempt_id is None:
        attempt = Attempt(id=new_id("att"), incident_id=step.incident.id,
                          runbook=step.runbook.name, target=step.incident.target,
                          started_at=step.asked_at)
        run.attempt_id = attempt.id
    ctx.running[run.id] = step.cancel      # before anyone hears of the run: it can be canceled
    if step.resume:
        # Its duration starts now, not when it parked: waiting for a person is not work.
        run.started_at = step.asked_at
    begun = False
    try:
        if step.resume is None:
            # Its record first: a step whose record cannot be written (a full disk)
            # never starts, and no attempt is counted for it.
            open_record(ctx, run, step.details, step.artifacts)
        else:
            step.artifacts.create()        # parked before: its directory is there
        # The attempt (if this step starts one), its count on the incident and the run
        # row: one transaction, so a step is never half started.
        step.incident = ctx.store.begin_step(
            run, attempt, resumed=step.resume is not None) or step.incident
        begun = True
        if step.resume is not None:
            open_record(ctx, run, step.details, step.artifacts)
    except TransitionError as exc:  # canceled or resolved since the gates: do nothing
        ctx.running.pop(run.id, None)
        _release(ctx, step.locks)
        if step.resume is None:
            shutil.rmtree(step.artifacts.path, ignore_errors=True)  # no run row: no record
        log.info("step %s not started: %s", run.id, exc)
        return StepEnd.HALT
    except Exception as exc:  # noqa: BLE001 - a full disk, the store down: not started
        ctx.running.pop(run.id, None)
        _release(ctx, step.locks)
        return _not_started(ctx, step, begun, exc, on_run)
    if on_run:
        on_run(run)
    return None


def _run(ctx: EngineContext, step: Step, on_run: RunCallback | None) -> StepResult | None:
    """Run and verify the begun step, its lease beating (so no sweep takes it for dead)
    until its end is recorded. The result; None when its end could not be recorded
    (the incident is then handed back: ``_end_step``)."""
    run = step.run
    lease = step.lease = ctx.leases.hold(step.locks,
                                         on_beat=lambda: beat(ctx, run.id, step.cancel),
                                         on_lost=lambda _why: step.cancel.set())
    post_soon(ctx)          # RecoveryActionInProgress: told at the next worker pass
    try:
        # Asked again now, before anything acts: a process that stalled since the gates
        # may no longer hold its target.
        lost = still_held(lease)
        result = (StepResult(RunStatus.INTERRUPTED, "not started", 1) if lost
                  else _run_and_verify(ctx, step))
        lease.acting = False
        gone = lease.taken or lease.lapsed
        if gone:   # stalled past its lease, or it lapsed in an outage: stopped acting
            ended = None if lost else f"{result.status.value}: {result.reason}"
            record_lost_lease(ctx, run, step.artifacts, gone, ended)
            return None
        if lease.lost:
            result.reason += (f" (its lock on {', '.join(lease.lost)} was broken while "
                              "this ran)")
        if result.status == RunStatus.CANCELED:
            asked = canceled_by(ctx, run.id)   # who and why, not only how it stopped
            if asked:
                result.reason = f"{asked} ({result.reason})"
        # Still running here, its lease beating, until its end is recorded (the
        # storage may be out for a while: Patience), so no sweep takes it for dead.
        recorded = _end_step(ctx, run, step.artifacts, result, on_run, step.cancel,
                             step.fence)
    finally:
        ctx.running.pop(run.id, None)
        post_soon(ctx)      # ... and resolved at the next one
    return result if recorded else None


def _let_go(step: Step) -> None:
    """Release the step's locks once it has settled (its incident's state is written
    under them, fenced)."""
    if step.lease is None:
        return
    try:
        step.lease.release()
    except Exception as exc:  # noqa: BLE001 - the lock lapses by itself
        log.warning("run %s: its lock was not released (it lapses): %s", step.run.id, exc)


def _settle(ctx: EngineContext, step: Step, result: StepResult) -> StepEnd:
    """What the step's recorded end means for its incident: recovered or degraded (the
    attempt is done), canceled, handed back (interrupted), or on to the next strategy."""
    incident, strategy, fence = step.incident, step.strategy, step.fence
    if result.status == RunStatus.INTERRUPTED:
        ended = time.time()
        hand_back_interrupted(ctx, step.run, result.reason, ended, ended + ctx.config.lock_ttl,
                              fence)
        return StepEnd.HALT
    ctx.store.update_incident(incident.id, approved_step=None, approved_by=None, fence=fence)
    if result.status == RunStatus.SUCCEEDED and not strategy.degrades:
        seen_healthy(ctx, step.runbook, incident.target)   # a passing verify, whatever else
    current = ctx.store.get_incident(incident.id)
    if current is None or current.state != IncidentState.REMEDIATING:
        # Canceled or resolved while the step ran: its reason stands, nothing more is done.
        ended_elsewhere(ctx, current or incident)
        return StepEnd.HALT
    if result.status == RunStatus.SUCCEEDED:
        _succeeded(ctx, step, result)
        return StepEnd.DONE
    if result.status == RunStatus.CANCELED:
        end_attempt(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
                    f"{strategy.name} canceled: {result.reason}", fence=fence)
        return StepEnd.HALT
    degraded_mode = step.runbook.degraded_mode
    if (result.status == RunStatus.FAILED and degraded_mode
            and degraded_mode.when == "failing"):
        degrade(ctx, incident, step.runbook, f"{strategy.name} failed: {result.reason}")
    ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                              step=step.index + 1, fence=fence,
                              reason=f"{strategy.name} {result.status.value}: {result.reason}")
    return StepEnd.NEXT


def _succeeded(ctx: EngineContext, step: Step, result: StepResult) -> None:
    """A verified step ends the attempt: recovered, or degraded by a strategy that only
    degrades."""
    incident, runbook, strategy = step.incident, step.runbook, step.strategy
    if strategy.degrades:
        degrade(ctx, incident, runbook,
                f"{strategy.name} switched to degraded service: {result.reason}")
        end_attempt(ctx, incident, IncidentState.DEGRADED, AttemptOutcome.DEGRADED,
                    f"degraded by {strategy.name}: {result.reason}", fence=step.fence)
        return
    spec = runbook.verify_for(strategy)
    end_attempt(ctx, incident, IncidentState.RECOVERED, AttemptOutcome.RECOVERED,
                f"recovered by {strategy.name}: {result.reason}", fence=step.fence,
                verify_until=time.time() + (spec.deadline if spec else 0.0))


def _run_and_verify(ctx: EngineContext, step: Step) -> StepResult:
    """The step, then its verify: what it did, as a result (never an exception). A
    playbook step may run in a rollout with other hosts' (engine.orchestration.rollout)."""
    try:
        result = run_step(ctx, step.incident, step.runbook, step.strategy, step.run,
                          step.artifacts, step.cancel, pins=step.pins, lease=step.lease)
    except Exception as exc:  # noqa: BLE001 - an engine bug ends the step, not the process
        if is_outage(exc):   # what the step did is not known: verified before a retry
            result = StepResult(RunStatus.INTERRUPTED, "the run's record could not be "
                                f"written while it ran: {describe(exc)}", 1)
        else:
            result = StepResult(RunStatus.FAILED, f"engine error: {describe(exc)}", 1)
    return result


def _end_step(ctx: EngineContext, run: RunRecord, artifacts: RunArtifacts,
              result: StepResult, on_run: RunCallback | None,
              cancel: threading.Event, fence: Fence | None = None) -> bool:
    """Record the end of a step that ran, its result (in memory) waiting through a
    storage outage (``Patience``). True once recorded. False when it could not be
    within the patience: the run is then ``interrupted`` with the real reason ("its
    end could not be recorded: ...") and its incident handed back, verified before a
    retry, as far as the store takes that; the log keeps the result either way.
    Refused because its lease was taken meanwhile (``StaleLease``): ``interrupted``
    (engine.orchestration.lost_lease), False. Found already interrupted by a worker's
    sweep (it stalled that long): that account stands and the incident, handed back by
    the sweep, is not touched again: False."""
    try:
        end_run(ctx, run, artifacts, result.status, result.reason, None, on_run,
                data=result.data, already_added=True,
                patience=Patience(f"run {run.id}", cancel), fence=fence)
        return not (run.status == RunStatus.INTERRUPTED
                    and result.status != RunStatus.INTERRUPTED)
    except StaleLease as exc:
        record_lost_lease(ctx, run, artifacts, str(exc),
                          f"{result.status.value}: {result.reason}")
        return False
    except Exception as exc:
        if not is_outage(exc):
            raise
        why = describe(exc)
    reason = (f"its end could not be recorded: {why} (the step had ended "
              f"{result.status.value}: {result.reason})")
    now = time.time()
    try:
        if ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED, finished_at=now,
                                reason=reason, fence=fence) is not None:
            hand_back_interrupted(ctx, run, reason, now, now + ctx.config.lock_ttl, fence)
    except Exception as again:  # noqa: BLE001 - the store is still out
        log.error("run %s: %s; not recorded either (%s): the workers mark it interrupted "
                  "once its heartbeat is old", run.id, reason, describe(again))
    return False


def _release(ctx: EngineContext, locks: tuple[Lock, ...]) -> None:
    for lock in locks:
        try:
            ctx.store.release_lock(lock.target, lock.token)
        except Exception as exc:  # noqa: BLE001 - the store down: the lock lapses by itself
            log.warning("lock on %s not released (it lapses): %s", lock.target, describe(exc))


def _not_started(ctx: EngineContext, step: Step, begun: bool, exc: Exception,
                 on_run: RunCallback | None) -> StepEnd:
    """The step could not start: its record or its state could not be written.

    On a storage outage (a full or read-only disk, the store down: engine.outages)
    nothing ran. The run ends ``interrupted`` with the reason, and the incident goes back
    to the workers at this step, tried again a lease later (no attempt was counted for
    a step that never started). An approved step that could not even be marked started
    stays queued: its claim lapses and a worker takes it again. Any other error is the
    engine's own: the run fails and the escalation goes on."""
    run, incident = step.run, step.incident
    why = describe(exc)
    if step.resume is not None and not begun:
        log.warning("approved step %s not started, left queued for a retry: %s", run.id, why)
        return StepEnd.HALT
    outage = is_outage(exc)
    status = RunStatus.INTERRUPTED if outage else RunStatus.FAILED
    reason = (f"not started: its record could not be written: {why}" if outage
              else f"not started: engine error: {why}")
    if not begun:
        run.attempt_id = incident.attempt_id   # the attempt it was to start did not
    retry_at = time.time() + ctx.config.lock_ttl
    try:
        end_run(ctx, run, step.artifacts, status, reason, None, on_run, already_added=begun)
        if not outage:
            ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                      step=step.index + 1, reason=f"{run.strategy} {reason}")
            return StepEnd.NEXT
        ctx.store.update_incident(
            incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
            next_try_at=retry_at, step=step.index,
            reason=f"{run.strategy} {reason}; tried again at {when(retry_at)}")
    except Exception as store_exc:  # noqa: BLE001 - the store is out too
        # Left remediating with nothing running: the workers hand it back once the
        # store answers again (Worker._reopen_orphans).
        log.warning("run %s %s, and the store could not record it: %s", run.id, reason,
                    describe(store_exc))
    log.warning("run %s of incident %s %s", run.id, incident.id, reason)
    return StepEnd.HALT


def _interrupted_run(ctx: EngineContext, incident: Incident,
                     strategy: Strategy) -> RunRecord | None:
    """The interrupted run of this step that the incident was handed back with, if any."""
    if not incident.interrupted_run:
        return None
    run = ctx.store.get_run(incident.interrupted_run)
    return run if run is not None and run.strategy == strategy.name else None


def _verify_after_interruption(ctx: EngineContext, incident: Incident, runbook: Runbook,
                               strategy: Strategy, run_id: str, interrupted: RunRecord,
                               on_run: RunCallback | None) -> tuple[bool, str]:
    """Before an interrupted step runs again, the step's verify, on the target as it is
    now: the step may have done its work before it was stopped, and running it twice can
    hurt (a second snapshot rollback loses what the first restored). Passing: the run
    ``run_id`` is recorded ``skipped`` ("verified after interruption"), the incident is
    ``recovered``, nothing runs again; returns (True, why). Failing (or no verify to
    ask: a step that only degrades): (False, why); the step goes to its gates, which park
    one that is not ``idempotent`` for approval, and the check's events open the
    artifacts of the run that follows. No lock, no attempt: a verify changes nothing."""
    spec = runbook.verify_for(strategy)
    what = f"run {interrupted.id} of {strategy.name} was interrupted"
    if spec is None or strategy.degrades:
        return False, f"{what}; no verify to ask"
    started = time.time()
    artifacts = RunArtifacts(ctx.artifacts_dir, run_id, ctx.redactor)
    cancel = threading.Event()
    # The incident is touched while the check runs, so no worker takes it for orphaned.
    lease = ctx.leases.hold(None, on_beat=lambda: ctx.store.update_incident(
        incident.id, expect=[IncidentState.REMEDIATING]))
    try:
        artifacts.create()
        ok, why = verify(spec, action_context(ctx, incident, runbook, spec.params, cancel),
                         ctx.python, artifacts, cancel)
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk: the step's own start decides
        ok, why = False, f"the verify could not run: {describe(exc)}"
    finally:
        lease.release()
    if not ok:
        log.info("incident %s: %s and the target still fails its verify: %s", incident.id,
                 what, why)
        return False, f"{what} and the target still fails its verify ({why})"
    reason = f"verified after interruption: {why}; {what} and had done its work: not run again"
    run = new_run(ctx, incident, runbook, strategy, RunStatus.SKIPPED, started, id=run_id,
                  reason=reason)
    keep(run_id, lambda: open_record(ctx, run, {
        "labels": incident.labels, "failure_type": incident.failure_type,
        "interrupted_run": interrupted.id}, artifacts))
    end_run(ctx, run, artifacts, RunStatus.SKIPPED, reason, None, on_run)
    seen_healthy(ctx, runbook, incident.target)
    end_attempt(ctx, incident, IncidentState.RECOVERED, AttemptOutcome.RECOVERED,
                f"recovered: {reason}", verify_until=time.time() + spec.deadline)
    return True, reason


def _park(ctx: EngineContext, step: Step, on_run: RunCallback | None) -> None:
    """Park for approval: no lock is held while a person decides."""
    incident, runbook, strategy, run = step.incident, step.runbook, step.strategy, step.run
    run.status = RunStatus.PENDING_APPROVAL
    plan = plan_step(ctx, incident, runbook, strategy)
    judged = judged_for_approval(ctx, incident, runbook, strategy,
                                 step.details.get("plan_facts"))
    if judged is not None:   # what the approver is shown, and what an approved run is held to
        plan["judged"] = ctx.redactor.data(judged)
    if ctx.store.get_run(run.id) is None:
        ctx.store.add_run(run)
    else:
        ctx.store.update_run(run.id, status=RunStatus.PENDING_APPROVAL, reason=run.reason,
                             gate=run.gate)
    ctx.store.add_approval(Approval(
        run_id=run.id, incident_id=incident.id, runbook=runbook.name,
        component=runbook.component, strategy=strategy.name, target=incident.target,
        requested_by=incident.requested_by or incident.trigger, requested_at=time.time(),
        expires_at=time.time() + runbook.approval_timeout, reason=step.decision.reason,
        plan=plan))
    keep(run.id, lambda: step.artifacts.write_run_json({"status": run.status.value,
                                                         "plan": plan}))
    keep(run.id, lambda: step.artifacts.set_status("pending_approval", 0))
    post_soon(ctx)          # RecoveryApprovalPending: told at the next worker pass
    if on_run:
        on_run(run)


def _plan(ctx: EngineContext, incident: Incident, runbook: Runbook) -> list[dict[str, Any]]:
    return [plan_step(ctx, incident, runbook, s) for _i, s in _steps(runbook, incident)]


def _refuse_unhandled(ctx: EngineContext, incident: Incident, runbook: Runbook) -> Incident:
    """No strategy handles this failure type: nothing was tried, so nothing failed. The
    refusal is recorded as a run (an alert's or a probe's counted with the others of its
    minute, under no failure type: a label chose it); no degraded mode, no cooldown."""
    reason = (f"no strategy of runbook {runbook.name} handles failure type "
              f"{incident.failure_type!r}")
    now = time.time()
    run = new_run(ctx, incident, runbook, None, RunStatus.REFUSED, now, finished_at=now,
                  reason=reason)
    record_refusal(ctx, run, {"labels": incident.labels, "failure_type": incident.failure_type},
                   reason_key="no strategy handles its failure type")
    return end_attempt(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
                       f"refused: {reason}")
