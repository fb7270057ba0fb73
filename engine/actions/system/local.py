"""Which targets the host actions may read (this machine only: psutil and subprocesses
see no other), and where a step's settings come from: the runbook's ``with:``, else the
target's inventory variables, never alert labels."""

from __future__ import annotations

from typing import Any

from engine.actions.base import ActionContext, ActionResult

LOCAL_TARGETS = {"localhost", "127.0.0.1", "::1"}
LOCAL_CONNECTIONS = {"local", "ansible.builtin.local"}


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
