"""Deterministic python actions for the CLI tests (``action_modules: [cli_actions]``).

Remote scope, so they run from the CLI where nothing is registered in-process:
``test.ok`` succeeds, ``test.fail`` fails, ``test.touch`` creates ``with: {path}``,
``test.file_exists`` (a verify) checks it, ``test.sleep`` waits ``with: {seconds}``
(cancel-aware), ``test.lock_holder`` holds the target's lock until ``with: {release}``
exists, so another process can see a lock held.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult


class Ok(Action):
    name = "test.ok"
    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"ok on {ctx.target}")


class Fail(Action):
    name = "test.fail"
    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(False, f"failed on {ctx.target} (on purpose)")


class Touch(Action):
    name = "test.touch"
    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        path = Path(str(ctx.params["path"]))
        path.write_text(ctx.target)
        return ActionResult(True, f"wrote {path.name}")

    def plan(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"would write {Path(str(ctx.params['path'])).name}")


class FileExists(Action):
    name = "test.file_exists"
    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        path = Path(str(ctx.params.get("path", "")))
        if path.exists():
            return ActionResult(True, f"{path.name} exists")
        return ActionResult(False, f"{path.name} missing")


class Sleep(Action):
    name = "test.sleep"
    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        seconds = float(ctx.params.get("seconds", 1))
        marker = ctx.params.get("started")
        if marker:
            Path(str(marker)).write_text(str(os.getpid()))
        for i in range(int(seconds * 10)):
            if ctx.cancel.wait(0.1):
                return ActionResult(False, "canceled")
            if i % 5 == 0:
                ctx.log(f"tick {i // 10}")
        return ActionResult(True, f"slept {seconds:g}s")


class WaitForFile(Action):
    """Runs (holding the target's lock) until ``release`` exists or ``seconds`` pass."""

    name = "test.wait_for_file"
    scope = REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        release = Path(str(ctx.params["release"]))
        started = ctx.params.get("started")
        if started:
            Path(str(started)).write_text(str(os.getpid()))
        deadline = time.monotonic() + float(ctx.params.get("seconds", 30))
        while time.monotonic() < deadline:
            if release.exists() or ctx.cancel.wait(0.05):
                return ActionResult(True, "released")
        return ActionResult(False, "never released")


def register(registry) -> None:
    for cls in (Ok, Fail, Touch, FileExists, Sleep, WaitForFile):
        registry.register(cls())
