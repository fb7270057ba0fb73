"""``recovery validate`` (runbooks, playbooks, inventory) and ``recovery runbooks``."""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine.cli.common import OK, USAGE, runbooks
from engine.cli.output import emit_json, err, out, table
from engine.context import EngineContext

VALIDATE_HELP = """\
Check everything the engine will read before it runs: every runbook (file:line:
reason for each bad one), every playbook in playbooks/ (ansible-playbook
--syntax-check), and the inventory (unknown or ambiguous names, malformed endpoints).
Warns (without failing) where one runbook's matchers provably cover another's and the
priorities tie (the file name decides) or the covered runbook never wins.

exit codes: 0 all valid, 2 something is invalid (each problem printed) or the
configuration itself cannot be read: both are configuration errors.
"""
PLAYBOOK_SUFFIXES = (".yml", ".yaml")


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", parents=parents,
                       help="check runbooks, playbooks and the inventory",
                       description=VALIDATE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_validate, housekeeping=False)  # reads files, changes nothing

    p = sub.add_parser("runbooks", parents=parents, help="the loaded runbooks")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_runbooks)


def playbook_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(PLAYBOOK_SUFFIXES) and not p.name.startswith(".")
                  and p.is_file())


def cmd_validate(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.overlaps import overlaps
    from engine.runbook_loader import RunbookError, check_runbooks

    config = ctx.config
    errors: list[str] = []
    warnings: list[str] = []
    try:
        loaded, bad = check_runbooks(config.runbooks_dir, known_actions=ctx.registry.names(),
                                     playbooks_dir=config.playbooks_dir)
    except RunbookError as exc:  # the folder itself is missing
        loaded, bad = [], [exc]
    runbook_errors = [str(e) for e in bad]
    errors.extend(runbook_errors)
    modes = set(config.degraded_modes)
    for rb in loaded:
        if rb.degraded_mode is not None and rb.degraded_mode.name not in modes:
            warnings.append(f"{rb.path}: degraded mode {rb.degraded_mode.name!r} has no "
                            "capability matrix in recovery.yml (degraded_modes)")
    overlapping = overlaps(loaded)
    warnings.extend(o.describe() for o in overlapping)

    names = playbook_files(config.playbooks_dir)
    playbook_errors: dict[str, str] = {}
    if not config.playbooks_dir.is_dir():
        errors.append(f"{config.playbooks_dir}: playbooks directory does not exist")
    elif names:
        with ThreadPoolExecutor(max_workers=min(4, len(names), os.cpu_count() or 2)) as pool:
            for name, problem in zip(names, pool.map(_syntax_check(ctx), names), strict=True):
                if problem:
                    playbook_errors[name] = problem
                    first = problem.strip().splitlines()
                    errors.append(f"{config.playbooks_dir / name}:1: syntax check failed: "
                                  + " / ".join(line.strip() for line in first[:4]))

    inventory_problems = ctx.inventory.validate()
    errors.extend(f"{config.inventory_path}: {p}" for p in inventory_problems)

    if args.json:
        emit_json({
            "ok": not errors,
            "runbooks": {"loaded": [rb.name for rb in loaded], "errors": runbook_errors},
            "playbooks": {"checked": names, "errors": playbook_errors},
            "inventory": {"path": str(config.inventory_path), "problems": inventory_problems},
            "overlaps": [{"runbook": o.covered.name, "covered_by": o.by.name,
                          "winner": o.winner.name, "example": o.example}
                         for o in overlapping],
            "warnings": warnings,
        })
        return USAGE if errors else OK
    for line in errors:
        out(line)
    for line in warnings:
        err(f"warning: {line}")
    inv = "ok" if not inventory_problems else f"{len(inventory_problems)} problem(s)"
    summary = (f"{len(loaded)} runbooks" + (f" ({len(runbook_errors)} invalid)"
                                              if runbook_errors else "")
               + f", {len(names)} playbooks" + (f" ({len(playbook_errors)} invalid)"
                                                 if playbook_errors else "")
               + f", inventory: {inv}")
    out(f"{summary}: {'valid' if not errors else 'INVALID'}")
    return USAGE if errors else OK


def _syntax_check(ctx: EngineContext) -> Any:
    ansible = ctx.ansible  # built once, before the threads

    def check(name: str) -> str | None:
        try:
            return ansible.syntax_check(name)
        except (OSError, ValueError) as exc:
            return str(exc)
    return check


def cmd_runbooks(ctx: EngineContext, args: argparse.Namespace) -> int:
    loaded = runbooks(ctx)
    rows = [{
        "name": rb.name, "component": rb.component, "mode": rb.mode.value,
        "priority": rb.priority.name.lower(), "file": rb.path,
        "description": rb.description,
        "strategies": [{"name": s.name, "kind": s.kind, "runs": s.playbook or s.action,
                        "approval": s.approval or rb.mode.value == "approve",
                        "when": list(s.when)} for s in rb.strategies],
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
        ("STRATEGIES (* = approval)", lambda r: ", ".join(
            s["name"] + ("*" if s["approval"] else "") for s in r["strategies"])),
        ("FILE", lambda r: os.path.relpath(r["file"]) if os.path.isabs(r["file"])
         else r["file"]),
    ], last_width=200, empty="no runbooks"))
    return OK
