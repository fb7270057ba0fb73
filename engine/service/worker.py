"""The loop that keeps incidents moving when nobody is waiting on them.

It expires unanswered approvals, marks runs whose process died as ``interrupted``,
drains the alert intake (engine/alerts/intake.py; at start and in its duties it gives back
what dead workers had claimed of it, so the queue keeps its order), runs approved steps
(after asking every gate again), retries deferred incidents whose time has come, prunes
old artifacts, and removes the private data dirs (and Ansible's temp dirs) of runs whose
process died, secrets and all (engine.executors.private_dirs). Each pass first switches
to the set of runbooks, playbooks and inventory a reload put in force (where the context
follows one: a service's processes), then acts on that set alone. Whatever process runs
a ``Worker`` (the service, or an application embedding the engine) does this for
everyone.

Nothing that runs a step runs on the loop itself: attempts the intake claims, approved
steps and deferred incidents whose time has come all go to a small pool of threads
(``workers.threads``), so a long playbook never holds up the alerts, approvals and
retries behind it. Approved and deferred work is claimed only while a thread is free
(what is claimed starts at once, and the rest stays in the store for any worker).
Probes and outgoing alerts run on a thread of their own, so a probe waiting on a dead
host does not hold up the intake either. ``run_once`` (one pass, for tests and one-shot
callers) waits for what it started unless told not to; ``stop`` waits (bounded).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.alerts.intake import drain, release_abandoned
from engine.context import EngineContext
from engine.executors import private_dirs
from engine.lifecycle import IncidentState, RunStatus
from engine.notify_due import claim_post
from engine.orchestration.approvals import cancel_waiting, expire_due
from engine.orchestration.attempt import advance
from engine.orchestration.rollout import rollouts_of
from engine.orchestration.settle import hand_back_interrupted
from engine.orchestration.step import RunCallback
from engine.outages import OutageLog
from engine.records import RunRecord
from engine.runbooks.reload import drop_replaced
from engine.service import notifier, probes
from engine.service.retention import prune_if_due
from engine.store import StoreUnavailable
from engine.store.replicas import ReplicaSeen

log = logging.getLogger(__name__)
OUTAGE_BACKOFF_MAX = 5.0    # s between passes at most while the storage is out
# A run that acted on its target (an orphaned incident's last one is verified first).
ACTED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.INTERRUPTED)


def interrupt_run(ctx: EngineContext, run: RunRecord, reason: str, now: float) -> bool:
    """A running step whose process stopped (or is stopping): ``interrupted``, its attempt
    ended as interrupted, its incident handed back to the workers at that step, which is
    verified before it runs again (engine.orchestration.settle.hand_back_interrupted). False if
    the run had already ended (the store refuses the move)."""
    if ctx.store.update_run(run.id, status=RunStatus.INTERRUPTED, finished_at=now,
                            reason=reason) is None:
        return False
    ctx.store.record_outcome(run.component, run.strategy, "failed", None)
    hand_back_interrupted(ctx, run, reason, now, retry_at=now)
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
        self._helpers: list[threading.Thread] = []
        self._pool: _AdvancePool | None = None
        self._pool_lock = threading.Lock()
        self._backlog = False   # the last pass left journaled alerts: no pause before the next
        self._swept_at = 0.0    # the last sweep of dead runs' private dirs
        self.heartbeat = 0.0
        # A storage outage fails every pass, beat and step: said when it begins and ends.
        self.outages = OutageLog(log, "worker")

    def run_once(self, now: float | None = None, *, wait: bool = True,
                 duties: bool = True) -> int:
        """One pass; returns how many things it moved. ``wait``: return once the steps
        this pass started have finished (the background loop does not wait).
        ``duties``: also run the probes, outgoing alerts and retention (the background
        loop leaves them to their own thread)."""
        now = now or time.time()
        self.heartbeat = now
        self._beat(now)
        self._refresh()
        with self.ctx.pinned():
            return self._pass(now, wait, duties)

    def _pass(self, now: float, wait: bool, duties: bool) -> int:
        done = len(expire_due(self.ctx, now))
        done += self.mark_interrupted(now)
        if self.intake:
            # Before approved steps: a resolve in the queue cancels what waits for it.
            done += self.drain_intake()
        done += self._schedule_waiting()
        if duties:
            done += self.run_duties(now)
        self.ctx.store.maintain()
        if wait:
            self.wait_idle()
            if self._thread is None:
                self._close_pool()   # a one-shot caller: no threads left behind
        return done

    def run_duties(self, now: float | None = None) -> int:
        """The service's other duties: probes and what it tells Alertmanager (only where
        this worker takes the intake), and retention."""
        now = now or time.time()
        with self.ctx.pinned():
            return self._duties(now)

    def _duties(self, now: float) -> int:
        done = 0
        if self.intake:
            done += self._release_abandoned(now)
            done += self._guarded_count(lambda: probes.run_due(self.ctx, now,
                                                               run=self._advance_async))
            self._notify(now)
        done += prune_if_due(self.ctx, now)
        done += self._sweep_if_due(now)
        done += drop_replaced(self.ctx, now)   # its inventory copy holds secrets
        return done

    def _sweep_if_due(self, now: float) -> int:
        """What runs of dead processes left (their private data dirs, with secrets in
        clear): at the first duties pass, then every ``SWEEP_EVERY`` seconds."""
        if abs(now - self._swept_at) < private_dirs.SWEEP_EVERY:
            return 0
        self._swept_at = now
        try:
            return len(private_dirs.sweep(redactor=self.ctx.redactor))
        except Exception:  # noqa: BLE001 - a bad leftover must not stop the duties
            log.exception("worker: sweeping dead runs' private data dirs failed")
            return 0

    def _release_abandoned(self, now: float) -> int:
        """The alerts a dead worker had claimed, back in the queue at once, in their
        order (engine.alerts.intake.release_abandoned): at start and at every duties pass."""
        try:
            return release_abandoned(self.ctx, now, lease=self.INTAKE_LEASE)
        except StoreUnavailable as exc:   # said once per outage; the lease lapses by itself
            self.outages.failed(exc, "releasing the claims of dead workers")
            return 0

    def _schedule_waiting(self) -> int:
        """Approved steps, then deferred incidents whose time has come, each claimed only
        while a pool thread is free to start it at once."""
        done = 0
        while not self._stop.is_set() and self._free_threads() > 0:
            run = self.ctx.store.claim_queued_run(self.ctx.holder, time.time(),
                                                  self.ctx.config.lock_ttl * 2)
            if run is None:
                break
            self._submit(run.incident_id or run.id, lambda r=run: self._resume(r),
                         lambda r=run: self._release_run(r))
            done += 1
        while not self._stop.is_set() and self._free_threads() > 0:
            incident = self.ctx.store.claim_due_incident(time.time())
            if incident is None:
                break
            self._advance_async(incident.id)
            done += 1
        return done

    def _refresh(self) -> None:
        """Before anything is claimed: switch to the set of runbooks, playbooks and
        inventory a reload put in force (a service's processes only; engine.runbooks.loaded_set).
        Steps already running keep the set they started with."""
        try:
            self.ctx.refresh()
        except StoreUnavailable as exc:
            self.outages.failed(exc, "reading the set in force")

    def _guarded_count(self, work) -> int:
        try:
            return int(work())
        except Exception as exc:  # noqa: BLE001 - a broken probe must not stop the loop
            if not self.outages.failed(exc, "running the probes"):
                log.exception("worker: probes failed")
            return 0

    def _notify(self, now: float) -> None:
        """Re-post the engine's own alerts every notify_interval (from one process at a
        time: the last post's time is kept in the store)."""
        if not self.ctx.config.alertmanagers:
            return
        if not claim_post(self.ctx, now):
            return
        try:
            notifier.post(self.ctx)
        except Exception:  # noqa: BLE001 - Alertmanager down must not stop the loop
            log.exception("worker: posting outgoing alerts failed")

    # -- the alert intake ----------------------------------------------------------------
    def drain_intake(self) -> int:
        """Process journaled alerts; the attempts they open go to the thread pool. A pass
        takes at most INTAKE_BATCHES batches; when that cap is hit the loop goes on at
        once (no pause) after giving approvals and deferrals their turn."""
        done = 0
        self._backlog = False
        for _ in range(self.INTAKE_BATCHES):
            if self._stop.is_set():
                break
            try:
                n = drain(self.ctx, limit=self.INTAKE_BATCH, lease=self.INTAKE_LEASE,
                          run=self._advance_async)
            except StoreUnavailable as exc:
                self.outages.failed(exc, "acknowledging the intake (taken again later)")
                break
            done += n
            if n < self.INTAKE_BATCH:
                break
        else:
            self._backlog = True
        return done

    def _advance_async(self, incident_id: str) -> None:
        """Advance an incident this worker claimed (from the intake, a probe or the due
        deferrals), on the pool. What it claimed is stamped (``updated_at``): if anything
        else has touched the incident by the time a thread is free (the workers took it
        for abandoned and someone resumed it), this worker leaves it to them, so an
        incident is never advanced twice at once."""
        # Marked as held by this process: while it is alive (its heartbeat is fresh), the
        # orphan check of other worker processes leaves the incident to it, however long
        # it waits here for a thread.
        incident = self.ctx.store.update_incident(
            incident_id, expect=[IncidentState.REMEDIATING], held_by=self.ctx.holder)
        if incident is None:
            return
        stamp = incident.updated_at
        self._submit(incident_id, lambda: self._advance_claimed(incident_id, stamp),
                     lambda: self._hand_back(incident_id, stamp))

    def _submit(self, incident_id: str, work: Callable[[], None],
                hand_back: Callable[[], None]) -> None:
        """Queue work for the pool; stopping, it is handed back at once instead."""
        with self._pool_lock:
            if not self._stop.is_set():
                if self._pool is None:
                    rollouts = rollouts_of(self.ctx)
                    self._pool = _AdvancePool(max(1, self.ctx.config.worker_threads),
                                              rollouts.waiting)
                    rollouts.on_wait(self._pool.grow)
                # Guarded: a storage outage met before the attempt starts (reading the
                # incident) is said once by the worker's OutageLog, not a traceback each.
                self._pool.submit(_Job(incident_id, lambda: self._guard(work), hand_back))
                return
        hand_back()

    def _free_threads(self) -> int:
        with self._pool_lock:
            pool = self._pool
        if pool is None:
            return max(1, self.ctx.config.worker_threads)
        return pool.free()

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

    def _release_run(self, run: RunRecord) -> None:
        """Stopping before a claimed approved step started: its claim is dropped, so the
        next worker takes it at once instead of after the lease."""
        try:
            self.ctx.store.update_run(run.id, claimed_by=None, claimed_until=None)
        except Exception:  # noqa: BLE001 - the claim lapses by itself
            log.exception("worker: could not release run %s", run.id)

    def queued_incidents(self) -> set[str]:
        """Incidents waiting for, or advancing on, this worker's pool."""
        pool = self._pool
        return pool.pending_ids() if pool is not None else set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or advancing on this worker's pool; False on
        timeout."""
        pool = self._pool
        return pool.wait_idle(timeout) if pool is not None else True

    def _close_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _beat(self, now: float) -> None:
        """Say we are alive, in the store: metrics and /readyz read it from any process;
        and this replica's line in the roster (the set this worker acts on: `recovery
        status` warns when live replicas run different sets)."""
        def beat(beats: dict[str, float] | None) -> dict[str, float]:
            beats = {h: t for h, t in (beats or {}).items() if now - t < 86400}
            beats[self.ctx.holder] = now
            return beats

        self.ctx.store.update_value("worker_heartbeat", beat)
        held = self.ctx.held_set
        self.ctx.store.record_replica(ReplicaSeen(
            self.ctx.replica, held.sha256, held.loaded_at, now, socket.gethostname()))

    def _resume(self, run: RunRecord) -> None:
        incident = self.ctx.store.get_incident(run.incident_id or "")
        if incident is None or incident.state not in (IncidentState.REMEDIATING,):
            state = incident.state.value if incident else "gone"
            cancel_waiting(self.ctx, run, f"approved, but the incident is {state}", None)
            return
        if self._stop.is_set():
            self._release_run(run)
            return
        self._guard(lambda: advance(self.ctx, incident.id, resume=run, on_run=self.on_run))

    def _guard(self, work) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - one bad incident must not stop the loop
            # An outage leaves the incident for the workers to take up again (orphans).
            if not self.outages.failed(exc, "advancing an incident"):
                log.exception("worker: advancing an incident failed")

    def mark_interrupted(self, now: float) -> int:
        """Runs still 'running' whose process stopped beating: interrupted, retried later."""
        stale = self.ctx.store.stale_running_runs(now - 3 * self.ctx.config.lock_ttl)
        for run in stale:
            if run.id not in self.ctx.running:
                interrupt_run(self.ctx, run, "the process running this step stopped", now)
        return len(stale) + self._reopen_orphans(now)

    def _reopen_orphans(self, now: float) -> int:
        """Incidents left 'remediating' with nothing running or waiting for them and no
        step ended lately (their process died between two steps): handed back to the
        workers, not lost. One held
        by another worker process that is alive (its heartbeat fresh) is that worker's:
        it may be waiting for a free thread there."""
        waiting = (RunStatus.RUNNING, RunStatus.PENDING_APPROVAL, RunStatus.QUEUED)
        stale_before = now - 3 * self.ctx.config.lock_ttl
        n = 0
        ours = self.queued_incidents()   # waiting for a thread of this worker: not orphans
        beats: dict[str, float] | None = None
        for incident in self.ctx.store.list_incidents(open_only=True, limit=1000):
            if incident.state != IncidentState.REMEDIATING or incident.updated_at > stale_before:
                continue
            if incident.id in ours:
                continue
            # As it is now, not as listed: with many incidents the listing is seconds
            # old by the time this one is reached, and a live worker may have claimed
            # it since (reopened again, it would run twice).
            current = self.ctx.store.get_incident(incident.id)
            if current is None or current.state != IncidentState.REMEDIATING or \
                    current.updated_at != incident.updated_at:
                continue
            if incident.held_by and incident.held_by != self.ctx.holder:
                if beats is None:
                    beats = self.ctx.store.get_value("worker_heartbeat") or {}
                if float(beats.get(incident.held_by, 0.0)) > stale_before:
                    continue
            runs = self.ctx.store.query_runs(incident_id=incident.id, limit=None)
            if any(r.status in waiting for r in runs):
                continue
            # A step that ended within the bound: its process is settling the incident
            # (its verify, its close), not gone.
            if any((r.finished_at or 0.0) > stale_before for r in runs):
                continue
            # Its last step may have run, and even succeeded, with the incident not
            # settled after it (the store went down in between): that step's verify is
            # asked before it runs again (engine.orchestration.attempt), never run blind.
            last = max(runs, key=lambda r: r.started_at or 0.0, default=None)
            acted = last is not None and last.status in ACTED and not last.check_mode
            if self.ctx.store.update_incident(
                    incident.id, expect=[IncidentState.REMEDIATING], state=IncidentState.OPEN,
                    next_try_at=now, reason="its process stopped between steps",
                    **({"interrupted_run": last.id} if acted else {})) is not None:
                n += 1
        return n

    # -- background threads ----------------------------------------------------------------
    def start(self) -> Worker:
        if self._thread is None:
            if self.intake:   # before the first claim: the queue's order first
                self._release_abandoned(time.time())
            self._thread = self._spawn(self._loop, "recovery-worker")
            # Alive is not the same as idle: a long pass must not make /readyz and the
            # "workers dead" alert say this worker is gone.
            self._helpers = [self._spawn(self._beat_loop, "recovery-worker-heartbeat"),
                             self._spawn(self._duties_loop, "recovery-worker-duties")]
        return self

    @staticmethod
    def _spawn(target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True, name=name)
        thread.start()
        return thread

    def _beat_loop(self) -> None:
        interval = max(1.0, min(5.0, self.ctx.config.poll_interval * 5))
        while not self._stop.wait(interval):
            try:
                self._beat(time.time())
                self.outages.succeeded()
            except Exception as exc:  # noqa: BLE001 - the store may be briefly unavailable
                if not self.outages.failed(exc, "the heartbeat"):
                    log.warning("worker heartbeat not written", exc_info=True)

    def _duties_loop(self) -> None:
        if not self._stop.wait(self.ctx.config.poll_interval):
            self._repeat(self.run_duties, "the duties (probes, retention)",
                         "worker duties failed")

    def _loop(self) -> None:
        def one_pass() -> None:
            self.run_once(wait=False, duties=False)

        self._repeat(one_pass, "a pass", "worker pass failed", backlog=True)

    def _repeat(self, work: Callable[[], object], doing: str, failed: str, *,
                backlog: bool = False) -> None:
        """``work`` every ``poll_interval`` until stopped (at once while a pass left a
        backlog, with ``backlog``). While the storage is out, the wait doubles after
        each failed try, up to ``OUTAGE_BACKOFF_MAX``: a store that is down is not
        asked five times a second by every thread."""
        poll = self.ctx.config.poll_interval
        wait = poll
        while not self._stop.is_set():
            try:
                work()
                self.outages.succeeded()
                wait = poll
            except Exception as exc:  # noqa: BLE001 - e.g. store briefly unavailable: try again
                if self.outages.failed(exc, doing):
                    wait = min(max(wait, poll) * 2, max(poll, OUTAGE_BACKOFF_MAX))
                else:
                    log.exception("%s", failed)
                    wait = poll
                if backlog:
                    self._backlog = False
            if not (backlog and self._backlog):
                self._stop.wait(wait)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop taking work; wait up to ``timeout`` for the pass under way and the steps
        running on the pool (work not started yet is handed back). True if all finished
        in time; steps still running then go on on daemon threads (``ctx.running`` holds
        their cancel events)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        for thread in [self._thread, *self._helpers]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._thread, self._helpers = None, []
        with self._pool_lock:
            pool = self._pool
        if pool is None:
            return True
        for job in pool.take_unstarted():
            job.hand_back()
        idle = pool.wait_idle(max(0.0, deadline - time.monotonic()))
        pool.close()
        return idle


@dataclass(frozen=True)
class _Job:
    incident_id: str                  # what it advances (for the orphan check)
    work: Callable[[], None]
    hand_back: Callable[[], None]     # stopping before it started: give the claim back


class _AdvancePool:
    """A few daemon threads running steps. Daemon threads, not a ThreadPoolExecutor:
    the interpreter joins those at exit, so a stuck playbook would hold a stopping
    service past its grace period."""

    def __init__(self, size: int, idle: Callable[[], int] = lambda: 0) -> None:
        self.size = size
        # Threads waiting on a rollout (engine.orchestration.rollout) are not busy: a storm
        # is gathered into one rollout only if other incidents' steps can reach it.
        self._idle = idle
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending: dict[str, int] = {}
        self._jobs = 0                    # queued or running
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    def submit(self, job: _Job) -> None:
        with self._cond:
            self._pending[job.incident_id] = self._pending.get(job.incident_id, 0) + 1
            self._jobs += 1
            self._start_thread_if_needed()
        self._queue.put(job)

    def grow(self) -> None:
        """A thread began waiting on a rollout: start another for a queued job, if any."""
        with self._cond:
            self._start_thread_if_needed()

    def _start_thread_if_needed(self) -> None:
        if len(self._threads) < min(self.size + self._idle(), self._jobs):
            thread = threading.Thread(target=self._loop, daemon=True,
                                      name=f"recovery-advance-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()

    def free(self) -> int:
        """Threads that would start a job at once."""
        with self._cond:
            return max(0, self.size + self._idle() - self._jobs)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job.work()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad incident
                log.exception("worker: advancing incident %s failed", job.incident_id)
            finally:
                self._done(job.incident_id)

    def _done(self, incident_id: str) -> None:
        with self._cond:
            self._jobs -= 1
            left = self._pending.get(incident_id, 1) - 1
            if left:
                self._pending[incident_id] = left
            else:
                self._pending.pop(incident_id, None)
            self._cond.notify_all()

    def take_unstarted(self) -> list[_Job]:
        """Remove the jobs no thread has started yet (stopping: they are handed back)."""
        jobs = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                jobs.append(job)
                self._done(job.incident_id)
        return jobs

    def pending_ids(self) -> set[str]:
        with self._cond:
            return set(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs, timeout)

    def close(self) -> None:
        """Let the threads end once the queue is done (running steps finish first)."""
        with self._cond:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
