"""Host actions with psutil: the machine this process runs on.

psutil reads *this* machine only, so every action here acts or reports only for a
local target (``localhost``, or a host with ``ansible_connection: local``); for another
host it is `skipped` with the reason (host-level changes there are playbooks:
``disk_cleanup.yml``, ``process_restart.yml``). What they act on comes from the
inventory (host vars) or the runbook's ``with:``, never from alert labels.

The verify of a playbook step on another host: with ``with: {remote: playbook}`` (set
by the runbook on disk_cleanup's and process_restart's verify only) ``system.health``
and ``system.process_running`` pass for a non-local target and say that the playbook's
own check is the verification there (disk_cleanup fails unless df after the cleanup is
under the threshold; process_restart fails unless the program runs with a new pid). A
verify only runs after the step succeeded, so that check has passed; nothing watches
the host from here afterwards (no ``stable_for`` there). Never set it on a probe.

- ``system.health``: probe and verify: disk use of the cleanup roots and memory.
- ``system.memory_gc``: ``gc.collect()`` in the process that registered ``system``;
  elsewhere a report of the biggest processes only.
- ``system.file_handle_cleanup``: open files per process against RLIMIT_NOFILE; raises
  the soft limit to the hard one for the processes an operator allowed.
- ``system.file_handles``: its verify: no watched process near its limit.
- ``system.process_running``: the verify of ``process_restart``: the program runs.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult

LOCAL_TARGETS = {"localhost", "127.0.0.1", "::1"}
LOCAL_CONNECTIONS = {"local", "ansible.builtin.local"}
MIB = 1 << 20
# As process_restart.yml: one program, or one `group:name`; never `group:` (supervisorctl
# restarts the whole group for that), never an option.
PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*(:[A-Za-z0-9_.@-]+)?\Z")


def is_local(ctx: ActionContext) -> bool:
    """psutil and subprocesses see this machine: only a local target is theirs to read."""
    return (ctx.target in LOCAL_TARGETS
            or ctx.host_vars.get("ansible_connection") in LOCAL_CONNECTIONS)


def not_here(ctx: ActionContext, action: str, checked: str | None = None) -> ActionResult:
    """Skipped; or, as the verify of a playbook step (``remote: playbook``) whose playbook
    checks ``checked`` itself, passed on that check: psutil cannot see another host."""
    if ctx.params.get("remote") == "playbook" and checked:
        return ActionResult(True, (
            f"{ctx.target} is not this machine, so {action} cannot look; the step's "
            f"playbook checked {checked} on {ctx.target} itself and succeeded, which is all "
            "that verifies it there"), {"checked_by": "playbook", "target": ctx.target})
    return ActionResult(False, f"{action} reads this machine only, not {ctx.target} "
                        "(no ansible_connection: local)", not_applicable=True)


def setting(ctx: ActionContext, param: str, host_var: str, default: Any) -> Any:
    """The runbook's ``with:`` value, else the target's inventory variable, else a default."""
    if ctx.params.get(param) is not None:
        return ctx.params[param]
    value = ctx.host_vars.get(host_var)
    return default if value is None else value


def names(value: Any) -> list[str]:
    """A list of names from a list or one string (inventory values are either)."""
    if value is None or value == "":
        return []
    return [str(value)] if isinstance(value, (str, int)) else [str(v) for v in value]


class Health(Action):
    """Disk use of ``paths`` under ``max_disk_percent`` and memory under
    ``max_memory_percent``; ``checks`` picks ``disk``, ``memory`` or both.

    Paths default to the host's ``cleanup_roots`` (else ``/``), the disk threshold to
    its ``cleanup_max_usage_percent`` (else 90): the same measure as disk_cleanup.yml
    (used / (used + available), as df)."""

    name = "system.health"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import psutil

        checks = set(names(ctx.params.get("checks")) or ["disk", "memory"])
        if not checks <= {"disk", "memory"}:
            return ActionResult(False, f"unknown checks {sorted(checks - {'disk', 'memory'})}: "
                                "system.health checks disk and memory", not_applicable=True)
        if not is_local(ctx):   # disk_cleanup.yml measures df after it deleted; memory: nobody
            limit = setting(ctx, "max_disk_percent", "cleanup_max_usage_percent", 90)
            if checks == {"disk"} and float(limit) <= 0:
                # Threshold 0 ("every old match") is not checked by the playbook: nothing
                # measured the disk there, so this is no verified recovery.
                return ActionResult(False, f"{ctx.target} is not this machine and its "
                                    "cleanup threshold is 0, which disk_cleanup.yml does not "
                                    "check: nothing verified the disk there")
            return not_here(ctx, self.name, "that disk use is under the threshold after the "
                            "cleanup (df)" if checks == {"disk"} else None)
        problems, seen = [], {}
        data: dict[str, Any] = {}
        if "disk" in checks:
            limit = float(setting(ctx, "max_disk_percent", "cleanup_max_usage_percent", 90))
            for path in names(setting(ctx, "paths", "cleanup_roots", ["/"])):
                try:
                    usage = psutil.disk_usage(path)
                except OSError as exc:
                    problems.append(f"cannot measure {path}: {exc.strerror or exc}")
                    continue
                seen[path] = usage.percent
                if usage.percent >= limit:
                    problems.append(f"{path} at {usage.percent:.1f}% (limit {limit:g}%)")
            data.update(disk_percent=seen, max_disk_percent=limit)
        if "memory" in checks:
            memory = psutil.virtual_memory().percent
            limit = float(ctx.params.get("max_memory_percent", 95))
            if memory >= limit:
                problems.append(f"memory at {memory:.0f}% (limit {limit:g}%)")
            data.update(memory_percent=memory, max_memory_percent=limit)
        if problems:
            return ActionResult(False, "; ".join(problems), data)
        return ActionResult(True, f"{' and '.join(sorted(checks))} under the thresholds", data)

    plan = run


# -- memory ------------------------------------------------------------------------------
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


class MemoryGC(Action):
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

    def run(self, ctx: ActionContext) -> ActionResult:
        return self._act(ctx, collect=True)

    def plan(self, ctx: ActionContext) -> ActionResult:
        return self._act(ctx, collect=False)

    def _act(self, ctx: ActionContext, collect: bool) -> ActionResult:
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
        if not collect:
            return ActionResult(True, f"would gc.collect() in pid {process.pid} (RSS "
                                f"{before / MIB:.0f} MiB){seen}", data)
        collected = gc.collect()
        after = process.memory_info().rss
        data.update(collected=collected, rss_after=after, freed=before - after)
        return ActionResult(True, f"collected {collected} objects in pid {process.pid}; RSS "
                            f"{before / MIB:.0f} MiB -> {after / MIB:.0f} MiB{seen}", data)


# -- file handles ------------------------------------------------------------------------
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


class FileHandleCleanup(Action):
    """Open files per process against RLIMIT_NOFILE; where an operator allowed it
    (``raise_for`` / host ``fd_raise_processes``: process names), raise a process's soft
    limit up to its hard limit (prlimit). The rest is reported only.

    What it cannot do: close another process's leaked descriptors (nobody can from
    outside), or go past the hard limit (that needs a restart with a new limit).
    Raising the soft limit buys time for a leak; it does not stop it.
    """

    name = "system.file_handle_cleanup"
    scope = REMOTE
    timeout = 30.0

    def run(self, ctx: ActionContext) -> ActionResult:
        return self._act(ctx, change=True)

    def plan(self, ctx: ActionContext) -> ActionResult:
        return self._act(ctx, change=False)

    def _act(self, ctx: ActionContext, change: bool) -> ActionResult:
        import psutil

        if not is_local(ctx):
            return not_here(ctx, self.name)
        _watch, warn, allowed = fd_settings(ctx)
        _usage, hot, _warn = fd_report(ctx)
        if not hot:
            return ActionResult(True, f"no process at {warn:g}% of its open-file limit: "
                                "nothing to raise", {"hot": []})
        done, left = [], []
        for use in hot:
            if use.name not in allowed:
                left.append(f"{use.describe()}: not in fd_raise_processes, report only")
            elif use.soft is None or use.hard is not None and use.soft >= use.hard:
                left.append(f"{use.describe()}: already at its hard limit (restart it "
                            "with a higher limit)")
            elif not change:
                done.append(f"would raise {use.name} (pid {use.pid}) soft limit "
                            f"{use.soft} -> {use.hard or 'unlimited'}")
            else:
                new = use.hard if use.hard is not None else psutil.RLIM_INFINITY
                try:
                    psutil.Process(use.pid).rlimit(psutil.RLIMIT_NOFILE, (new, new))
                except (psutil.Error, OSError) as exc:
                    left.append(f"{use.describe()}: could not raise its limit: {exc}")
                    continue
                done.append(f"raised {use.name} (pid {use.pid}) soft limit {use.soft} -> "
                            f"{use.hard or 'unlimited'} ({use.fds} open)")
        data = {"hot": [asdict(u) for u in hot], "changed": done, "left": left}
        summary = "; ".join(done + left)
        if change and left:
            return ActionResult(False, summary, data)
        return ActionResult(True, summary, data)


# -- processes ---------------------------------------------------------------------------
def supervisorctl(ctx: ActionContext) -> list[str]:
    """``supervisorctl [-c conf]`` as the playbook runs it (host vars), found on PATH or
    next to this Python (the engine's venv)."""
    binary = str(ctx.host_vars.get("supervisorctl_bin") or "supervisorctl")
    local = Path(sys.executable).parent / binary
    found = shutil.which(binary) or (str(local) if os.sep not in binary and local.is_file()
                                     else binary)
    conf = ctx.host_vars.get("supervisor_config")
    return [found, *(["-c", str(conf)] if conf else [])]


class ProcessRunning(Action):
    """Verify of ``process_restart``: the inventory's ``program`` runs, under supervisor
    (``supervisorctl status``: RUNNING) or systemd (active, with a main pid).

    That it is a *new* process is checked by the playbook itself (pid before and
    after); this check, polled for ``stable_for``, catches a program that comes back
    and dies again. It cannot tell whether the program does useful work. On another
    host (``remote: playbook``) the playbook's new-pid check is all there is."""

    name = "system.process_running"
    scope = REMOTE
    timeout = 15.0

    def run(self, ctx: ActionContext) -> ActionResult:
        if not is_local(ctx):
            return not_here(ctx, self.name, "that the program runs again with a new pid")
        program = str(ctx.host_vars.get("program") or "")
        if not PROGRAM_NAME.match(program) or program == "all":
            return ActionResult(False, f"no valid `program` for {ctx.target} in the inventory",
                                not_applicable=True)
        manager = str(ctx.host_vars.get("service_manager") or "supervisor")
        if manager == "systemd":
            argv = ["systemctl", "show", "--property=ActiveState", "--property=MainPID", "--",
                    program]
        elif manager == "supervisor":
            argv = [*supervisorctl(ctx), "status", program]
        else:
            return ActionResult(False, f"unknown service_manager {manager!r}",
                                not_applicable=True)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return ActionResult(False, f"{argv[0]} failed: {exc}")
        out = (done.stdout or done.stderr).strip()
        if manager == "systemd":
            shown = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            pid = int(shown.get("MainPID", "0") or 0)
            ok = shown.get("ActiveState") == "active" and pid > 0
            state = shown.get("ActiveState", "unknown")
        else:
            match = re.search(r"\bRUNNING\s+pid (\d+)", out)
            pid = int(match.group(1)) if match else 0
            ok = match is not None
            state = out.split()[1] if len(out.split()) > 1 else out or f"rc {done.returncode}"
        data = {"program": program, "manager": manager, "pid": pid, "state": state}
        if ok:
            return ActionResult(True, f"{program} is running (pid {pid})", data)
        return ActionResult(False, f"{program} is not running: {out[:200]}", data)

    plan = run


def register(registry) -> None:
    for action in (Health(), MemoryGC(), FileHandles(), FileHandleCleanup(),
                   ProcessRunning()):
        registry.register(action)
