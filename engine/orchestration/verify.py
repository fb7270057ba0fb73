"""Did the fix hold? A polling check: initial delay, interval, deadline, stable_for.

Healthy once is not enough: the check must pass continuously for ``stable_for``
seconds before ``deadline``. A check that is not applicable (not implemented, no
endpoint) fails at once: an unverifiable fix is not a verified one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.actions.base import ActionContext
from engine.artifacts import RunArtifacts
from engine.executors.python import PythonExecutor
from engine.runbooks.model import Verify


def _action(executor: PythonExecutor, name: str) -> object:
    try:
        return executor.registry.get(name)
    except KeyError:
        return None


def verify(spec: Verify, ctx: ActionContext, executor: PythonExecutor,
           artifacts: RunArtifacts, cancel: threading.Event | None = None,
           clock: Callable[[], float] = time.monotonic) -> tuple[bool, str]:
    cancel = cancel or threading.Event()
    start = clock()
    deadline = start + spec.deadline
    if spec.initial_delay and cancel.wait(spec.initial_delay):
        return False, "verify canceled"
    healthy_since: float | None = None
    checks = 0
    last = "no check ran"
    while True:
        checks += 1
        # One check may take its action's own timeout, but never past the deadline.
        left = max(0.5, deadline - clock())
        action_timeout = getattr(_action(executor, spec.action), "timeout", left)
        result = executor.call(spec.action, ctx, timeout=min(action_timeout, left))
        now = clock()
        artifacts.event("verify_check", stdout=f"verify {spec.action}: "
                        f"{'ok' if result.ok else 'failing'}: {result.summary}",
                        action=spec.action, ok=result.ok, summary=result.summary,
                        check=checks)
        last = result.summary
        if result.not_applicable:
            return False, f"verify {spec.action} cannot run: {result.summary}"
        if result.ok:
            healthy_since = healthy_since if healthy_since is not None else now
            if now - healthy_since >= spec.stable_for:
                return True, f"verified by {spec.action} ({checks} checks): {result.summary}"
        else:
            healthy_since = None
        if now >= deadline:
            break
        if cancel.wait(min(spec.interval, max(0.0, deadline - now))):
            return False, "verify canceled"
    return False, (f"verify {spec.action} did not pass for {spec.stable_for:g}s within "
                   f"{spec.deadline:g}s: {last}")
