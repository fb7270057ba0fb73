"""``recovery validate`` (runbooks, playbooks, inventory) and ``recovery runbooks``."""

from __future__ import annotations

import argparse
import os

from engine.cli.common import command, loaded_set_note, runbooks
from engine.cli.exits import OK, USAGE
from engine.cli.output import emit_json, err, out, table
from engine.context import EngineContext

VALIDATE_HELP = """\
Check everything the engine will read before it runs: every runbook (file:line:
reason for each bad one), every playbook in playbooks/ (ansible-playbook
--syntax-check), and the inventory (unknown or ambiguous names, malformed endpoints).
Warns (without failing) where one runbook's matchers provably cover another's and the
priorities tie (the file name decides) or the covered runbook never wins.

exit codes: 0 all valid, 2 something is invalid (each problem printed) or the
configuration itself cannot be read: both are configuration errors. Where a service
runs, `recovery reload` puts the files in force there (validate only reads them).
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "validate", parents, help="check runbooks, playbooks and the inventory",
                description=VALIDATE_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_validate, housekeeping=False)  # reads files, changes nothing

    p = sub.add_parser("runbooks", parents=parents, help="the loaded runbooks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_runbooks)


def cmd_validate(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.runbooks.loaded_set import SetPaths
    from engine.runbooks.validation import validate_set

    found = validate_set(SetPaths.of(ctx.config), known_actions=ctx.registry.catalogue(),
                         degraded_modes=ctx.config.degraded_modes, redactor=ctx.redactor)
    if args.json:
        emit_json(found.to_dict())
        return USAGE if found.errors else OK
    for line in found.errors:
        out(line)
    for line in found.warnings:
        err(f"warning: {line}")
    out(f"{found.summary}: {'valid' if not found.errors else 'INVALID'}")
    if (note := loaded_set_note(ctx)) is not None:
        err(note)
    return USAGE if found.errors else OK


def cmd_runbooks(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.orchestration.planner import approval_terms

    loaded = runbooks(ctx)
    rows = [{
        "name": rb.name, "component": rb.component, "mode": rb.mode.value,
        "priority": rb.priority.name.lower(), "file": rb.path,
        "description": rb.description,
        "strategies": [{"name": s.name, "kind": s.kind, "runs": s.playbook or s.action,
                        "approval": s.approval or rb.mode.value == "approve",
                        **approval_terms(s), "when": list(s.when)} for s in rb.strategies],
        "degraded_mode": rb.degraded_mode.name if rb.degraded_mode else None,
        "cooldown": {"max_attempts": rb.cooldown.max_attempts, "window": rb.cooldown.window,
                     "after_failure": rb.cooldown.after_failure},
    } for rb in loaded]
    if args.json:
        emit_json(rows)
        return OK
    out(table(rows, [
        ("NAME", lambda r: r["name"]),
        ("COMPONENT", lambda r: r["component"]),
        ("MODE", lambda r: r["mode"]),
        ("PRIORITY", lambda r: r["priority"]),
        ("STRATEGIES (* = approval, ? = by condition)", lambda r: ", ".join(
            s["name"] + ("*" if s["approval"] else "?" if s.get("approval_when") else "")
            for s in r["strategies"])),
        ("FILE", lambda r: os.path.relpath(r["file"]) if os.path.isabs(r["file"])
         else r["file"]),
    ], last_width=200, empty="no runbooks"))
    return OK
