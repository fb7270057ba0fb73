"""Rollouts: one playbook step of several incidents, run together in batches.

A storm of alerts for many hosts of one runbook opens one incident per host, and an
operator's ``recover --target GROUP`` does too; each incident's step is gated, begun and
recorded as its own run (engine.orchestration.attempt). Steps that reach the same
playbook step (same runbook text, strategy and extravars) within the coalescing window
(``fleet.coalesce_window``) join one rollout instead of starting one Ansible run each:

- the hosts, in name order, are cut into batches by the step's ``serial`` (a number, a
  percentage or a list of them, as Ansible's ``serial``; none: one batch);
- each batch is one ansible-runner run with ``--limit`` set to its hosts and the
  runbook's ``forks``, recorded as a run of its own (its hosts' outcomes, its events);
- each member verifies its own host, on its own thread, before the next batch starts;
- a batch whose failed hosts (failed, unreachable or failing verify) are more than
  ``max_fail_percentage`` of it stops the rollout: the members after it are
  ``not_started`` (their runs fail with that reason, and their incidents escalate).

Each incident keeps its own run, its own host outcome, verify and escalation: a host
that fails does not fail the incidents of the hosts that succeeded. The first step to
arrive leads: it waits for the others while they keep coming (the window starts again
at each arrival, up to ``GATHER_CAP`` windows), but only when another incident of the
runbook is under way at all, so a lone step starts at once. Rollouts are per process;
what every process shares (how many remediations are in flight, how much of a group
is touched) is the fleet gate's (engine.gates.fleet).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.executors import StepResult
from engine.fleet_limits import FleetLimits
from engine.gates.lock import Lease
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.lost_lease import still_held
from engine.orchestration.step import action_context, execute, keep, step_extravars
from engine.orchestration.verify import verify
from engine.records import Incident, RunRecord, new_id
from engine.runbooks.loaded_set import LoadedSet
from engine.runbooks.model import Runbook, Strategy, fleet_limits

log = logging.getLogger(__name__)

GATHER_CAP = 5          # windows a leader waits at most for its rollout to fill
PLAY_MARGIN = 120.0     # s a member waits for its batch beyond the playbook's timeout
SUCCESS = frozenset({"ok", "changed", "skipped"})
_CONTEXTS: weakref.WeakKeyDictionary[EngineContext, Rollouts] = weakref.WeakKeyDictionary()
_CONTEXTS_LOCK = threading.Lock()


@dataclass(eq=False)
class Member:
    """One incident's step in a rollout: its run, and what the rollout did on its host."""

    incident: Incident
    runbook: Runbook
    strategy: Strategy
    run: RunRecord
    artifacts: RunArtifacts
    cancel: threading.Event
    extravars: dict[str, Any]
    lease: Lease | None = None     # its step's locks: asked before its batch plays
    played: threading.Event = field(default_factory=threading.Event)
    verified: threading.Event = field(default_factory=threading.Event)
    outcome: StepResult | None = None      # the playbook on this host
    result: StepResult | None = None       # the step, verified: this incident's result
    # Its batch began, or its step stopped waiting for it: whichever came first stands,
    # so a host whose step gave up (its lock released) is never played afterwards.
    begun: bool = False
    abandoned: bool = False
    _turn: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return self.incident.target

    def begin(self) -> bool:
        """Its batch is about to play: False if its step has stopped waiting."""
        with self._turn:
            if not self.abandoned:
                self.begun = True
            return self.begun

    def abandon(self) -> bool:
        """Its step stops waiting: False if its batch has already begun."""
        with self._turn:
            if not self.begun:
                self.abandoned = True
            return self.abandoned

    def hand(self, outcome: StepResult) -> None:
        self.outcome = outcome
        self.played.set()


def cut_batches(hosts: list[str], serial: Any) -> list[list[str]]:
    """Ansible's ``serial``: a number, a percentage of all hosts (at least one) or a list
    of them, the last size repeated until every host has a batch; None: one batch."""
    if not hosts:
        return []
    sizes = list(serial) if isinstance(serial, (list, tuple)) else [serial]
    if serial is None or not sizes:
        return [list(hosts)]
    batches: list[list[str]] = []
    at, i = 0, 0
    while at < len(hosts):
        size = _size(sizes[min(i, len(sizes) - 1)], len(hosts))
        batches.append(hosts[at:at + size])
        at += size
        i += 1
    return batches


