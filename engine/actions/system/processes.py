"""``system.process_running``: the verify of ``process_restart``, under supervisor or
systemd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.system.local import is_local, not_here

# As process_restart.yml: one program, or one `group:name`; never `group:` (supervisorctl
# restarts the whole group for that), never an option.
PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*(:[A-Za-z0-9_.@-]+)?\Z")


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
