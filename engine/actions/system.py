"""Host actions with psutil. ``health`` is the probe and verify: disk and memory of the
machine this process runs on, so it is only meaningful for ``localhost`` targets."""

from __future__ import annotations

import gc

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
)

LOCAL_TARGETS = {"localhost", "127.0.0.1", "::1"}


class Health(Action):
    """Disk use of ``paths`` under ``max_disk_percent``, memory under ``max_memory_percent``."""

    name = "system.health"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import psutil

        if ctx.target not in LOCAL_TARGETS and ctx.host_vars.get("ansible_connection") != "local":
            return ActionResult(False, f"system.health reads this machine only, not {ctx.target}",
                                not_applicable=True)
        problems, seen = [], {}
        for path in ctx.params.get("paths", ["/"]):
            usage = psutil.disk_usage(path)
            seen[path] = usage.percent
            if usage.percent > float(ctx.params.get("max_disk_percent", 90)):
                problems.append(f"{path} at {usage.percent:.0f}%")
        memory = psutil.virtual_memory().percent
        if memory > float(ctx.params.get("max_memory_percent", 95)):
            problems.append(f"memory at {memory:.0f}%")
        data = {"disk_percent": seen, "memory_percent": memory}
        if problems:
            return ActionResult(False, "; ".join(problems), data)
        return ActionResult(True, "disk and memory under their thresholds", data)

    plan = run


class MemoryGC(Action):
    """``gc.collect()`` in the process that registered itself as ``system``. It frees
    cyclic garbage only: it cannot shrink a leak that is still referenced."""

    name = "system.memory_gc"
    scope = EMBEDDED
    resource = "system"

    def run(self, ctx: ActionContext) -> ActionResult:
        import psutil

        process = psutil.Process()
        before = process.memory_info().rss
        collected = gc.collect()
        after = process.memory_info().rss
        return ActionResult(True, f"collected {collected} objects; RSS {before >> 20} MiB -> "
                            f"{after >> 20} MiB", {"rss_before": before, "rss_after": after})

    def plan(self, ctx: ActionContext) -> ActionResult:
        return ActionResult(True, f"would gc.collect() in pid {__import__('os').getpid()}")


def register(registry) -> None:
    registry.register(Health())
    registry.register(MemoryGC())
    registry.register(NotImplementedAction("system.file_handle_cleanup", REMOTE))
