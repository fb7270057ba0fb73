"""``system.health``: the probe and verify of the host: disk use of the cleanup roots
and memory, against thresholds."""

from __future__ import annotations

from typing import Any

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult
from engine.actions.system.local import is_local, names, not_here, setting


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
