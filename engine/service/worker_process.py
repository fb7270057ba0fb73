"""One engine worker process of ``recovery serve`` (``python -m engine.service.worker_process``).

It runs a ``Worker`` pass (intake, due incidents, approved steps, expiries) every
``poll_interval``, in a thread of its own, while the main thread waits for a reason to
stop: SIGTERM or SIGINT from the service, or the service gone (its pid is in
``RECOVERY_SERVICE_PID``; the kernel also sends SIGTERM, see engine.service.supervisor). It acts on
the set of runbooks, playbooks and inventory recorded in force (engine.runbooks.loaded_set), and
switches to a newer one before its next pass; SIGHUP is ignored here.

Stopping: claim nothing new; steps already running may finish within
``webhook.shutdown_grace`` (30 s); a second signal cuts the grace short. What is still
running then is marked ``interrupted`` in the store (as a dead process's runs are, so its
incident is reopened and retried by the next worker, after the usual cooldown for a
failed attempt), its lock released, its cancel event set and its child processes (a
playbook's ``ansible-playbook``) killed; then the process exits 0.

What it cannot do: stop a python action that ignores its cancel event before the process
exits; that action's effect may land after its run was recorded ``interrupted``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import psutil

from engine.context import EngineContext
from engine.lifecycle import RunStatus
from engine.service.log_format import LEVEL_ENV, configure
from engine.service.worker import Worker, interrupt_run

log = logging.getLogger("engine.service.worker_process")  # also when run as __main__

WAIT = 0.2


class Stop:
    """Counts SIGTERM/SIGINT: the first asks for a graceful stop, the second for now.
    SIGHUP is ignored: a reload reaches this process through the store (the set in force,
    read before every pass), never by a signal, and must never stop it."""

    def __init__(self) -> None:
        self.signals = 0
        self.parent_gone = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1  # a flag only: the main thread acts on it

    @property
    def requested(self) -> bool:
        return self.signals > 0 or self.parent_gone


def main() -> int:
    _setup_logging()
    stop = Stop()
    stop.install()
    parent = int(os.environ.get("RECOVERY_SERVICE_PID") or os.getppid())

    from engine.config import ConfigError, load_config
    from engine.runbooks.loader import RunbookError
    from engine.service.supervisor import ServiceError, shutdown_grace
    from engine.store.base import StoreUnavailable

    try:
        config = load_config()
        grace = shutdown_grace(config)
        # A store unavailable now does not stop the start: the worker waits for it.
        ctx = EngineContext(config, follow_loaded_set=True, retry_store_open=True)
        ctx.runbooks  # noqa: B018 - a bad runbook stops us here, not in every pass
    except (ConfigError, ServiceError, RunbookError, StoreUnavailable, ImportError,
            OSError, ValueError) as exc:
        log.error("cannot start: %s", " ".join(str(exc).split()) or type(exc).__name__)
        return 2

    worker = Worker(ctx).start()
    log.info("engine worker started (%s, replica %s) on %s", ctx.holder, ctx.replica,
             f"set {ctx.files.sha256[:12]}" if ctx.files.sha256 else "the files on disk")
    while not stop.requested:
        if os.getppid() != parent:
            stop.parent_gone = True
            log.warning("the service (pid %d) is gone: stopping", parent)
            break
        time.sleep(WAIT)

    # No new claims; the pass under way and the steps on the pool may finish within the
    # grace (Worker.stop hands back attempts not started yet). It runs on a thread of its
    # own so that a second signal can cut the wait short.
    if ctx.running:
        log.info("stopping: %d step(s) running, waiting up to %gs for them to finish",
                 len(ctx.running), grace)
    finished: list[bool] = []
    stopper = threading.Thread(target=lambda: finished.append(worker.stop(grace)),
                               daemon=True, name="recovery-worker-stop")
    started = time.monotonic()
    stopper.start()
    seen = stop.signals
    while stopper.is_alive() and stop.signals <= max(seen, 1):
        stopper.join(WAIT)
    if finished and finished[0] and not ctx.running:
        ctx.store.close()
        log.info("engine worker stopped")
        return 0

    cut_short = time.monotonic() - started < grace
    why = ("the service stopped before this step finished " +
           ("(stopped at once, on a second signal)" if cut_short else
            f"(shutdown grace {grace:g}s)"))
    # What the steps started goes first: only then are their targets' locks released
    # and their incidents handed back, so no other process can start a second step on a
    # target while ours is still running.
    _kill_descendants()
    interrupted = interrupt_running(ctx, why)
    if interrupted:
        log.warning("interrupted %d running step(s): %s", len(interrupted),
                    ", ".join(interrupted))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Steps that ignore their cancel event may still be running on daemon threads: do
    # not wait for them (interpreter shutdown might); the store already says what happened.
    os._exit(0)


def interrupt_running(ctx: EngineContext, reason: str) -> list[str]:
    """Mark this process's running steps ``interrupted`` (their incidents reopened, as
    ``Worker.mark_interrupted`` does for a dead process's runs), release their locks, and
    set their cancel events so the executors stop what they started. Returns the run ids.
    A step that finished meanwhile keeps its own outcome (the store refuses the move)."""
    now = time.time()
    done: list[str] = []
    for run_id, cancel in list(ctx.running.items()):
        run = ctx.store.get_run(run_id)
        if run is None or run.status != RunStatus.RUNNING:
            continue
        if not interrupt_run(ctx, run, reason, now):
            continue
        done.append(run_id)
        cancel.set()
    for lock in ctx.store.list_locks():
        if lock.holder == ctx.holder:  # ours, and we are leaving: free it now, not in a lease
            ctx.store.release_lock(lock.target, lock.token)
    return done


def _kill_descendants(timeout: float = 3.0) -> None:
    """What the steps started (ansible-playbook and its forks) goes with us."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def _setup_logging() -> None:
    configure("worker", level=os.environ.get(LEVEL_ENV, "WARNING"))
    for said in (log, logging.getLogger("engine.context")):
        if said.getEffectiveLevel() > logging.INFO:
            said.setLevel(logging.INFO)  # start, stop, interruptions, set switches: said


if __name__ == "__main__":
    sys.exit(main())
