"""Deterministic actions for the engine's tests (loaded through ``action_modules``).

Each leaves a trace on disk (``trace`` param) so tests can count what really ran,
also across processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.actions.base import EMBEDDED, REMOTE, Action, ActionContext, ActionResult


def _trace(ctx: ActionContext, word: str) -> None:
    trace = ctx.params.get("trace")
    if trace:
        with open(trace, "a") as fh:
            fh.write(f"{word} {ctx.target} {os.getpid()}\n")


class Ok(Action):
    name, scope = "test.ok", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        _trace(ctx, "ok")
        return ActionResult(True, "ok")


class Fail(Action):
    name, scope = "test.fail", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        _trace(ctx, "fail")
        return ActionResult(False, "failed on purpose")


class Touch(Action):
    """Creates ``path``: the change a test can see (or see not happen)."""

    name, scope = "test.touch", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        Path(ctx.params["path"]).write_text("touched")
        _trace(ctx, "touch")
        return ActionResult(True, f"touched {ctx.params['path']}")

    def plan(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"would touch {ctx.params['path']}")


class FileExists(Action):
    """Verify: healthy while ``path`` exists."""

    name, scope = "test.file_exists", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        ok = Path(ctx.params["path"]).exists()
        return ActionResult(ok, "present" if ok else "absent")


class Sleep(Action):
    name, scope = "test.sleep", REMOTE
    timeout = 120.0

    def run(self, ctx: ActionContext) -> ActionResult:
        _trace(ctx, "sleep-start")
        ctx.cancel.wait(float(ctx.params.get("seconds", 1)))
        _trace(ctx, "sleep-end")
        return ActionResult(True, "slept")


class Bump(Action):
    """Embedded: increments the registered ``counter`` resource (a dict)."""

    name, scope, resource = "test.bump", EMBEDDED, "counter"

    def run(self, ctx: ActionContext) -> ActionResult:
        counter = ctx.resource("counter")
        counter["n"] = counter.get("n", 0) + 1
        return ActionResult(True, f"counter at {counter['n']}")


class Slow(Action):
    """Ignores cancel: shows the python executor's timeout."""

    name, scope = "test.slow", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        time.sleep(float(ctx.params.get("seconds", 5)))
        return ActionResult(True, "finally")


def register(registry) -> None:
    for action in (Ok(), Fail(), Touch(), FileExists(), Sleep(), Bump(), Slow()):
        registry.register(action)
