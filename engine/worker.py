"""The loop that keeps incidents moving when nobody is waiting on them.

It expires unanswered approvals, marks runs whose process died as ``interrupted``,
runs approved steps (after asking every gate again), retries deferred incidents
whose time has come, and prunes old artifacts. Whatever process runs a ``Worker``
(the service, or an application embedding the engine) does this for everyone.
"""

from __future__ import annotations

import logging
import threading
import time

from engine.approvals import cancel_waiting, expire_due
from engine.context import EngineContext
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.orchestrator import RunCallback, advance
from engine.retention import prune_if_due

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, ctx: EngineContext, *, on_run: RunCallback | None = None) -> None:
        self.ctx = ctx
        self.on_run = on_run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = 0.0

    def run_once(self, now: float | None = None) -> int:
        """One pass; returns how many things it moved."""
        now = now or time.time()
        self.heartbeat = now
        self._beat(now)
        done = len(expire_due(self.ctx, now))
        done += self.mark_interrupted(now)
        while not self._stop.is_set():
            run = self.ctx.store.claim_queued_run(self.ctx.holder, time.time(),
                                                  self.ctx.config.lock_ttl * 2)
            if run is None:
                break
            self._resume(run)
            done += 1
        while not self._stop.is_set():
            incident = self.ctx.store.claim_due_incident(time.time())
            if incident is None:
                break
            self._guard(lambda i=incident: advance(self.ctx, i.id, on_run=self.on_run))
            done += 1
        self.ctx.store.maintain()
        done += prune_if_due(self.ctx, now)
        return done

    def _beat(self, now: float) -> None:
        """Say we are alive, in the store: metrics and /readyz read it from any process."""
        beats = self.ctx.store.get_value("worker_heartbeat") or {}
        beats = {h: t for h, t in beats.items() if now - t < 86400}
        beats[self.ctx.holder] = now
        self.ctx.store.set_value("worker_heartbeat", beats)

    def _resume(self, run) -> None:
        incident = self.ctx.store.get_incident(run.incident_id or "")
        if incident is None or incident.state not in (IncidentState.REMEDIATING,):
            state = incident.state.value if incident else "gone"
            cancel_waiting(self.ctx, run, f"approved, but the incident is {state}", None)
            return
        self._guard(lambda: advance(self.ctx, incident.id, resume=run, on_run=self.on_run))

    def _guard(self, work) -> None:
        try:
            work()
        except Exception:  # noqa: BLE001 - one bad incident must not stop the loop
            log.exception("worker: advancing an incident failed")

    def mark_interrupted(self, now: float) -> int:
        """Runs still 'running' whose process stopped beating: interrupted, retried later."""
        stale = self.ctx.store.stale_running_runs(now - 3 * self.ctx.config.lock_ttl)
        for run in stale:
            if run.id in self.ctx.running:
                continue
            self.ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED, finished_at=now,
                                      reason="the process running this step stopped")
            self.ctx.store.record_outcome(run.component, run.strategy, "failed", None)
            incident = self.ctx.store.get_incident(run.incident_id or "")
            if incident is not None and incident.state == IncidentState.REMEDIATING:
                if incident.attempt_id:
                    self.ctx.store.finish_attempt(incident.attempt_id, AttemptOutcome.FAILED,
                                                  now)
                self.ctx.store.update_incident(
                    incident.id, state=IncidentState.OPEN, next_try_at=now, attempt_id=None,
                    step=0, reason=f"run {run.id} interrupted: its process stopped")
        return len(stale) + self._reopen_orphans(now)

    def _reopen_orphans(self, now: float) -> int:
        """Incidents left 'remediating' with nothing running or waiting for them (their
        process died between two steps): handed back to the workers, not lost."""
        waiting = (RunStatus.RUNNING, RunStatus.PENDING_APPROVAL, RunStatus.QUEUED)
        stale_before = now - 3 * self.ctx.config.lock_ttl
        n = 0
        for incident in self.ctx.store.list_incidents(open_only=True, limit=1000):
            if incident.state != IncidentState.REMEDIATING or incident.updated_at > stale_before:
                continue
            runs = self.ctx.store.query_runs(incident_id=incident.id, limit=None)
            if any(r.status in waiting for r in runs):
                continue
            if self.ctx.store.update_incident(
                    incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
                    next_try_at=now, reason="its process stopped between steps") is not None:
                n += 1
        return n

    # -- background thread -----------------------------------------------------------------
    def start(self) -> Worker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="recovery-worker")
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - e.g. store briefly unavailable: try again
                log.exception("worker pass failed")
            self._stop.wait(self.ctx.config.poll_interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
