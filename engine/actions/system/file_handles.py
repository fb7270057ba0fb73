"""Open file descriptors against RLIMIT_NOFILE: the verify ``system.file_handles`` and
the strategy ``system.file_handle_cleanup`` (close what an embedding application
registered as closable and idle; raise a soft limit where an operator allowed it)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult, PlannedAction
from engine.actions.system.closables import Closables
from engine.actions.system.local import is_local, names, not_here, setting


@dataclass
class FdUse:
    """Open file descriptors of one process against its RLIMIT_NOFILE."""

    pid: int
    name: str
    fds: int
    soft: int | None          # None: unlimited
    hard: int | None

    @property
    def percent(self) -> float:
        return 100.0 * self.fds / self.soft if self.soft else 0.0

    def describe(self) -> str:
        soft = "unlimited" if self.soft is None else str(self.soft)
        return f"{self.name} (pid {self.pid}) {self.fds}/{soft} ({self.percent:.0f}%)"


def _limit(value: int) -> int | None:
    import psutil

    return None if value == psutil.RLIM_INFINITY or value < 0 else value


def fd_usage(watch: list[str]) -> list[FdUse]:
    """Every process (or those named in ``watch``) that we may read, busiest first."""
    import psutil

    rows = []
    for proc in psutil.process_iter(["pid", "name"]):
        if watch and proc.info["name"] not in watch and str(proc.info["pid"]) not in watch:
            continue
        try:
            soft, hard = proc.rlimit(psutil.RLIMIT_NOFILE)
            rows.append(FdUse(proc.pid, proc.info["name"], proc.num_fds(), _limit(soft),
                              _limit(hard)))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    rows.sort(key=lambda r: r.percent, reverse=True)
    return rows


def fd_settings(ctx: ActionContext) -> tuple[list[str], float, list[str]]:
    """Which processes to watch, the warning threshold, who may have the limit raised."""
    watch = names(setting(ctx, "processes", "fd_watch_processes", None))
    warn = float(setting(ctx, "warn_percent", "fd_warn_percent", 80))
    allowed = names(setting(ctx, "raise_for", "fd_raise_processes", None))
    return watch, warn, allowed


def fd_report(ctx: ActionContext) -> tuple[list[FdUse], list[FdUse], float]:
    watch, warn, _allowed = fd_settings(ctx)
    usage = fd_usage(watch)
    return usage, [u for u in usage if u.percent >= warn], warn


class FileHandles(Action):
    """Verify: no watched process (``processes`` / host ``fd_watch_processes``; all by
    default) uses ``warn_percent`` (host ``fd_warn_percent``, 80) or more of its soft
    RLIMIT_NOFILE. Processes we may not read are left out."""

    name = "system.file_handles"
    scope = REMOTE
    timeout = 20.0

    def run(self, ctx: ActionContext) -> ActionResult:
        if not is_local(ctx):
            return not_here(ctx, self.name)
        usage, hot, warn = fd_report(ctx)
        data = {"hot": [asdict(u) for u in hot], "processes": len(usage)}
        if hot:
            return ActionResult(False, f"{len(hot)} process(es) at {warn:g}% or more of their "
                                f"open-file limit: {'; '.join(u.describe() for u in hot[:5])}",
                                data)
        busiest = f" (busiest: {usage[0].describe()})" if usage else ""
        return ActionResult(True, f"no process at {warn:g}% of its open-file limit{busiest}",
                            data)

    plan = run


class FileHandleCleanup(PlannedAction):
    """Gives descriptors back, then raises limits where an operator allowed it.

    1. In an application that embeds the engine and registered closables
       (``Recovery.register_closable``; engine/actions/system/closables.py): closes the
       idle ones in that process, counting the descriptors each close gave back
       (psutil ``num_fds``), and leaves the busy ones open, naming them.
    2. Then open files per process against RLIMIT_NOFILE; where an operator allowed it
       (``raise_for`` / host ``fd_raise_processes``: process names), raises a process's
       soft limit up to its hard limit (prlimit). The rest is reported only.

    What it cannot do: close another process's leaked descriptors (nobody can from
    outside), or go past the hard limit (that needs a restart with a new limit).
    Raising the soft limit buys time for a leak; it does not stop it.
    """

    name = "system.file_handle_cleanup"
    scope = REMOTE
    timeout = 30.0

    def act(self, ctx: ActionContext, change: bool) -> ActionResult:
        closables = ctx.resource(Closables.RESOURCE)
        closables = closables if isinstance(closables, Closables) else None
        if not is_local(ctx) and closables is None:
            return not_here(ctx, self.name)
        closed = closables.close_idle(change, own_fds) if closables is not None else []
        data: dict[str, Any] = {"closables": [asdict(c) for c in closed], "pid": os.getpid(),
                                "fds": own_fds()}
        closing = [c.describe() for c in closed]
        failed = [c for c in closed if c.state == "failed"]
        if not is_local(ctx):   # another host's limits are not ours to read
            return ActionResult(not failed, "; ".join(closing) or "nothing to close", data)
        _watch, warn, allowed = fd_settings(ctx)
        _usage, hot, _warn = fd_report(ctx)
        data["hot"] = [asdict(u) for u in hot]
        if not hot:
            return ActionResult(not (change and failed), "; ".join([*closing, (
                f"no process at {warn:g}% of its open-file limit: nothing to raise")]), data)
        pending = [c for c in closed if c.state == "would_close"]
        done, left = raise_limits(hot, allowed, change, warn if pending else None)
        data.update(changed=done, left=left)
        summary = "; ".join(closing + done + left)
        return ActionResult(not (change and (left or failed)), summary, data)


def own_fds() -> int:
    """This process's open descriptors (what a closable's close gives back)."""
    import psutil

    return psutil.Process().num_fds()


def raise_limits(hot: list[FdUse], allowed: list[str], change: bool,
                 closing_first: float | None) -> tuple[list[str], list[str]]:
    """Raise the soft limit of each hot, allowed process to its hard limit (``change``;
    else say so). ``closing_first``: in check mode, this process's idle closables would
    be closed before, so its own raise is conditional. Returns (done, left)."""
    import psutil

    done, left = [], []
    for use in hot:
        if use.name not in allowed:
            left.append(f"{use.describe()}: not in fd_raise_processes, report only")
        elif use.soft is None or use.hard is not None and use.soft >= use.hard:
            left.append(f"{use.describe()}: already at its hard limit (restart it "
                        "with a higher limit)")
        elif not change:
            unless = (f" unless closing its idle closables brings it under "
                      f"{closing_first:g}%" if closing_first is not None
                      and use.pid == os.getpid() else "")
            done.append(f"would raise {use.name} (pid {use.pid}) soft limit "
                        f"{use.soft} -> {use.hard or 'unlimited'}{unless}")
        else:
            new = use.hard if use.hard is not None else psutil.RLIM_INFINITY
            try:
                psutil.Process(use.pid).rlimit(psutil.RLIMIT_NOFILE, (new, new))
            except (psutil.Error, OSError) as exc:
                left.append(f"{use.describe()}: could not raise its limit: {exc}")
                continue
            done.append(f"raised {use.name} (pid {use.pid}) soft limit {use.soft} -> "
                        f"{use.hard or 'unlimited'} ({use.fds} open)")
    return done, left
