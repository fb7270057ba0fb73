"""Running one step: its run record, its execution, its heartbeat, the record of its end.

What the orchestrator (an attempt's steps), the planner (``recover --check``) and a
refusal share about a run: the ``RunRecord`` and its artifacts directory (run.json holds
the record), the executor it goes to (a playbook through ansible-runner, a python action
with its ``ActionContext``), the heartbeat that keeps it alive and cancelable, and
``end_run``, which records how it ended in the store, in run.json and in the metrics,
with what it did to each host (``run_hosts``).
What a run's end means for its incident is engine.orchestration.settle's.

A storage outage (engine.outages: a full disk, the store down) must not lose the end of
a step that ran: ``Patience`` waits for the storage, and ``keep`` lets an artifacts
write fail without stopping the store from recording the outcome.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from engine.actions.base import ActionContext
from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.executors import StepResult
from engine.executors.host_outcomes import host_entry
from engine.lifecycle import HOST_OUTCOME_OF_RUN, METRIC_OUTCOME, HostOutcome, RunStatus
from engine.outages import describe, is_outage
from engine.records import Incident, RunRecord, new_id
from engine.reporting.run_account import share_account
from engine.runbooks.model import Runbook, Strategy
from engine.runbooks.templating import TemplateError, render_data
from engine.store.fencing import Fence

RunCallback = Callable[[RunRecord], None]
T = TypeVar("T")
log = logging.getLogger(__name__)
END_PATIENCE = 600.0    # s a step that ran waits for the storage to take its end
END_RETRY_MAX = 5.0     # s between two tries of that, at most


def new_run(ctx: EngineContext, incident: Incident, runbook: Runbook,
            strategy: Strategy | None, status: RunStatus, started_at: float,
            **fields: Any) -> RunRecord:
    """The record of one run of ``strategy`` (None: no strategy applied) for
    ``incident``: who asked, on which target, under which texts (the runbook's and the
    playbook's hashes). ``fields`` set or override the rest."""
    values: dict[str, Any] = dict(
        id=new_id("run"), component=runbook.component, runbook=runbook.name,
        strategy=strategy.name if strategy else "-", target=incident.target, status=status,
        trigger=incident.trigger, incident_id=incident.id, started_at=started_at,
        fingerprint=incident.fingerprint, requested_by=incident.requested_by,
        runbook_sha256=runbook.sha256, replica=ctx.replica)
    if strategy is not None:
        values.update(kind=strategy.kind, playbook_sha256=playbook_sha256(ctx, strategy))
    values.update(fields)
    return RunRecord(**values)


def open_record(ctx: EngineContext, run: RunRecord, details: dict[str, Any],
                artifacts: RunArtifacts | None = None) -> RunArtifacts:
    """The run's artifacts directory, created (a resumed run's is found as it was), with
    run.json holding the run's record and ``details`` (gates' answers, labels...).
    OSError when the disk does not take it."""
    artifacts = artifacts or RunArtifacts(ctx.artifacts_dir, run.id, ctx.redactor)
    artifacts.create().write_run_json({**run.to_dict(), **details})
    return artifacts


def execute(ctx: EngineContext, incident: Incident, runbook: Runbook, strategy: Strategy,
            run: RunRecord, artifacts: RunArtifacts, cancel: threading.Event,
            check: bool = False, diff: bool = False,
            pins: Mapping[str, Any] | None = None) -> StepResult:
    """Run the step (its extravars or params rendered from the alert's labels, and the
    ``pins`` its plan returned when an approval was judged on it) with its executor; a
    step that cannot be rendered is refused, as a failed result."""
    try:
        if strategy.playbook:
            extravars = step_extravars(incident, runbook, strategy, pins)
            return ctx.ansible.run(
                artifacts=artifacts, playbook=strategy.playbook, limit=incident.target,
                extravars=extravars, check=check, diff=diff,
                timeout=min(strategy.timeout, ctx.config.playbook_timeout), cancel=cancel)
        params = {**render_data(dict(strategy.params), incident.labels), **(pins or {})}
        context = action_context(ctx, incident, runbook, params, cancel, check)
        return ctx.python.run(artifacts=artifacts, action=strategy.action or "", ctx=context,
                              check=check, timeout=min(strategy.timeout,
                                                       ctx.config.action_timeout))
    except (TemplateError, ValueError) as exc:
        artifacts.set_status("failed", 1)
        return StepResult(RunStatus.FAILED, f"refused to run: {exc}", 1)


def step_extravars(incident: Incident, runbook: Runbook, strategy: Strategy,
                   pins: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A playbook step's extravars, rendered from the alert's labels, with its plan's
    ``pins`` (names ending in ``_pin``: engine.orchestration.step_facts), the target and
    the component. TemplateError (a ValueError) when they cannot be rendered."""
    extravars = {**render_data(dict(strategy.extravars), incident.labels), **(pins or {})}
    extravars.update({"recovery_target": incident.target,
                      "recovery_component": runbook.component})
    return extravars


def action_context(ctx: EngineContext, incident: Incident, runbook: Runbook,
                   params: dict[str, Any], cancel: threading.Event,
                   check: bool = False) -> ActionContext:
    """What a python action (a step's or a verify's) sees of its target."""
    return ActionContext(
        component=runbook.component, target=incident.target, params=dict(params),
        host_vars=ctx.host_vars(incident.target), resources=ctx.resources,
        failure_type=incident.failure_type, labels=incident.labels, check_mode=check,
        cancel=cancel)


def beat(ctx: EngineContext, run_id: str, cancel: threading.Event) -> None:
    """A running step's heartbeat: the workers do not take it for dead, a cancel
    recorded by another process reaches it, and so does a sweep that took it for dead."""
    ctx.store.heartbeat_runs([run_id], time.time())
    if ctx.store.get_value(f"cancel:{run_id}"):
        cancel.set()
    # A run no longer running in the store was taken for dead (its process stalled past
    # three leases) and its incident may be another's by now: stop acting at once.
    current = ctx.store.get_run(run_id)
    if current is not None and current.status != RunStatus.RUNNING:
        cancel.set()


def playbook_sha256(ctx: EngineContext, strategy: Strategy) -> str | None:
    """The hash of the playbook a step runs, as it is now (None: no playbook, or
    unreadable: the run says what it ran, not whether it could)."""
    if not strategy.playbook:
        return None
    try:
        return hashlib.sha256((ctx.files.paths.playbooks_dir / strategy.playbook)
                              .read_bytes()).hexdigest()
    except OSError:
        return None


def end_run(ctx: EngineContext, run: RunRecord, artifacts: RunArtifacts, status: RunStatus,
            reason: str, resume: RunRecord | None, on_run: RunCallback | None,
            data: dict[str, Any] | None = None, already_added: bool = False,
            patience: Patience | None = None, fence: Fence | None = None) -> None:
    """Record the run's end: the store, run.json, the metrics. With ``patience``, each
    write waits through a storage outage (once each: none is done twice). With ``fence``
    (the lock it ran under), StaleLease once that lock was taken: nothing recorded."""
    wait = patience or _at_once
    finished = time.time()
    hosts = run_hosts(run, status, reason, data)
    if already_added or resume is not None:
        if wait("its end", lambda: ctx.store.update_run(
                run.id, status=status, reason=reason, gate=run.gate,
                finished_at=finished, hosts=hosts, fence=fence)) is None:
            # Someone else ended it first (a cancel, a worker marking it interrupted):
            # the store's account stands, and the artifacts say the same.
            stored = wait("its end", lambda: ctx.store.get_run(run.id))
            log.warning("run %s: %s refused, the run is already %s", run.id, status.value,
                        stored.status.value if stored else "gone")
            if stored is not None:
                run.status, run.reason = stored.status, stored.reason
                keep(run.id, lambda: artifacts.write_run_json({
                    "status": stored.status.value, "reason": stored.reason,
                    "result": data or {}, "refused_update": status.value}), patience)
            return
    run.status, run.reason, run.finished_at, run.hosts = status, reason, finished, hosts
    if not (already_added or resume is not None):
        ctx.store.add_run(run)
    log.info("run %s (%s %s on %s): %s: %s", run.id, run.runbook, run.strategy, run.target,
             status.value, reason)
    keep(run.id, lambda: artifacts.write_run_json({
        "status": status.value, "reason": reason, "finished_at": finished,
        "duration": run.duration, "hosts": hosts, "result": data or {}}), patience)
    if status in (RunStatus.DEFERRED, RunStatus.REFUSED):
        keep(run.id, lambda: artifacts.set_status(status.value, 0))
    share_account(ctx, run.id, artifacts)
    outcome = METRIC_OUTCOME.get(status)
    if outcome:
        duration = run.duration if status not in (RunStatus.DEFERRED, RunStatus.REFUSED) else None
        gate = (run.gate or "unknown") if status == RunStatus.DEFERRED else None
        wait("its outcome", lambda: ctx.store.record_outcome(run.component, run.strategy,
                                                             outcome, duration, gate=gate))
    if hosts:
        counts = dict(Counter(h["outcome"] for h in hosts))
        wait("its hosts' outcomes", lambda: ctx.store.record_host_outcomes(
            run.component, run.strategy, counts))
    if on_run:
        on_run(run)


def run_hosts(run: RunRecord, status: RunStatus, reason: str,
              data: dict[str, Any] | None) -> list[dict[str, str]]:
    """What the run did to each host: as its executor said (``data["hosts"]``), else,
    for a run on its one target that says nothing of hosts (a python action), the
    target's outcome from the run's status (canceled: failed, with the reason). Empty
    for a run that acted on no host (refused, deferred)."""
    given = (data or {}).get("hosts")
    if given:
        return [host_entry(str(h["host"]), HostOutcome(h["outcome"]), str(h.get("reason") or ""))
                for h in given]
    outcome = HOST_OUTCOME_OF_RUN.get(status)
    if outcome is None:
        return []
    return [host_entry(run.target, outcome, "" if outcome == HostOutcome.OK else reason)]


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


def keep(run_id: str, write: Callable[[], Any], patience: Patience | None = None) -> bool:
    """An artifacts write once a decision is made or a step has run. A full or read-only
    disk must not keep the store from recording the outcome: the store's row is then the
    account, and the log says what is missing. (A step whose record cannot be written
    before it starts never starts: the orchestrator's ``_begin``.) With ``patience`` (the
    end of a step that ran, already in the store: run.json must not stay "running"), a
    write that meets an outage is tried again on a thread of its own while the incident
    goes on."""
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