def _size(spec: Any, total: int) -> int:
    if isinstance(spec, str) and spec.strip().endswith("%"):
        return max(1, math.floor(total * float(spec.strip()[:-1]) / 100))
    return max(1, int(spec))


def over_threshold(failed: int, size: int, max_fail_percentage: float) -> bool:
    """Ansible's rule: a batch stops the play when more than the percentage failed."""
    return size > 0 and failed > 0 and 100.0 * failed / size > max_fail_percentage


def run_step(ctx: EngineContext, incident: Incident, runbook: Runbook, strategy: Strategy,
             run: RunRecord, artifacts: RunArtifacts, cancel: threading.Event,
             pins: Mapping[str, Any] | None = None,
             lease: Lease | None = None) -> StepResult:
    """The step and its verify, as a result. A playbook step joins a rollout (alone, it
    runs as it always did, on its own host, into its own run's artifacts); its ``pins``
    are among its extravars, so only steps pinned alike share a play. Its ``lease`` is
    asked again before its batch plays: a host whose lock was taken is not played."""
    if not strategy.playbook:
        result = execute(ctx, incident, runbook, strategy, run, artifacts, cancel, pins=pins)
        return verified(ctx, incident, runbook, strategy, result, artifacts, cancel)
    try:
        extravars = step_extravars(incident, runbook, strategy, pins)
    except ValueError:   # refused to render: execute() says why, as a failed result
        return execute(ctx, incident, runbook, strategy, run, artifacts, cancel, pins=pins)
    member = Member(incident, runbook, strategy, run, artifacts, cancel, extravars, lease)
    return rollouts_of(ctx).join(ctx, member)


def verified(ctx: EngineContext, incident: Incident, runbook: Runbook, strategy: Strategy,
             result: StepResult, artifacts: RunArtifacts,
             cancel: threading.Event) -> StepResult:
    """A step's result once its verify has had its say (a step that failed, or that only
    degrades, is not verified)."""
    if not result.ok or strategy.degrades:
        return result
    spec = runbook.verify_for(strategy)
    if spec is None:
        return result
    ok, why = verify(spec, action_context(ctx, incident, runbook, spec.params, cancel),
                     ctx.python, artifacts, cancel)
    if ok:
        return StepResult(RunStatus.SUCCEEDED, f"{result.reason}; {why}".strip("; "),
                          result.rc, result.data)
    data = dict(result.data)
    if data.get("hosts"):
        data["hosts"] = [{**h, "outcome": "failed", "reason": f"verify failed: {why}"}
                         if h.get("host") == incident.target else h for h in data["hosts"]]
    return StepResult(RunStatus.FAILED, f"step succeeded but verify failed: {why}",
                      result.rc, data)


def rollouts_of(ctx: EngineContext) -> Rollouts:
    """The rollouts of this engine context (one per process, in practice)."""
    with _CONTEXTS_LOCK:
        rollouts = _CONTEXTS.get(ctx)
        if rollouts is None:
            rollouts = _CONTEXTS[ctx] = Rollouts()
        return rollouts


class Rollouts:
    """The rollouts this process is gathering or running, by step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Rollout] = {}
        self._waiting = 0
        self._listeners: list[Callable[[], None]] = []

    def on_wait(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a step begins waiting on a rollout."""
        with self._lock:
            self._listeners.append(listener)

    def waiting(self) -> int:
        """Steps waiting on a rollout: their threads are idle, not busy (engine.service.worker
        starts others meanwhile, or a storm would be gathered two at a time)."""
        with self._lock:
            return self._waiting

    def join(self, ctx: EngineContext, member: Member) -> StepResult:
        key = _key(member)
        with self._lock:
            rollout = self._open.get(key)
            leader = rollout is None
            if rollout is None:
                rollout = self._open[key] = Rollout(key)
            rollout.add(member)
            self._waiting += 1
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        try:
            if leader:
                limits = _limits(ctx, member.runbook)
                window = limits.coalesce_window if _others_under_way(ctx, member) else 0.0
                rollout.gather(window)
                with self._lock:
                    if self._open.get(key) is rollout:
                        del self._open[key]
                    rollout.closed = True
                threading.Thread(target=rollout.play, args=(ctx, ctx.files), daemon=True,
                                 name=f"recovery-rollout-{member.run.id}").start()
            return _await(ctx, member, rollout)
        finally:
            with self._lock:
                self._waiting -= 1


