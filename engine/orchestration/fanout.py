"""A step that names a group: every host it resolves to joins or opens its own incident.

A runbook step may say ``target: redis`` (any pattern Ansible understands): an alert for
one host then remediates the group. The pattern is resolved against the inventory when
the step is reached; each other host of it that is failing (its verify asked once,
engine.orchestration.precheck: a healthy host is recorded ``skipped``, reason healthy,
and left alone) joins its open incident of the runbook or opens one that runs this step
only (``requested_by`` names the incident it came from). Those incidents are advanced at
once, each on a thread of its own, so that their playbook steps meet the asking
incident's in one rollout (engine.orchestration.rollout): batches, verify per batch, the
stop at ``max_fail_percentage``, and the fleet gate (engine.gates.fleet) for each host.
Each keeps its own record, verify and escalation.

The asking incident acts on its own host only when the pattern names it; otherwise its
step is recorded ``skipped`` (it fanned out: the record lists the incidents) and its
attempt goes on. A pattern that resolves to nothing is the step's failure, with the
reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.context import EngineContext
from engine.inventory import UnknownTarget
from engine.lifecycle import RunStatus
from engine.orchestration.precheck import check_health, record_healthy
from engine.orchestration.step import RunCallback, end_run, new_run, open_record
from engine.records import FANNED_FROM, Incident
from engine.runbooks.model import Runbook, Strategy

log = logging.getLogger(__name__)
Advance = Callable[[EngineContext, str], Incident]
_THREADS: set[threading.Thread] = set()
_THREADS_LOCK = threading.Lock()


@dataclass
class FanOut:
    """What a group step did before its own host's turn."""

    hosts: list[str] = field(default_factory=list)       # the pattern's hosts
    incidents: list[str] = field(default_factory=list)   # opened or joined, other hosts
    healthy: list[str] = field(default_factory=list)     # left alone
    error: str | None = None                             # the pattern resolves to nothing

    def includes(self, host: str) -> bool:
        return host in self.hosts

    def summary(self, pattern: str) -> str:
        parts = [f"{pattern} is {len(self.hosts)} host(s)"]
        if self.incidents:
            parts.append(f"incidents {', '.join(self.incidents)} for the others")
        if self.healthy:
            parts.append(f"left alone (healthy): {', '.join(self.healthy)}")
        return "; ".join(parts)


def fans_out(incident: Incident, strategy: Strategy) -> bool:
    """Does this incident's step spread to a group? Not when the incident is one a fan-out
    opened: it acts on its own host."""
    return bool(strategy.target) and not incident.requested_by.startswith(FANNED_FROM)


def fan_out(ctx: EngineContext, incident: Incident, runbook: Runbook, strategy: Strategy,
            advance: Advance) -> FanOut:
    """Open or join the incidents of the other hosts ``strategy.target`` names, and set
    the ones this call owns going (``advance``: the attempt's own entry)."""
    from engine.orchestration.triggers import TriggerRequest, open_incident

    pattern = strategy.target or ""
    done = FanOut()
    try:
        done.hosts = list(ctx.inventory.expand(
            pattern, what=f"strategy {strategy.name}'s target").names)
    except UnknownTarget as exc:
        done.error = f"its target {pattern!r} names no host: {exc.reason}"
        return done
    for host in done.hosts:
        if host == incident.target:
            continue
        health = check_health(ctx, runbook, strategy, host)
        if health is not None and health.healthy:
            record_healthy(ctx, runbook, strategy, host, health, trigger=incident.trigger,
                           requested_by=f"incident {incident.id}")
            done.healthy.append(host)
            continue
        opened = open_incident(ctx, TriggerRequest(
            runbook=runbook.name, target=host, trigger=incident.trigger,
            requested_by=f"{FANNED_FROM}{incident.id} ({strategy.name} targets {pattern})",
            strategy=strategy.name))
        if opened.incident is None:
            log.warning("incident %s: %s not opened for %s: %s", incident.id, host, pattern,
                        opened.refusal)
            continue
        done.incidents.append(opened.incident.id)
        if opened.claimed:
            thread = threading.Thread(target=_advance, args=(ctx, advance, opened.incident.id),
                                      daemon=True, name=f"recovery-fanout-{host}")
            with _THREADS_LOCK:
                _THREADS.add(thread)
            thread.start()
    return done


def wait_fanned_out(timeout: float) -> bool:
    """Wait for the incidents fanned out by this process to stop (a command in the
    foreground must not exit under them); True when none is left."""
    deadline = time.monotonic() + timeout
    while True:
        with _THREADS_LOCK:
            threads = [t for t in _THREADS if t.is_alive()]
            _THREADS.intersection_update(threads)
        if not threads:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        threads[0].join(min(left, 0.5))


def record_not_here(ctx: EngineContext, incident: Incident, runbook: Runbook,
                    strategy: Strategy, done: FanOut,
                    on_run: RunCallback | None = None) -> tuple[RunStatus, str]:
    """The asking incident's own run of a group step that does not name its host: skipped
    (it fanned out) or failed (the pattern names nothing). Its status and reason."""
    pattern = strategy.target or ""
    if done.error:
        status, reason = RunStatus.FAILED, done.error
    else:
        status = RunStatus.SKIPPED
        reason = f"fanned out, {incident.target} is not in {pattern}: {done.summary(pattern)}"
    run = new_run(ctx, incident, runbook, strategy, status, time.time(),
                  attempt_id=incident.attempt_id)
    details = {"fan_out": {"pattern": pattern, "hosts": done.hosts,
                           "incidents": done.incidents, "healthy": done.healthy}}
    artifacts = open_record(ctx, run, details)
    end_run(ctx, run, artifacts, status, reason, None, on_run, data=details)
    return status, reason


def _advance(ctx: EngineContext, advance: Advance, incident_id: str) -> None:
    try:
        advance(ctx, incident_id)
    except Exception:  # noqa: BLE001 - one host's engine error is its own
        log.exception("advancing fanned-out incident %s failed", incident_id)
    finally:
        with _THREADS_LOCK:
            _THREADS.discard(threading.current_thread())
