"""``system.memory_gc``: collect the garbage of the process that registered ``system``,
and report what other processes hold."""

from __future__ import annotations

import gc
import os
from typing import Any

from engine.actions.base import REMOTE, ActionContext, ActionResult, PlannedAction
from engine.actions.system.local import is_local, names, not_here, setting

MIB = 1 << 20


def rss_report(wanted: list[str], top: int = 5) -> list[dict[str, Any]]:
    """RSS of the processes named (by pid or name) in ``wanted``, else the ``top`` biggest."""
    import psutil

    rows = []
    for proc in psutil.process_iter(["pid", "name", "memory_info"]):
        info = proc.info
        if info["memory_info"] is None:
            continue
        if wanted and str(info["pid"]) not in wanted and info["name"] not in wanted:
            continue
        rows.append({"pid": info["pid"], "name": info["name"],
                     "rss": info["memory_info"].rss})
    rows.sort(key=lambda r: r["rss"], reverse=True)
    return rows if wanted else rows[:top]


def describe_rss(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['name']} (pid {r['pid']}) {r['rss'] / MIB:.0f} MiB" for r in rows)


class MemoryGC(PlannedAction):
    """``gc.collect()`` in the process that registered itself as ``system``, with its RSS
    before and after. It frees cyclic garbage only: it cannot shrink a leak that is
    still referenced, and Python may keep freed small objects' memory for reuse.

    Another process's garbage is out of reach: where nothing is registered (the
    service, the CLI) it only reports the RSS of the processes named in ``report`` (or
    the host's ``memory_report_processes``; pids or names), else the five biggest, and
    the step is `skipped`: a report fixes nothing. Not scoped ``embedded`` only so that
    the report can run where nothing is registered; it collects only where something is.
    """

    name = "system.memory_gc"
    scope = REMOTE
    resource = "system"

    def act(self, ctx: ActionContext, change: bool) -> ActionResult:
        import psutil

        registered = ctx.resource(self.needed_resource()) is not None
        if not is_local(ctx) and not registered:
            return not_here(ctx, self.name)
        others: list[dict[str, Any]] = []
        if is_local(ctx):   # another host's processes are not ours to read
            wanted = names(setting(ctx, "report", "memory_report_processes", None))
            others = [r for r in rss_report(wanted) if r["pid"] != os.getpid()]
        data: dict[str, Any] = {"report": others}
        seen = f"; other processes (report only): {describe_rss(others)}" if others else ""
        if not registered:
            return ActionResult(False, "nothing registered as 'system' in this process, so no "
                                f"garbage of ours to collect{seen}", data, not_applicable=True)
        process = psutil.Process()
        before = process.memory_info().rss
        data.update(pid=process.pid, rss_before=before)
        if not change:
            return ActionResult(True, f"would gc.collect() in pid {process.pid} (RSS "
                                f"{before / MIB:.0f} MiB){seen}", data)
        collected = gc.collect()
        after = process.memory_info().rss
        data.update(collected=collected, rss_after=after, freed=before - after)
        return ActionResult(True, f"collected {collected} objects in pid {process.pid}; RSS "
                            f"{before / MIB:.0f} MiB -> {after / MIB:.0f} MiB{seen}", data)
