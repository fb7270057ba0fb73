"""Runs a registered python action and writes its account in the artifacts layout.

An action runs on its own thread with a deadline. Python cannot stop a thread: on
timeout the step is failed at once and the thread is left to finish (or hang) in
the background, which the record says. Embedded actions with nothing registered
in this process are `skipped`, never a success. An action's log line that cannot be
written (a full disk) never stops the action halfway; the run's own record, written
after it, says whether the run could be recorded.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable

from engine.actions.base import EMBEDDED, ActionContext, ActionResult
from engine.actions.registry import ActionRegistry, UnknownAction
from engine.artifacts import RunArtifacts
from engine.executors import StepResult
from engine.lifecycle import RunStatus

log = logging.getLogger(__name__)


class StopSignal(threading.Event):
    """An event that is set by its own ``set()`` or when ``parent`` is: what one call of
    an action waits on (the run's cancel, or the call's timeout)."""

    def __init__(self, parent: threading.Event) -> None:
        super().__init__()
        self.parent = parent

    def is_set(self) -> bool:
        return super().is_set() or self.parent.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                break
            super().wait(left)
        return self.is_set()


class ActionThreads:
    """Threads for actions, reused: starting one costs milliseconds on a loaded machine.

    A thread whose action hangs past its timeout is simply not returned; the next call
    starts a fresh one, so a hung action never blocks another. At most ``keep`` idle
    threads wait for work.
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = \
            queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, job: Callable[[], None], timeout: float) -> bool:
        """Run ``job`` on a pool thread; False if it did not finish within ``timeout``.
        It runs in a copy of the caller's context: its log lines carry the caller's run
        and incident (engine.log_context)."""
        done = threading.Event()
        caller = contextvars.copy_context()
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._serve, daemon=True, name="action").start()
        self._jobs.put((lambda: caller.run(job), done))
        return done.wait(timeout)

    def _serve(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                job()
            finally:
                done.set()
            with self._lock:
                if self._idle >= self.keep:
                    return
                self._idle += 1


class PythonExecutor:
    def __init__(self, registry: ActionRegistry) -> None:
        self.registry = registry
        self.threads = ActionThreads()

    def call(self, name: str, ctx: ActionContext, *, plan: bool = False,
             timeout: float | None = None) -> ActionResult:
        """Run (or plan) one action with a deadline; errors come back as results."""
        try:
            action = self.registry.get(name)
        except UnknownAction as exc:
            return ActionResult(False, str(exc.args[0]))
        if action.scope == EMBEDDED and ctx.resource(action.needed_resource()) is None:
            return ActionResult(False, f"not applicable: nothing registered as "
                                f"{action.needed_resource()!r} in this process",
                                not_applicable=True)
        outcome: list[ActionResult] = []
        # The action waits on its own signal: set by a cancel of the run, or by this
        # call's timeout, so an action that times out is told to stop too.
        stop = StopSignal(ctx.cancel)
        call_ctx = dataclasses.replace(ctx, cancel=stop)

        def target() -> None:
            try:
                result = action.plan(call_ctx) if plan else action.run(call_ctx)
                outcome.append(result if isinstance(result, ActionResult)
                               else ActionResult(False, f"{name} returned {result!r}"))
            except Exception as exc:  # noqa: BLE001 - an action's bug is a failed step
                ctx.log("".join(traceback.format_exception(exc)).rstrip())
                outcome.append(ActionResult(False, f"{name} raised {type(exc).__name__}: {exc}"))

        limit = timeout if timeout is not None else action.timeout
        if not self.threads.run(target, limit):
            stop.set()
            return ActionResult(False, f"{name} timed out after {limit:g}s (its thread cannot "
                                "be stopped and may still be running)")
        return outcome[0]

    def run(self, *, artifacts: RunArtifacts, action: str, ctx: ActionContext,
            check: bool = False, timeout: float | None = None) -> StepResult:
        unwritten: list[object] = []

        def note(message: object) -> None:
            try:
                artifacts.event("action_log", stdout=str(message))
            except OSError as exc:
                unwritten.append(message)
                if len(unwritten) == 1:   # a full disk fails every line after it too
                    log.warning("run %s: a log line of %s was not written: %s (said once "
                                "per run, however many follow)", artifacts.run_id, action, exc)

        ctx.log = note
        artifacts.event("action_start", stdout=f"{'PLAN' if check else 'RUN'} {action} on "
                        f"{ctx.target}", action=action, target=ctx.target, check=check,
                        params=ctx.params)
        if ctx.cancel.is_set():  # canceled before it began: it does not begin
            result = ActionResult(False, "canceled before it started")
        else:
            result = self.call(action, ctx, plan=check, timeout=timeout)
        if ctx.cancel.is_set():  # asked to stop: whatever it returned, it was canceled
            status = RunStatus.CANCELED
            result = ActionResult(False, f"canceled: {result.summary}", result.data)
        elif result.not_applicable:
            status = RunStatus.SKIPPED
        else:
            status = RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
        artifacts.event("action_result", stdout=f"{status.value}: {result.summary}",
                        action=action, ok=result.ok, status=status.value,
                        summary=result.summary, data=result.data)
        rc = 0 if status != RunStatus.FAILED else 1
        artifacts.set_status({RunStatus.SUCCEEDED: "successful", RunStatus.FAILED: "failed",
                              RunStatus.SKIPPED: "skipped", RunStatus.CANCELED: "canceled"}
                             [status], rc)
        # its words become the run's reason (the store, history, the log): redacted as a
        # playbook's are; its data is the plan's facts, redacted where it is written
        return StepResult(status, artifacts.redactor.text(result.summary), rc, result.data)