def _key(member: Member) -> str:
    """What must be the same for steps to share one Ansible run (the target aside: a
    batch's ``recovery_target`` is its hosts)."""
    extravars = {k: v for k, v in member.extravars.items() if k != "recovery_target"}
    text = json.dumps([member.runbook.name, member.runbook.sha256, member.strategy.name,
                       member.strategy.playbook, member.run.check_mode, extravars],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _others_under_way(ctx: EngineContext, member: Member) -> bool:
    """Could another host's step of this runbook still join? Only when another incident of
    it is being remediated; else the lone step starts at once, with no window to wait."""
    try:
        incidents = ctx.store.list_incidents(open_only=True, component=member.runbook.component,
                                             limit=500)
    except Exception:  # noqa: BLE001 - the store out: do not wait on it
        return False
    return any(i.runbook == member.runbook.name and i.target != member.host
               and i.state == IncidentState.REMEDIATING for i in incidents)


def _await(ctx: EngineContext, member: Member, rollout: Rollout) -> StepResult:
    """This member's side: wait for its host's outcome, verify it, hand the result back.

    Each batch before its own takes at most a play and a verify, so the wait is bounded
    by the rollout's size (as it is when the member looks: later arrivals lengthen it).
    Past that bound, a member whose batch has not begun withdraws (its host is then never
    played); one whose batch has begun waits for that play to end."""
    timeout = min(member.strategy.timeout, ctx.config.playbook_timeout)
    per_batch = timeout + _verify_bound(member) + PLAY_MARGIN
    started = time.monotonic()
    while not member.played.is_set():
        bound = (len(rollout.members) + 1) * per_batch
        left = started + bound - time.monotonic()
        if left <= 0:
            break
        member.played.wait(min(left, 1.0))
    if not member.played.is_set() and member.abandon():
        why = (f"not started: the rollout it joined did not reach {member.host} within "
               f"{time.monotonic() - started:.0f}s")
        member.result = StepResult(RunStatus.FAILED, why, 1,
                                   {"hosts": [_host(member.host, "not_started", why)]})
    elif not member.played.wait(timeout + PLAY_MARGIN):
        member.result = StepResult(RunStatus.FAILED, "the rollout it joined gave no outcome "
                                   f"for {member.host}, whose batch began", 1)
    else:
        assert member.outcome is not None
        try:
            member.result = verified(ctx, member.incident, member.runbook, member.strategy,
                                     member.outcome, member.artifacts, member.cancel)
        except Exception as exc:  # noqa: BLE001 - the rollout must hear back whatever happens
            member.result = StepResult(RunStatus.FAILED, f"engine error in verify: {exc}", 1,
                                       member.outcome.data)
    member.verified.set()
    return member.result


class Rollout:
    """One step for several hosts: gathered, then played batch after batch."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.members: list[Member] = []
        self.closed = False
        self._cond = threading.Condition()
        self._last = time.monotonic()

    def add(self, member: Member) -> None:
        with self._cond:
            self.members.append(member)
            self._last = time.monotonic()
            self._cond.notify_all()

    def gather(self, window: float) -> None:
        """Wait while members keep arriving: ``window`` after the last, at most
        ``GATHER_CAP`` windows in all."""
        if window <= 0:
            return
        deadline = time.monotonic() + GATHER_CAP * window
        with self._cond:
            while True:
                left = min(self._last + window, deadline) - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def play(self, ctx: EngineContext, loaded: LoadedSet) -> None:
        """Every batch in turn, on the set in force for the leader; whatever happens,
        every member hears back."""
        try:
            with ctx.pinned(loaded):
                self._play(ctx)
        except Exception as exc:  # noqa: BLE001 - an engine bug ends the rollout, not the process
            log.exception("rollout %s failed", self.key[:12])
            for m in self.members:
                if not m.played.is_set():
                    m.hand(StepResult(RunStatus.FAILED, f"engine error in its rollout: {exc}", 1))

    def _play(self, ctx: EngineContext) -> None:
        members = sorted(self.members, key=lambda m: m.host)
        first = members[0]
        by_host = {m.host: m for m in members}
        batches = cut_batches(list(by_host), first.strategy.serial)
        threshold = first.strategy.max_fail_percentage
        runs = [new_id("run") for _ in batches] if len(members) > 1 else []
        stopped: str | None = None
        for n, hosts in enumerate(batches, 1):
            batch = [by_host[h] for h in hosts]
            if stopped is not None:
                for m in batch:
                    m.hand(_not_started(m, stopped))
                continue
            live = []
            for m in batch:
                if m.cancel.is_set():
                    m.hand(StepResult(RunStatus.CANCELED, "canceled before its batch started",
                                      254, {"hosts": [_host(m.host, "not_started",
                                                            "canceled")]}))
                elif (lost := still_held(m.lease)) is not None:
                    m.hand(StepResult(RunStatus.INTERRUPTED, f"not started: {lost}", 1, {
                        "hosts": [_host(m.host, "not_started", lost)]}))
                elif not m.begin():    # its step stopped waiting: its lock is gone
                    m.hand(_not_started(m, "its step stopped waiting for its batch"))
                else:
                    live.append(m)
            if not live:
                continue
            if len(members) == 1:
                m = live[0]
                m.hand(self._alone(ctx, m))
            else:
                self._batch(ctx, live, runs[n - 1], n, len(batches), runs)
            failed = []
            for m in live:
                m.verified.wait(_verify_bound(m))
                if m.result is None or not m.result.ok:
                    failed.append(m)
            if n < len(batches) and over_threshold(len(failed), len(live), threshold):
                worst = failed[0]
                why = worst.result.reason if worst.result else "no result"
                stopped = (f"not started: the rollout stopped after batch {n} of "
                           f"{len(batches)} ({len(failed)} of {len(live)} host(s) failed, "
                           f"over max_fail_percentage {threshold:g}): {worst.host}: {why}")
                log.warning("rollout of %s/%s: %s", first.runbook.name, first.strategy.name,
                            stopped)

    def _alone(self, ctx: EngineContext, m: Member) -> StepResult:
        """A rollout of one: the step runs as a single step always has."""
        limits = _limits(ctx, m.runbook)
        return ctx.ansible.run(
            artifacts=m.artifacts, playbook=m.strategy.playbook or "", limit=m.host,
            extravars=m.extravars, timeout=min(m.strategy.timeout, ctx.config.playbook_timeout),
            cancel=m.cancel, forks=limits.forks)

    def _batch(self, ctx: EngineContext, batch: list[Member], run_id: str, n: int, of: int,
               runs: list[str]) -> None:
        """One Ansible run for the batch's hosts, recorded as a run of its own; each member
        is handed its host's outcome and told which run it was."""
        first = batch[0]
        hosts = [m.host for m in batch]
        limits = _limits(ctx, first.runbook)
        record = RunRecord(
            id=run_id, component=first.runbook.component, runbook=first.runbook.name,
            strategy=first.strategy.name, target=",".join(hosts), status=RunStatus.RUNNING,
            trigger=first.run.trigger, kind="playbook", started_at=time.time(),
            requested_by=f"rollout of {len(self.members)} incident(s), batch {n} of {of}",
            runbook_sha256=first.run.runbook_sha256, playbook_sha256=first.run.playbook_sha256,
            reason=f"batch {n} of {of}: " + ", ".join(hosts))
        artifacts = RunArtifacts(ctx.artifacts_dir, run_id, ctx.redactor)
        rollout = {"runs": runs, "batch": n, "batches": of, "batch_run": run_id,
                   "batch_hosts": hosts, "incidents": [m.incident.id for m in self.members]}
        cancel = _AllCanceled([m.cancel for m in batch])
        # Running like any step: in this process's running steps and beating in the store,
        # so no worker's sweep (this process's or another's) takes it for dead mid-play.
        ctx.running[run_id] = cancel.event
        lease = ctx.leases.hold(None, on_beat=lambda: ctx.store.heartbeat_runs(
            [run_id], time.time()))
        try:
            keep(run_id, lambda: artifacts.create().write_run_json(
                {**record.to_dict(), "rollout": rollout}))
            ctx.store.add_run(record)
            extravars = {**first.extravars, "recovery_target": ",".join(hosts)}
            result = ctx.ansible.run(
                artifacts=artifacts, playbook=first.strategy.playbook or "",
                limit=",".join(hosts), extravars=extravars,
                timeout=min(first.strategy.timeout, ctx.config.playbook_timeout),
                cancel=cancel.event, forks=limits.forks)
        except Exception as exc:  # noqa: BLE001 - every member hears why
            result = StepResult(RunStatus.FAILED, f"its batch could not run: {exc}", 1)
        finally:
            cancel.stop()
        outcomes = {h.get("host"): h for h in result.data.get("hosts") or []}
        for m in batch:
            m.hand(_member_result(m, result, outcomes.get(m.host), rollout))
        try:
            ctx.store.update_run(run_id, status=result.status, reason=result.reason,
                                 finished_at=time.time(),
                                 hosts=list(outcomes.values()))
        except Exception as exc:  # noqa: BLE001 - the members' own runs carry the account
            log.warning("rollout batch run %s: its end could not be recorded: %s", run_id, exc)
        finally:
            lease.release()
            ctx.running.pop(run_id, None)
        keep(run_id, lambda: artifacts.write_run_json({
            "status": result.status.value, "reason": result.reason,
            "finished_at": time.time(), "hosts": list(outcomes.values())}))


def _member_result(m: Member, result: StepResult, outcome: dict[str, Any] | None,
                   rollout: dict[str, Any]) -> StepResult:
    """What the batch's run means for one member: its own host's outcome, never the others'."""
    data = {**result.data, "rollout": rollout}
    where = f" (batch run {rollout['batch_run']})"
    if outcome is None:
        if result.status == RunStatus.CANCELED:
            status = RunStatus.CANCELED
        else:
            status = RunStatus.FAILED
        outcome = _host(m.host, "failed", result.reason or "no result for this host")
        data["hosts"] = [outcome]
        return StepResult(status, f"{result.reason}{where}", result.rc or 1, data)
    data["hosts"] = [outcome]
    if outcome.get("outcome") in SUCCESS:
        return StepResult(RunStatus.SUCCEEDED, f"playbook {outcome['outcome']} on {m.host}"
                          f"{where}", 0, data)
    why = outcome.get("reason") or outcome.get("outcome")
    return StepResult(RunStatus.FAILED, f"{outcome.get('outcome')} on {m.host}: {why}{where}",
                      result.rc or 2, data)


def _not_started(m: Member, why: str) -> StepResult:
    return StepResult(RunStatus.FAILED, why, 1, {"hosts": [_host(m.host, "not_started", why)]})


def _limits(ctx: EngineContext, runbook: Runbook) -> FleetLimits:
    return fleet_limits(ctx.config.fleet, runbook)


def _host(host: str, outcome: str, reason: str = "") -> dict[str, Any]:
    return {"host": host, "outcome": outcome, "reason": reason}


def _verify_bound(m: Member) -> float:
    spec = m.runbook.verify_for(m.strategy)
    return (spec.deadline + (spec.initial_delay or 0) if spec else 0.0) + PLAY_MARGIN


class _AllCanceled:
    """A batch is canceled when every member of it is (one operator canceling one incident
    does not stop the others' hosts mid-play)."""

    def __init__(self, events: list[threading.Event]) -> None:
        self.event = threading.Event()
        self._events = events
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="recovery-batch-cancel").start()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            if all(e.is_set() for e in self._events):
                self.event.set()
                return

    def stop(self) -> None:
        self._done.set()
