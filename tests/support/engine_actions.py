"""Deterministic actions for the tests (``action_modules: [tests.support.engine_actions]``).

Remote scope unless said, so they run from the CLI where nothing is registered:
``test.ok`` succeeds, ``test.fail`` fails, ``test.touch`` creates ``with: {path}`` (or
``with: {dir}``: the file named after the target there),
``test.file_exists`` (a verify) checks it (or ``with: {dir}``: the file named after the
target there), ``test.sleep`` waits ``with: {seconds}``
(cancel-aware), ``test.wait_for_file`` holds the target's lock until ``with: {release}``
exists, ``test.bump`` (embedded) increments a registered ``counter``, ``test.slow``
ignores cancel, ``test.later`` is not implemented (its step is skipped),
``test.sized`` deletes ``with: {path}`` and its plan reports the file's size (the fact
``file_bytes``, for approval conditions; no such file: the plan fails),
``test.act_on_host`` appends ``<tag> act`` to ``with: {log}`` every 0.05 s until
``release`` exists or it is canceled, doing nothing while ``paused`` holds its tag (a
stalled process; the tag: ``with: {tag}``, else the context's resource ``replica``).
A ``trace``
param appends what ran to a file, so tests can count what really ran, also across
processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
)


def _trace(ctx: ActionContext, word: str) -> None:
    trace = ctx.params.get("trace")
    if trace:
        with open(trace, "a") as fh:
            fh.write(f"{word} {ctx.target} {os.getpid()}\n")


def _mark_started(ctx: ActionContext) -> None:
    started = ctx.params.get("started")
    if started:
        Path(str(started)).write_text(str(os.getpid()))


class Ok(Action):
    name, scope = "test.ok", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        _trace(ctx, "ok")
        return ActionResult(True, f"ok on {ctx.target}")


class Fail(Action):
    name, scope = "test.fail", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        _trace(ctx, "fail")
        return ActionResult(False, f"failed on {ctx.target} (on purpose)")


class Touch(Action):
    """Creates ``path`` (or ``dir``/<target>): the change a test can see (or see not happen)."""

    name, scope = "test.touch", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        folder = ctx.params.get("dir")
        path = Path(str(folder), ctx.target) if folder else Path(str(ctx.params["path"]))
        path.write_text(ctx.target)
        _trace(ctx, "touch")
        return ActionResult(True, f"touched {path}")

    def plan(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"would touch {ctx.params.get('path') or ctx.target}")


class FileExists(Action):
    """Verify: healthy while ``path`` (or ``dir``/<target>) exists."""

    name, scope = "test.file_exists", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        folder = ctx.params.get("dir")
        path = Path(str(folder), ctx.target) if folder else Path(str(ctx.params.get("path", "")))
        if path.exists():
            return ActionResult(True, f"{path.name} exists")
        return ActionResult(False, f"{path.name} missing")


class Sleep(Action):
    name, scope = "test.sleep", REMOTE
    timeout = 120.0

    def run(self, ctx: ActionContext) -> ActionResult:
        seconds = float(ctx.params.get("seconds", 1))
        _mark_started(ctx)
        _trace(ctx, "sleep-start")
        for i in range(int(seconds * 10)):
            if ctx.cancel.wait(0.1):
                _trace(ctx, "sleep-stopped")
                return ActionResult(False, "canceled")
            if i % 5 == 0:
                ctx.log(f"tick {i // 10}")
        _trace(ctx, "sleep-end")
        return ActionResult(True, f"slept {seconds:g}s")


class WaitForFile(Action):
    """Runs (holding the target's lock) until ``release`` exists or ``seconds`` pass."""

    name, scope = "test.wait_for_file", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        release = Path(str(ctx.params["release"]))
        _mark_started(ctx)
        deadline = time.monotonic() + float(ctx.params.get("seconds", 30))
        while time.monotonic() < deadline:
            if release.exists() or ctx.cancel.wait(0.05):
                return ActionResult(True, "released")
        return ActionResult(False, "never released")


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


class Sized(Action):
    """Deletes ``path``; its plan reports ``file_bytes``, the file's size (traced "plan")."""

    name, scope = "test.sized", REMOTE
    reports = {"file_bytes": "bytes"}  # noqa: RUF012 - read only, as Action.reports

    def run(self, ctx: ActionContext) -> ActionResult:
        Path(str(ctx.params["path"])).unlink()
        _trace(ctx, "sized")
        return ActionResult(True, f"deleted {ctx.params['path']}")

    def plan(self, ctx: ActionContext) -> ActionResult:
        _trace(ctx, "plan")
        path = Path(str(ctx.params["path"]))
        if not path.exists():
            return ActionResult(False, f"no file {path}")
        return ActionResult(True, f"would delete {path}",
                            {"facts": {"file_bytes": path.stat().st_size}})


class ActOnHost(Action):
    """Acts on its target, a line ``<tag> act`` in ``log`` each time, until ``release``
    exists or it is canceled (checked before each act); while the file ``paused`` holds
    its ``tag`` it does nothing, as a stopped process does (``<tag> paused`` once)."""

    name, scope = "test.act_on_host", REMOTE

    def run(self, ctx: ActionContext) -> ActionResult:
        tag = str(ctx.params.get("tag") or ctx.resources.get("replica"))
        log = Path(str(ctx.params["log"]))
        release, paused = Path(str(ctx.params["release"])), Path(str(ctx.params["paused"]))
        said_paused = False
        deadline = time.monotonic() + float(ctx.params.get("seconds", 30))
        while time.monotonic() < deadline:
            if paused.exists() and paused.read_text() == tag:
                if not said_paused:
                    _append(log, f"{tag} paused")
                    said_paused = True
                time.sleep(0.02)
                continue
            if ctx.cancel.is_set():
                _append(log, f"{tag} canceled")
                return ActionResult(False, "canceled")
            if release.exists():
                return ActionResult(True, "released")
            _append(log, f"{tag} act")
            time.sleep(0.05)
        return ActionResult(False, "never released")


def _append(path: Path, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")


def register(registry) -> None:
    for cls in (Ok, Fail, Touch, FileExists, Sleep, WaitForFile, Bump, Slow, Sized, ActOnHost):
        registry.register(cls())
    registry.register(NotImplementedAction("test.later"))   # a strategy not written yet
