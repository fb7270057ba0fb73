"""The loop that keeps incidents moving when nobody is waiting on them.

It expires unanswered approvals, marks runs whose process died as ``interrupted``,
drains the alert intake (engine/intake.py), runs approved steps (after asking every
gate again), retries deferred incidents whose time has come, and prunes old
artifacts. Whatever process runs a ``Worker`` (the service, or an application
embedding the engine) does this for everyone.

Approved and deferred steps run inside ``run_once``. Attempts that the intake claims
run on a small pool of threads (``workers.threads``), so a long playbook never holds
up the alerts behind it; ``wait_idle`` waits for them, ``stop`` waits (bounded).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from engine import notifier, probes
from engine.approvals import cancel_waiting, expire_due
from engine.context import EngineContext
from engine.intake import drain
from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.orchestrator import RunCallback, advance
from engine.records import RunRecord
from engine.retention import prune_if_due
from engine.store import StoreUnavailable

log = logging.getLogger(__name__)


def interrupt_run(ctx: EngineContext, run: RunRecord, reason: str, now: float) -> bool:
    """A running step whose process stopped (or is stopping): ``interrupted``, its attempt
    ended as interrupted, its incident handed back to the workers. False if the run had
    already ended (the store refuses the move)."""
    if ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED, finished_at=now,
                            reason=reason) is None:
        return False
    ctx.store.record_outcome(run.component, run.strategy, "failed", None)
    incident = ctx.store.get_incident(run.incident_id or "")
    if incident is not None and incident.state == IncidentState.REMEDIATING:
        if incident.attempt_id:
            ctx.store.finish_attempt(incident.attempt_id, AttemptOutcome.INTERRUPTED, now)
        ctx.store.update_incident(
            incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
            next_try_at=now, attempt_id=None, step=0,
            reason=f"run {run.id} interrupted: {reason}")
    return True


class Worker:
    INTAKE_BATCH = 100          # alerts claimed at once
    INTAKE_LEASE = 60.0         # seconds before a claimed, unacknowledged alert is retaken
    INTAKE_BATCHES = 20         # per pass, so approvals and deferrals still get their turn

    def __init__(self, ctx: EngineContext, *, on_run: RunCallback | None = None,
                 intake: bool = True) -> None:
        self.ctx = ctx
        self.on_run = on_run
        self.intake = intake    # False: leave the alert intake to other workers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: _AdvancePool | None = None
        self._pool_lock = threading.Lock()
        self.heartbeat = 0.0

    def run_once(self, now: float | None = None) -> int:
        """One pass; returns how many things it moved."""
        now = now or time.time()
        self.heartbeat = now
        self._beat(now)
        done = len(expire_due(self.ctx, now))
        done += self.mark_interrupted(now)
        if self.intake:
            # Before approved steps: a resolve in the queue cancels what waits for it.
            done += self.drain_intake()
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
        if self.intake:  # the service's duties: probes, and what it tells Alertmanager
            done += self._guarded_count(lambda: probes.run_due(self.ctx, now,
                                                               run=self._advance_async))
            self._notify(now)
        self.ctx.store.maintain()
        done += prune_if_due(self.ctx, now)
        return done

    def _guarded_count(self, work) -> int:
        try:
            return int(work())
        except Exception:  # noqa: BLE001 - a broken probe must not stop the loop
            log.exception("worker: probes failed")
            return 0

    def _notify(self, now: float) -> None:
        """Re-post the engine's own alerts every notify_interval (from one process at a
        time: the last post's time is kept in the store)."""
        if not self.ctx.config.alertmanagers:
            return
        last = self.ctx.store.get_value("notify_posted_at") or 0.0
        if now - float(last) < self.ctx.config.notify_interval:
            return
        self.ctx.store.set_value("notify_posted_at", now)
        try:
            notifier.post(self.ctx)
        except Exception:  # noqa: BLE001 - Alertmanager down must not stop the loop
            log.exception("worker: posting outgoing alerts failed")

    # -- the alert intake ----------------------------------------------------------------
    def drain_intake(self) -> int:
        """Process journaled alerts; the attempts they open go to the thread pool."""
        done = 0
        for _ in range(self.INTAKE_BATCHES):
            if self._stop.is_set():
                break
            try:
                n = drain(self.ctx, limit=self.INTAKE_BATCH, lease=self.INTAKE_LEASE,
                          run=self._advance_async)
            except StoreUnavailable as exc:
                log.warning("worker: intake not acknowledged, it will be taken again: %s", exc)
                break
            done += n
            if n < self.INTAKE_BATCH:
                break
        return done

    def _advance_async(self, incident_id: str) -> None:
        """Advance an incident the intake claimed, on the pool. What it claimed is
        stamped (``updated_at``): if anything else has touched the incident by the time
        a thread is free (the workers took it for abandoned and someone resumed it),
        this worker leaves it to them, so an incident is never advanced twice at once."""
        incident = self.ctx.store.get_incident(incident_id)
        if incident is None or incident.state != IncidentState.REMEDIATING:
            return
        with self._pool_lock:
            if not self._stop.is_set():
                if self._pool is None:
                    self._pool = _AdvancePool(self, max(1, self.ctx.config.worker_threads))
                self._pool.submit(incident_id, incident.updated_at)
                return
        self._hand_back(incident_id, incident.updated_at)

    def _advance_claimed(self, incident_id: str, stamp: float) -> None:
        current = self.ctx.store.get_incident(incident_id)
        if (current is None or current.state != IncidentState.REMEDIATING
                or current.updated_at != stamp):
            log.info("worker: incident %s was taken up elsewhere: not advanced here",
                     incident_id)
            return
        if self._stop.is_set():
            self._hand_back(incident_id, stamp)
            return
        self._guard(lambda: advance(self.ctx, incident_id, on_run=self.on_run))

    def _hand_back(self, incident_id: str, stamp: float) -> None:
        """Stopping before a claimed attempt started: the incident goes back to the
        workers (open, due now), so the next one to run takes it at once."""
        try:
            current = self.ctx.store.get_incident(incident_id)
            if current is None or current.updated_at != stamp:
                return
            self.ctx.store.update_incident(
                incident_id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
                next_try_at=time.time(), reason="the worker stopped before its attempt started")
        except Exception:  # noqa: BLE001 - left remediating, the orphan check takes it up
            log.exception("worker: could not hand incident %s back", incident_id)

    def queued_incidents(self) -> set[str]:
        """Incidents waiting for, or advancing on, this worker's pool."""
        pool = self._pool
        return pool.pending_ids() if pool is not None else set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no intake-claimed attempt is queued or advancing here; False on
        timeout."""
        pool = self._pool
        return pool.wait_idle(timeout) if pool is not None else True

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
            if run.id not in self.ctx.running:
                interrupt_run(self.ctx, run, "the process running this step stopped", now)
        return len(stale) + self._reopen_orphans(now)

    def _reopen_orphans(self, now: float) -> int:
        """Incidents left 'remediating' with nothing running or waiting for them (their
        process died between two steps): handed back to the workers, not lost."""
        waiting = (RunStatus.RUNNING, RunStatus.PENDING_APPROVAL, RunStatus.QUEUED)
        stale_before = now - 3 * self.ctx.config.lock_ttl
        n = 0
        ours = self.queued_incidents()   # waiting for a thread of this worker: not orphans
        for incident in self.ctx.store.list_incidents(open_only=True, limit=1000):
            if incident.state != IncidentState.REMEDIATING or incident.updated_at > stale_before:
                continue
            if incident.id in ours:
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
            # Alive is not the same as idle: a long step on the loop must not make
            # /readyz and the "workers dead" alert say this worker is gone.
            threading.Thread(target=self._beat_loop, daemon=True,
                             name="recovery-worker-heartbeat").start()
        return self

    def _beat_loop(self) -> None:
        interval = max(1.0, min(5.0, self.ctx.config.poll_interval * 5))
        while not self._stop.wait(interval):
            try:
                self._beat(time.time())
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable
                log.warning("worker heartbeat not written", exc_info=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - e.g. store briefly unavailable: try again
                log.exception("worker pass failed")
            self._stop.wait(self.ctx.config.poll_interval)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop taking work; wait up to ``timeout`` for the pass under way and the steps
        running on the pool (attempts not started yet are handed back). True if all
        finished in time; steps still running then go on on daemon threads (``ctx.running``
        holds their cancel events)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._pool_lock:
            pool = self._pool
        if pool is None:
            return True
        for incident_id, stamp in pool.take_unstarted():
            self._hand_back(incident_id, stamp)
        idle = pool.wait_idle(max(0.0, deadline - time.monotonic()))
        pool.close()
        return idle


class _AdvancePool:
    """A few daemon threads advancing intake-claimed incidents. Daemon threads, not a
    ThreadPoolExecutor: the interpreter joins those at exit, so a stuck playbook would
    hold a stopping service past its grace period."""

    def __init__(self, worker: Worker, size: int) -> None:
        self.worker = worker
        self.size = size
        self._queue: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._pending: dict[str, int] = {}
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    def submit(self, incident_id: str, stamp: float) -> None:
        with self._cond:
            self._pending[incident_id] = self._pending.get(incident_id, 0) + 1
            if len(self._threads) < self.size and len(self._threads) < sum(
                    self._pending.values()):
                thread = threading.Thread(target=self._loop, daemon=True,
                                          name=f"recovery-advance-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        self._queue.put((incident_id, stamp))

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            incident_id, stamp = job
            try:
                self.worker._advance_claimed(incident_id, stamp)
            except Exception:  # noqa: BLE001 - the thread must outlive one bad incident
                log.exception("worker: advancing incident %s failed", incident_id)
            finally:
                self._done(incident_id)

    def _done(self, incident_id: str) -> None:
        with self._cond:
            left = self._pending.get(incident_id, 1) - 1
            if left:
                self._pending[incident_id] = left
            else:
                self._pending.pop(incident_id, None)
            self._cond.notify_all()

    def take_unstarted(self) -> list[tuple[str, float]]:
        """Remove the jobs no thread has started yet (stopping: they are handed back)."""
        jobs = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                jobs.append(job)
                self._done(job[0])
        return jobs

    def pending_ids(self) -> set[str]:
        with self._cond:
            return set(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    def close(self) -> None:
        """Let the threads end once the queue is done (running steps finish first)."""
        with self._cond:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
