"""One attempt: walk the strategies, gate each step, run it, verify it, escalate.

``advance`` is called by whoever owns the incident's attempt (the caller that opened
or claimed it, a worker resuming an approved or deferred step). It stops when the
incident is recovered or degraded, when the strategies are exhausted (degraded mode
on, failure cooldown), or when a gate defers, parks or refuses a step.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from engine import exhaustion, refusals
from engine.actions.base import ActionContext
from engine.artifacts import RunArtifacts
from engine.context import EngineContext, UnknownRunbook
from engine.executors import StepResult
from engine.gates import Decision, GateContext, Verdict
from engine.gates.base import when
from engine.lifecycle import (
    METRIC_OUTCOME,
    AttemptOutcome,
    IncidentState,
    RunStatus,
    TransitionError,
)
from engine.notifier import post_soon
from engine.outages import describe, is_outage
from engine.records import (
    Approval,
    Attempt,
    DegradedReason,
    Incident,
    Lock,
    RunRecord,
    new_id,
)
from engine.runbook import Runbook, Strategy
from engine.templating import TemplateError, render_data
from engine.verify import verify

RunCallback = Callable[[RunRecord], None]
T = TypeVar("T")
log = logging.getLogger(__name__)
END_PATIENCE = 600.0    # s a step that ran waits for the storage to take its end
END_RETRY_MAX = 5.0     # s between two tries of that, at most


_ENDED_BY = {IncidentState.RESOLVED: AttemptOutcome.RESOLVED,
             IncidentState.CANCELED: AttemptOutcome.CANCELED}


class StepEnd(enum.Enum):
    NEXT = "next"      # failed or skipped: escalate to the next strategy
    DONE = "done"      # the incident ended (recovered, degraded)
    HALT = "halt"      # deferred, parked, refused or canceled: the attempt pauses or ends


def advance(ctx: EngineContext, incident_id: str, *, resume: RunRecord | None = None,
            on_run: RunCallback | None = None) -> Incident:
    """Carry the incident's attempt as far as the gates allow; return the incident. The
    whole call acts on the set of runbooks, playbooks and inventory in force when it
    began, whatever a reload puts in force meanwhile (engine.loaded_set)."""
    with ctx.pinned():
        return _advance(ctx, incident_id, resume, on_run)


def _advance(ctx: EngineContext, incident_id: str, resume: RunRecord | None,
             on_run: RunCallback | None) -> Incident:
    incident = ctx.store.get_incident(incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id}")
    if incident.state != IncidentState.REMEDIATING:
        if resume is not None:
            from engine.approvals import cancel_waiting

            cancel_waiting(ctx, resume, f"incident is {incident.state.value}", None)
        return incident
    try:
        runbook = ctx.runbook(incident.runbook)
    except UnknownRunbook as exc:
        reason = f"runbook {incident.runbook} is not in the set in force: {exc.args[0]}"
        if resume is not None:   # its approved step goes with it, on the record
            from engine.approvals import cancel_waiting

            cancel_waiting(ctx, resume, reason, None)
        return _close(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED, reason)
    if resume is not None and _replanned(ctx, resume, runbook):
        return ctx.store.get_incident(incident_id) or incident
    steps = _steps(runbook, incident)
    if not _steps(runbook, incident, from_step=0):
        return _refuse_unhandled(ctx, incident, runbook)
    for index, strategy in steps:
        incident = ctx.store.get_incident(incident_id) or incident
        if incident.state != IncidentState.REMEDIATING:  # resolved or canceled meanwhile
            finish_attempt(ctx, incident, _ENDED_BY.get(incident.state, AttemptOutcome.CANCELED))
            return incident
        this_resume = resume if resume is not None and resume.strategy == strategy.name else None
        resume = None
        end = _step(ctx, incident, runbook, index, strategy, this_resume, on_run)
        if end is not StepEnd.NEXT:
            return ctx.store.get_incident(incident_id) or incident
    return _exhausted(ctx, ctx.store.get_incident(incident_id) or incident, runbook)


def _replanned(ctx: EngineContext, resume: RunRecord, runbook: Runbook) -> bool:
    """An approved step whose runbook changed since it was asked for is not run: it is
    planned again under the text in force (engine.approvals.replan_changed)."""
    from engine.approvals import replan_changed, runbook_change

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
    store = ctx.store
    run_id = resume.id if resume else new_id("run")
    after_interruption = None
    interrupted = _interrupted_run(ctx, incident, strategy) if resume is None else None
    if interrupted is not None:
        verified, after_interruption = _verify_after_interruption(
            ctx, incident, runbook, strategy, run_id, interrupted, on_run)
        if verified:
            return StepEnd.DONE
    now = time.time()
    approved_by = incident.approved_by if incident.approved_step == index else None
    gate_ctx = GateContext(
        runbook=runbook, strategy=strategy, target=incident.target, store=store,
        trigger=incident.trigger, incident=incident, forced=incident.forced,
        approved_by=approved_by, starts_attempt=incident.attempt_id is None,
        holder=ctx.holder, run_id=run_id, lock_ttl=ctx.config.lock_ttl, now=now,
        after_interruption=after_interruption)
    final, asked = ctx.gates.decide(gate_ctx)
    run = RunRecord(
        id=run_id, component=runbook.component, runbook=runbook.name, strategy=strategy.name,
        target=incident.target, status=RunStatus.RUNNING, trigger=incident.trigger,
        incident_id=incident.id, attempt_id=incident.attempt_id, kind=strategy.kind,
        started_at=resume.started_at if resume else now, fingerprint=incident.fingerprint,
        requested_by=incident.requested_by, approved_by=approved_by,
        forced=any(d.forced for d in asked), reason=final.reason,
        runbook_sha256=runbook.sha256, playbook_sha256=_playbook_sha(ctx, strategy),
        gate=final.gate if final.verdict != Verdict.ALLOW else None)
    record = {"gates": [d.to_dict() for d in asked], "labels": incident.labels,
              "failure_type": incident.failure_type}
    if after_interruption:
        record["after_interruption"] = after_interruption
    if (final.verdict == Verdict.REFUSE and resume is None
            and refusals.counted(incident.trigger, opens_incident=True)):
        if final.gate == "observe":  # shadow mode: what the whole escalation would do
            record["plan"] = _plan(ctx, incident, runbook)
        _refuse_counted(ctx, incident, run, record, final.reason, on_run)
        return StepEnd.HALT
    artifacts = RunArtifacts(ctx.artifacts_dir, run_id, ctx.redactor)
    if final.verdict != Verdict.ALLOW:
        _keep(run_id, lambda: artifacts.create().write_run_json({**run.to_dict(), **record}))

    if final.verdict == Verdict.DEFER:
        _end_run(ctx, run, artifacts, RunStatus.DEFERRED, final.reason, resume, on_run)
        store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                              state=IncidentState.OPEN, next_try_at=final.until,
                              step=index, reason=final.reason)
        return StepEnd.HALT
    if final.verdict == Verdict.REFUSE:
        if final.gate == "observe":  # shadow mode: what the whole escalation would do
            plan = _plan(ctx, incident, runbook)
            _keep(run_id, lambda: artifacts.write_run_json({"plan": plan}))
        _end_run(ctx, run, artifacts, RunStatus.REFUSED, final.reason, resume, on_run)
        _close(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
               f"refused: {final.reason}")
        return StepEnd.HALT
    if final.verdict == Verdict.PARK:
        _park(ctx, incident, runbook, strategy, run, artifacts, final, on_run)
        store.update_incident(incident.id, expect=[IncidentState.REMEDIATING], step=index,
                              reason=final.reason)
        return StepEnd.HALT

    lock = next((d.lock for d in asked if d.lock is not None), None)
    attempt = None
    if incident.attempt_id is None:
        attempt = Attempt(id=new_id("att"), incident_id=incident.id, runbook=runbook.name,
                          target=incident.target, started_at=now)
        run.attempt_id = attempt.id
    run.status = RunStatus.RUNNING
    cancel = threading.Event()
    ctx.running[run.id] = cancel          # before anyone hears of the run: it can be canceled
    if resume:
        # Its duration starts now, not when it parked: waiting for a person is not work.
        run.started_at = now
    begun = False
    try:
        artifacts.create()
        if resume is None:
            # Its record first: a step whose record cannot be written (a full disk)
            # never starts, and no attempt is counted for it.
            artifacts.write_run_json({**run.to_dict(), **record})
        # The attempt (if this step starts one), its count on the incident and the run
        # row: one transaction, so a step is never half started.
        incident = store.begin_step(run, attempt, resumed=resume is not None) or incident
        begun = True
        if resume is not None:
            artifacts.write_run_json({**run.to_dict(), **record})
    except TransitionError as exc:  # canceled or resolved since the gates: do nothing
        ctx.running.pop(run.id, None)
        _release(ctx, lock)
        if resume is None:
            shutil.rmtree(artifacts.path, ignore_errors=True)  # no run row: no record
        log.info("step %s not started: %s", run.id, exc)
        return StepEnd.HALT
    except Exception as exc:  # noqa: BLE001 - a full disk, the store down: not started
        ctx.running.pop(run.id, None)
        _release(ctx, lock)
        return _not_started(ctx, incident, index, run, artifacts, resume, begun, exc, on_run)
    if on_run:
        on_run(run)
    lease = ctx.leases.hold(lock, on_beat=lambda: beat(ctx, run.id, cancel))
    try:
        result = _run_and_verify(ctx, incident, runbook, strategy, run, artifacts, cancel)
        if lease.lost:
            result.reason += " (the target's lock was broken while this ran)"
        if result.status == RunStatus.CANCELED:
            from engine.approvals import canceled_by

            asked = canceled_by(ctx, run.id)   # who and why, not only how it stopped
            if asked:
                result.reason = f"{asked} ({result.reason})"
        # Still running here, its lease beating, until its end is recorded (the
        # storage may be out for a while: Patience), so no sweep takes it for dead.
        recorded = _end_step(ctx, run, artifacts, result, on_run, cancel)
    finally:
        ctx.running.pop(run.id, None)
        try:
            lease.release()
        except Exception as exc:  # noqa: BLE001 - the lock lapses by itself
            log.warning("run %s: its lock was not released (it lapses): %s", run.id, exc)
    if not recorded:
        return StepEnd.HALT
    if result.status == RunStatus.INTERRUPTED:
        ended = time.time()
        hand_back_interrupted(ctx, run, result.reason, ended, ended + ctx.config.lock_ttl)
        return StepEnd.HALT
    store.update_incident(incident.id, approved_step=None, approved_by=None)
    if result.status == RunStatus.SUCCEEDED and not strategy.degrades:
        seen_healthy(ctx, runbook, incident.target)   # a passing verify, whatever else
    current = store.get_incident(incident.id)
    if current is None or current.state != IncidentState.REMEDIATING:
        # Canceled or resolved while the step ran: its reason stands, nothing more is done.
        finish_attempt(ctx, current or incident, _ENDED_BY.get(
            current.state if current else IncidentState.CANCELED, AttemptOutcome.CANCELED))
        return StepEnd.HALT

    if result.status == RunStatus.SUCCEEDED:
        if strategy.degrades:
            _degrade(ctx, incident, runbook,
                     f"{strategy.name} switched to degraded service: {result.reason}")
            _close(ctx, incident, IncidentState.DEGRADED, AttemptOutcome.DEGRADED,
                   f"degraded by {strategy.name}: {result.reason}")
        else:
            spec = runbook.verify_for(strategy)
            _close(ctx, incident, IncidentState.RECOVERED, AttemptOutcome.RECOVERED,
                   f"recovered by {strategy.name}: {result.reason}",
                   verify_until=time.time() + (spec.deadline if spec else 0.0))
        return StepEnd.DONE
    if result.status == RunStatus.CANCELED:
        _close(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
               f"{strategy.name} canceled: {result.reason}")
        return StepEnd.HALT
    if (result.status == RunStatus.FAILED and runbook.degraded_mode
            and runbook.degraded_mode.when == "failing"):
        _degrade(ctx, incident, runbook, f"{strategy.name} failed: {result.reason}")
    store.update_incident(incident.id, expect=[IncidentState.REMEDIATING], step=index + 1,
                          reason=f"{strategy.name} {result.status.value}: {result.reason}")
    return StepEnd.NEXT


def _run_and_verify(ctx: EngineContext, incident: Incident, runbook: Runbook,
                    strategy: Strategy, run: RunRecord, artifacts: RunArtifacts,
                    cancel: threading.Event) -> StepResult:
    """The step, then its verify: what it did, as a result (never an exception)."""
    try:
        result = _execute(ctx, incident, runbook, strategy, run, artifacts, cancel)
        if result.ok and not strategy.degrades:
            spec = runbook.verify_for(strategy)
            if spec is not None:
                ok, why = verify(spec, _action_ctx(ctx, incident, runbook, spec.params, cancel),
                                 ctx.python, artifacts, cancel)
                result = (StepResult(RunStatus.SUCCEEDED, f"{result.reason}; {why}".strip("; "),
                                     result.rc, result.data) if ok else
                          StepResult(RunStatus.FAILED, f"step succeeded but verify failed: "
                                     f"{why}", result.rc, result.data))
    except Exception as exc:  # noqa: BLE001 - an engine bug ends the step, not the process
        if is_outage(exc):   # what the step did is not known: verified before a retry
            result = StepResult(RunStatus.INTERRUPTED, "the run's record could not be "
                                f"written while it ran: {describe(exc)}", 1)
        else:
            result = StepResult(RunStatus.FAILED, f"engine error: {describe(exc)}", 1)
    return result


def _end_step(ctx: EngineContext, run: RunRecord, artifacts: RunArtifacts,
              result: StepResult, on_run: RunCallback | None,
              cancel: threading.Event) -> bool:
    """Record the end of a step that ran, its result (in memory) waiting through a
    storage outage (``Patience``). True once recorded. False when it could not be
    within the patience: the run is then ``interrupted`` with the real reason ("its
    end could not be recorded: ...") and its incident handed back, verified before a
    retry, as far as the store takes that; the log keeps the result either way."""
    try:
        _end_run(ctx, run, artifacts, result.status, result.reason, None, on_run,
                 data=result.data, already_added=True,
                 patience=Patience(f"run {run.id}", cancel))
        return True
    except Exception as exc:
        if not is_outage(exc):
            raise
        why = describe(exc)
    reason = (f"its end could not be recorded: {why} (the step had ended "
              f"{result.status.value}: {result.reason})")
    now = time.time()
    try:
        if ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED, finished_at=now,
                                reason=reason) is not None:
            hand_back_interrupted(ctx, run, reason, now, now + ctx.config.lock_ttl)
    except Exception as again:  # noqa: BLE001 - the store is still out
        log.error("run %s: %s; not recorded either (%s): the workers mark it interrupted "
                  "once its heartbeat is old", run.id, reason, describe(again))
    return False


def _execute(ctx: EngineContext, incident: Incident, runbook: Runbook, strategy: Strategy,
             run: RunRecord, artifacts: RunArtifacts, cancel: threading.Event,
             check: bool = False, diff: bool = False) -> StepResult:
    try:
        if strategy.playbook:
            extravars = render_data(dict(strategy.extravars), incident.labels)
            extravars.update({"recovery_target": incident.target,
                              "recovery_component": runbook.component})
            return ctx.ansible.run(
                artifacts=artifacts, playbook=strategy.playbook, limit=incident.target,
                extravars=extravars, check=check, diff=diff,
                timeout=min(strategy.timeout, ctx.config.playbook_timeout), cancel=cancel)
        params = render_data(dict(strategy.params), incident.labels)
        action_ctx = _action_ctx(ctx, incident, runbook, params, cancel, check)
        return ctx.python.run(artifacts=artifacts, action=strategy.action or "", ctx=action_ctx,
                              check=check, timeout=min(strategy.timeout,
                                                       ctx.config.action_timeout))
    except (TemplateError, ValueError) as exc:
        artifacts.set_status("failed", 1)
        return StepResult(RunStatus.FAILED, f"refused to run: {exc}", 1)


def _action_ctx(ctx: EngineContext, incident: Incident, runbook: Runbook,
                params: dict[str, Any], cancel: threading.Event,
                check: bool = False) -> ActionContext:
    return ActionContext(
        component=runbook.component, target=incident.target, params=dict(params),
        host_vars=ctx.host_vars(incident.target), resources=ctx.resources,
        failure_type=incident.failure_type, labels=incident.labels, check_mode=check,
        cancel=cancel)


def beat(ctx: EngineContext, run_id: str, cancel: threading.Event) -> None:
    ctx.store.heartbeat_runs([run_id], time.time())
    if ctx.store.get_value(f"cancel:{run_id}"):
        cancel.set()


def _playbook_sha(ctx: EngineContext, strategy: Strategy) -> str | None:
    if not strategy.playbook:
        return None
    try:
        return hashlib.sha256((ctx.files.paths.playbooks_dir / strategy.playbook)
                              .read_bytes()).hexdigest()
    except OSError:
        return None


class Patience:
    """Writes that wait for the storage: the end of a step that ran. Its result is in
    memory and no other process can record it, so a write that fails with an outage
    (engine.outages: a full disk, the store down) is tried again, every 0.2 s at first
    and at most every ``END_RETRY_MAX`` seconds, for ``END_PATIENCE`` seconds in all,
    or until ``cancel`` is set (the process is stopping). Its first wait and its end are
    each said once in the log. Any other error is raised at once."""

    def __init__(self, what: str, cancel: threading.Event,
                 patience: float = END_PATIENCE) -> None:
        self.what, self.cancel = what, cancel
        self.deadline = time.monotonic() + patience
        self.waited_since: float | None = None

    def __call__(self, part: str, write: Callable[[], T]) -> T:
        delay = 0.2
        while True:
            try:
                done = write()
            except Exception as exc:
                left = self.deadline - time.monotonic()
                if not is_outage(exc) or self.cancel.is_set() or left <= 0:
                    raise
                if self.waited_since is None:
                    self.waited_since = time.monotonic()
                    log.warning("%s: %s could not be recorded (%s): kept in memory and "
                                "tried again until the storage takes it", self.what, part,
                                describe(exc))
                self.cancel.wait(min(delay, left))
                delay = min(delay * 2, END_RETRY_MAX)
                continue
            if self.waited_since is not None:
                log.warning("%s: %s recorded after %.0fs", self.what, part,
                            time.monotonic() - self.waited_since)
                self.waited_since = None
            return done


def _at_once(part: str, write: Callable[[], T]) -> T:
    """No patience: the write is tried once."""
    return write()


def _keep(run_id: str, write: Callable[[], Any], patience: Patience | None = None) -> bool:
    """An artifacts write once a decision is made or a step has run. A full or read-only
    disk must not keep the store from recording the outcome: the store's row is then the
    account, and the log says what is missing. (A step whose record cannot be written
    before it starts never starts: ``_step``.) With ``patience`` (the end of a step that
    ran, already in the store: run.json must not stay "running"), a write that meets an
    outage is tried again on a thread of its own while the incident goes on."""
    try:
        write()
        return True
    except OSError as exc:
        if patience is not None and is_outage(exc):
            threading.Thread(target=_keep_waiting, args=(run_id, write, patience), daemon=True,
                             name=f"recovery-rewrite-{run_id}").start()
            return False
        log.warning("run %s: its artifacts could not be written: %s", run_id, describe(exc))
        return False


def _keep_waiting(run_id: str, write: Callable[[], Any], patience: Patience) -> None:
    try:
        patience("its run.json", write)
    except OSError as exc:
        log.warning("run %s: its artifacts could not be written: %s", run_id, describe(exc))


def _release(ctx: EngineContext, lock: Lock | None) -> None:
    if lock is None:
        return
    try:
        ctx.store.release_lock(lock.target, lock.token)
    except Exception as exc:  # noqa: BLE001 - the store down: the lock lapses by itself
        log.warning("lock on %s not released (it lapses): %s", lock.target, describe(exc))


def _not_started(ctx: EngineContext, incident: Incident, index: int, run: RunRecord,
                 artifacts: RunArtifacts, resume: RunRecord | None, begun: bool,
                 exc: Exception, on_run: RunCallback | None) -> StepEnd:
    """The step could not start: its record or its state could not be written.

    On a storage outage (a full or read-only disk, the store down: engine.outages)
    nothing ran. The run ends ``interrupted`` with the reason, and the incident goes back
    to the workers at this step, tried again a lease later (no attempt was counted for
    a step that never started). An approved step that could not even be marked started
    stays queued: its claim lapses and a worker takes it again. Any other error is the
    engine's own: the run fails and the escalation goes on."""
    why = describe(exc)
    if resume is not None and not begun:
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
        _end_run(ctx, run, artifacts, status, reason, None, on_run, already_added=begun)
        if not outage:
            ctx.store.update_incident(incident.id, expect=[IncidentState.REMEDIATING],
                                      step=index + 1, reason=f"{run.strategy} {reason}")
            return StepEnd.NEXT
        ctx.store.update_incident(
            incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
            next_try_at=retry_at, step=index,
            reason=f"{run.strategy} {reason}; tried again at {when(retry_at)}")
    except Exception as store_exc:  # noqa: BLE001 - the store is out too
        # Left remediating with nothing running: the workers hand it back once the
        # store answers again (Worker._reopen_orphans).
        log.warning("run %s %s, and the store could not record it: %s", run.id, reason,
                    describe(store_exc))
    log.warning("run %s of incident %s %s", run.id, incident.id, reason)
    return StepEnd.HALT


def hand_back_interrupted(ctx: EngineContext, run: RunRecord, reason: str, now: float,
                          retry_at: float) -> None:
    """A step stopped before it could say what it did (its process died, or its record
    could not be written while it ran): its attempt ends ``interrupted`` and the
    incident goes back to the workers, due at ``retry_at``, at the same step. Before
    that step runs again, its verify is asked (``Incident.interrupted_run``): the step
    may well have done its work."""
    incident = ctx.store.get_incident(run.incident_id or "")
    if incident is None or incident.state != IncidentState.REMEDIATING:
        return
    if incident.attempt_id:
        ctx.store.finish_attempt(incident.attempt_id, AttemptOutcome.INTERRUPTED, now)
    ctx.store.update_incident(
        incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
        next_try_at=retry_at, attempt_id=None, interrupted_run=run.id,
        reason=f"run {run.id} interrupted: {reason}")


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
        ok, why = verify(spec, _action_ctx(ctx, incident, runbook, spec.params, cancel),
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
    run = RunRecord(
        id=run_id, component=runbook.component, runbook=runbook.name, strategy=strategy.name,
        target=incident.target, status=RunStatus.SKIPPED, trigger=incident.trigger,
        incident_id=incident.id, kind=strategy.kind, started_at=started,
        fingerprint=incident.fingerprint, requested_by=incident.requested_by, reason=reason,
        runbook_sha256=runbook.sha256, playbook_sha256=_playbook_sha(ctx, strategy))
    _keep(run_id, lambda: artifacts.write_run_json({
        **run.to_dict(), "labels": incident.labels, "failure_type": incident.failure_type,
        "interrupted_run": interrupted.id}))
    _end_run(ctx, run, artifacts, RunStatus.SKIPPED, reason, None, on_run)
    seen_healthy(ctx, runbook, incident.target)
    _close(ctx, incident, IncidentState.RECOVERED, AttemptOutcome.RECOVERED,
           f"recovered: {reason}", verify_until=time.time() + spec.deadline)
    return True, reason


def _end_run(ctx: EngineContext, run: RunRecord, artifacts: RunArtifacts, status: RunStatus,
             reason: str, resume: RunRecord | None, on_run: RunCallback | None,
             data: dict[str, Any] | None = None, already_added: bool = False,
             patience: Patience | None = None) -> None:
    """Record the run's end: the store, run.json, the metrics. With ``patience``, each
    write waits through a storage outage (once each: none is done twice)."""
    wait = patience or _at_once
    finished = time.time()
    if already_added or resume is not None:
        if wait("its end", lambda: ctx.store.update_run(
                run.id, status=status, reason=reason, gate=run.gate,
                finished_at=finished)) is None:
            # Someone else ended it first (a cancel, a worker marking it interrupted):
            # the store's account stands, and the artifacts say the same.
            stored = wait("its end", lambda: ctx.store.get_run(run.id))
            log.warning("run %s: %s refused, the run is already %s", run.id, status.value,
                        stored.status.value if stored else "gone")
            if stored is not None:
                run.status, run.reason = stored.status, stored.reason
                _keep(run.id, lambda: artifacts.write_run_json({
                    "status": stored.status.value, "reason": stored.reason,
                    "result": data or {}, "refused_update": status.value}), patience)
            return
    run.status, run.reason, run.finished_at = status, reason, finished
    if not (already_added or resume is not None):
        ctx.store.add_run(run)
    _keep(run.id, lambda: artifacts.write_run_json({
        "status": status.value, "reason": reason, "finished_at": finished,
        "duration": run.duration, "result": data or {}}), patience)
    if status in (RunStatus.DEFERRED, RunStatus.REFUSED):
        _keep(run.id, lambda: artifacts.set_status(status.value, 0))
    outcome = METRIC_OUTCOME.get(status)
    if outcome:
        duration = run.duration if status not in (RunStatus.DEFERRED, RunStatus.REFUSED) else None
        wait("its outcome", lambda: ctx.store.record_outcome(run.component, run.strategy,
                                                             outcome, duration))
    if on_run:
        on_run(run)


def _park(ctx: EngineContext, incident: Incident, runbook: Runbook, strategy: Strategy,
          run: RunRecord, artifacts: RunArtifacts, decision: Decision,
          on_run: RunCallback | None) -> None:
    """Park for approval: no lock is held while a person decides."""
    from engine.planner import plan_step

    run.status = RunStatus.PENDING_APPROVAL
    plan = plan_step(ctx, incident, runbook, strategy)
    if ctx.store.get_run(run.id) is None:
        ctx.store.add_run(run)
    else:
        ctx.store.update_run(run.id, status=RunStatus.PENDING_APPROVAL, reason=run.reason,
                             gate=run.gate)
    ctx.store.add_approval(Approval(
        run_id=run.id, incident_id=incident.id, runbook=runbook.name,
        component=runbook.component, strategy=strategy.name, target=incident.target,
        requested_by=incident.requested_by or incident.trigger, requested_at=time.time(),
        expires_at=time.time() + runbook.approval_timeout, reason=decision.reason, plan=plan))
    _keep(run.id, lambda: artifacts.write_run_json({"status": run.status.value, "plan": plan}))
    _keep(run.id, lambda: artifacts.set_status("pending_approval", 0))
    post_soon(ctx)          # RecoveryApprovalPending: told at the next worker pass
    if on_run:
        on_run(run)


def _exhausted(ctx: EngineContext, incident: Incident, runbook: Runbook) -> Incident:
    if incident.state != IncidentState.REMEDIATING:
        return incident
    tried = incident.reason or "no strategy applied"
    _degrade(ctx, incident, runbook, f"{runbook.name} exhausted on {incident.target}")
    closed = _close(ctx, incident, IncidentState.FAILED, AttemptOutcome.FAILED,
                    f"exhausted: {tried}")
    if closed.state == IncidentState.FAILED:
        exhaustion.mark(ctx, closed, closed.reason)
    return closed


def _plan(ctx: EngineContext, incident: Incident, runbook: Runbook) -> list[dict[str, Any]]:
    from engine.planner import plan_step

    return [plan_step(ctx, incident, runbook, s) for _i, s in _steps(runbook, incident)]


def _refuse_counted(ctx: EngineContext, incident: Incident, run: RunRecord,
                    details: dict[str, Any], reason: str, on_run: RunCallback | None, *,
                    reason_key: str | None = None) -> Incident:
    """A refusal of an alert or a probe, counted into the record of its minute
    (engine.refusals): no directory of its own; the incident it opened is canceled."""
    run.finished_at = time.time()
    stored = refusals.record_counted(ctx, run, details, reason_key=reason_key)
    if on_run:
        on_run(stored)
    return _close(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
                  f"refused: {reason}")


def _refuse_unhandled(ctx: EngineContext, incident: Incident, runbook: Runbook) -> Incident:
    """No strategy handles this failure type: nothing was tried, so nothing failed. The
    refusal is recorded as a run (an alert's or a probe's counted with the others of its
    minute, under no failure type: a label chose it); no degraded mode, no cooldown."""
    reason = (f"no strategy of runbook {runbook.name} handles failure type "
              f"{incident.failure_type!r}")
    now = time.time()
    run = RunRecord(
        id=new_id("run"), component=runbook.component, runbook=runbook.name, strategy="-",
        target=incident.target, status=RunStatus.REFUSED, trigger=incident.trigger,
        incident_id=incident.id, started_at=now, finished_at=now,
        fingerprint=incident.fingerprint, requested_by=incident.requested_by, reason=reason,
        runbook_sha256=runbook.sha256)
    details = {"labels": incident.labels, "failure_type": incident.failure_type}
    if refusals.counted(incident.trigger, opens_incident=True):
        return _refuse_counted(ctx, incident, run, details, reason, None,
                               reason_key="no strategy handles its failure type")
    artifacts = RunArtifacts(ctx.artifacts_dir, run.id, ctx.redactor)
    _keep(run.id, lambda: artifacts.create().write_run_json({**run.to_dict(), **details}))
    _end_run(ctx, run, artifacts, RunStatus.REFUSED, reason, None, None)
    return _close(ctx, incident, IncidentState.CANCELED, AttemptOutcome.CANCELED,
                  f"refused: {reason}")


def _close(ctx: EngineContext, incident: Incident, state: IncidentState,
           outcome: AttemptOutcome, reason: str, **extra: Any) -> Incident:
    now = time.time()
    closed = ctx.store.update_incident(
        incident.id, expect=[IncidentState.REMEDIATING], state=state,
        closed_at=now, reason=reason, next_try_at=None, interrupted_run=None, **extra)
    finish_attempt(ctx, closed or incident, outcome)
    return closed or ctx.store.get_incident(incident.id) or incident


def finish_attempt(ctx: EngineContext, incident: Incident, outcome: AttemptOutcome) -> None:
    if incident.attempt_id:
        ctx.store.finish_attempt(incident.attempt_id, outcome, time.time())
        ctx.store.update_incident(incident.id, attempt_id=None)


def _degrade(ctx: EngineContext, incident: Incident, runbook: Runbook, reason: str) -> None:
    if runbook.degraded_mode is None:
        return
    ctx.store.add_degraded(DegradedReason(
        mode=runbook.degraded_mode.name, key=f"incident:{incident.id}", target=incident.target,
        incident_id=incident.id, reason=reason,
        created_by=incident.requested_by or incident.trigger,
        since=time.time()))


def seen_healthy(ctx: EngineContext, runbook: Runbook, target: str) -> list[DegradedReason]:
    """A passing verify or probe for the target (or an application's health check): its
    automatic degraded-mode reasons go off (a mode switched on by hand stays), and so
    does its exhausted alert. Returns the degraded reasons cleared."""
    exhaustion.clear(ctx, runbook.name, target)
    if runbook.degraded_mode is None:
        return []
    return ctx.store.clear_degraded(mode=runbook.degraded_mode.name, target=target,
                                    manual=False)
