"""A step whose lease was lost: it stops acting, and says so on its own record only.

A process that stalled past its lease (paused, swapped out, its VM frozen) wakes up in
the middle of a step whose target lock another holder has taken since, with a newer
token (engine.store.fencing). From then on the target is the other holder's: this step
is canceled (its playbook stopped, no further step or rollout batch), its writes to the
shared state, fenced with its token, are refused (``StaleLease``), and its run is
recorded ``interrupted`` with the reason. Only its own run record is written, and only
from ``running`` (the lifecycle refuses anything else), so nothing the newer holder or a
worker's sweep wrote is overwritten; its incident is not touched: the newer holder, or
the workers once its heartbeat is old, take it from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from engine.artifacts import RunArtifacts
from engine.context import EngineContext
from engine.gates.lock import Lease
from engine.lifecycle import METRIC_OUTCOME, RunStatus
from engine.orchestration.step import keep
from engine.outages import describe
from engine.records import Lock, RunRecord
from engine.store.fencing import Fence

log = logging.getLogger(__name__)


def fence_of(locks: Sequence[Lock], target: str) -> Fence | None:
    """The fence of the lock on ``target`` among the step's ``locks`` (None: it holds
    none, a check-mode run's)."""
    return next((Fence.of(lock) for lock in locks if lock.target == target), None)


def still_held(lease: Lease | None) -> str | None:
    """Why ``lease`` is lost (its lock taken by another holder), asked now, before a step
    or a rollout batch starts acting; None while it holds (or the store cannot say: the
    step's fenced writes judge then)."""
    if lease is None:
        return None
    try:
        return lease.check()
    except Exception as exc:  # noqa: BLE001 - an outage is judged by the writes, fenced
        log.warning("a lease could not be checked: %s", describe(exc))
        return None


def record_lost_lease(ctx: EngineContext, run: RunRecord, artifacts: RunArtifacts,
                      why: str, ended: str | None = None) -> None:
    """Record ``run`` interrupted because its lease was lost (``why``); ``ended`` is what
    the step had come to when it noticed, if it had ended. Nothing else is written."""
    reason = f"{why}; it stopped acting on {run.target}"
    if ended:
        reason += f" (the step had ended {ended})"
    try:
        # Only a run still running: one a worker's sweep already marked keeps that account
        # (the lifecycle alone would let interrupted be written over interrupted).
        current = ctx.store.get_run(run.id)
        stored = None if current is None or current.status != RunStatus.RUNNING else \
            ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED,
                                 finished_at=time.time(), reason=reason)
    except Exception as exc:  # noqa: BLE001 - the workers mark it once its heartbeat is old
        log.error("run %s: %s; not recorded (%s)", run.id, reason, describe(exc))
        return
    if stored is None:
        log.warning("run %s: %s; it was already %s", run.id, reason,
                    current.status.value if current else "gone")
        return
    run.status, run.reason = RunStatus.INTERRUPTED, reason
    try:
        ctx.store.record_outcome(run.component, run.strategy,
                                 METRIC_OUTCOME[RunStatus.INTERRUPTED], None)
    except Exception as exc:  # noqa: BLE001 - a metric, not the account
        log.warning("run %s: its outcome was not counted: %s", run.id, describe(exc))
    keep(run.id, lambda: artifacts.write_run_json({"status": run.status.value,
                                                    "reason": reason}))
    log.warning("run %s interrupted: %s", run.id, reason)
