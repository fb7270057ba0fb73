"""One check of everything the engine will read, as a set: every runbook (file:line:
reason for each bad one), every playbook (``ansible-playbook --syntax-check``) and the
inventory (unknown or ambiguous names, malformed endpoints).

``recovery validate`` prints it; a reload (engine.runbooks.reload) puts a set in force only
when it finds nothing wrong. Pure reading: nothing is changed or recorded here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.runbooks.loader import PLAYBOOK_SUFFIXES, KnownActions

if TYPE_CHECKING:
    from engine.inventory import Inventory
    from engine.runbooks.loaded_set import SetPaths
    from engine.runbooks.model import Runbook
    from engine.runbooks.overlaps import Overlap
    from engine.security.redaction import Redactor


@dataclass
class SetValidation:
    """What is wrong with a set, part by part; ``errors`` all of it, each line naming its
    file. Warnings do not make a set invalid."""

    runbooks: list[Runbook] = field(default_factory=list)
    runbook_errors: list[str] = field(default_factory=list)
    playbooks: list[str] = field(default_factory=list)
    playbook_errors: dict[str, str] = field(default_factory=dict)
    inventory_path: Path | None = None
    inventory_problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)
    syntax_checked: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summary(self) -> str:
        inv = ("ok" if not self.inventory_problems
               else f"{len(self.inventory_problems)} problem(s)")
        checked = "" if self.syntax_checked else " (not syntax-checked)"
        return (f"{len(self.runbooks)} runbooks"
                + (f" ({len(self.runbook_errors)} invalid)" if self.runbook_errors else "")
                + f", {len(self.playbooks)} playbooks{checked}"
                + (f" ({len(self.playbook_errors)} invalid)" if self.playbook_errors else "")
                + f", inventory: {inv}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "runbooks": {"loaded": [rb.name for rb in self.runbooks],
                         "errors": self.runbook_errors},
            "playbooks": {"checked": self.playbooks, "errors": self.playbook_errors},
            "inventory": {"path": str(self.inventory_path),
                          "problems": self.inventory_problems},
            "overlaps": [{"runbook": o.covered.name, "covered_by": o.by.name,
                          "winner": o.winner.name, "example": o.example}
                         for o in self.overlaps],
            "warnings": self.warnings,
        }


def playbook_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(PLAYBOOK_SUFFIXES) and not p.name.startswith(".")
                  and p.is_file())


def validate_set(paths: SetPaths, *, known_actions: KnownActions,
                 degraded_modes: Mapping[str, Any], redactor: Redactor,
                 syntax_check: bool = True) -> SetValidation:
    """Check the set at ``paths``. ``syntax_check=False`` leaves the playbooks to
    ``ansible-playbook`` at run time (they are listed, not parsed)."""
    from engine.inventory import Inventory
    from engine.runbooks.loader import RunbookError, check_runbooks
    from engine.runbooks.overlaps import overlaps

    found = SetValidation(inventory_path=paths.inventory_path, syntax_checked=syntax_check)
    try:
        loaded, bad = check_runbooks(paths.runbooks_dir, known_actions=known_actions,
                                     playbooks_dir=paths.playbooks_dir)
    except RunbookError as exc:  # the folder itself is missing
        loaded, bad = [], [exc]
    found.runbooks = loaded
    found.runbook_errors = [str(e) for e in bad]
    found.errors.extend(found.runbook_errors)
    for rb in loaded:
        found.warnings.extend(rb.warnings)
        if rb.degraded_mode is not None and rb.degraded_mode.name not in degraded_modes:
            found.warnings.append(f"{rb.path}: degraded mode {rb.degraded_mode.name!r} has "
                                  "no capability matrix in recovery.yml (degraded_modes)")
    found.overlaps = overlaps(loaded)
    found.warnings.extend(o.describe() for o in found.overlaps)

    found.playbooks = playbook_files(paths.playbooks_dir)
    if not paths.playbooks_dir.is_dir():
        found.errors.append(f"{paths.playbooks_dir}: playbooks directory does not exist")
    elif found.playbooks and syntax_check:
        from engine.executors.ansible import AnsibleExecutor

        ansible = AnsibleExecutor(paths.playbooks_dir, paths.inventory_path, redactor=redactor)

        def check(name: str) -> str | None:
            try:
                return ansible.syntax_check(name)
            except (OSError, ValueError) as exc:
                return str(exc)

        names = found.playbooks
        with ThreadPoolExecutor(max_workers=min(4, len(names), os.cpu_count() or 2)) as pool:
            for name, problem in zip(names, pool.map(check, names), strict=True):
                if problem:
                    found.playbook_errors[name] = problem
                    first = problem.strip().splitlines()
                    found.errors.append(f"{paths.playbooks_dir / name}:1: syntax check "
                                        "failed: " + " / ".join(line.strip()
                                                                for line in first[:4]))

    inventory = Inventory(paths.inventory_path)
    found.inventory_problems = inventory.validate()
    found.errors.extend(f"{paths.inventory_path}: {p}" for p in found.inventory_problems)
    found.errors.extend(step_target_errors(loaded, inventory))
    return found


def step_target_errors(runbooks: Iterable[Runbook], inventory: Inventory) -> list[str]:
    """``file:line: reason`` for each inventory pattern a runbook names that selects no
    host of the inventory (an unknown or empty group, a term that matches nothing): a
    step's ``target:`` and a probe's ``targets:`` (which would otherwise check nothing,
    round after round, with a warning in the service's log only)."""
    from engine.inventory import UnknownTarget

    errors = []
    for rb in runbooks:
        named = [(step.target, f"strategies[{i}].target", step.line,
                  f"strategy {step.name!r}: ") for i, step in enumerate(rb.strategies)]
        if rb.probe is not None:
            named.append((rb.probe.targets, "probe.targets", rb.probe.line, ""))
        for pattern, what, line, prefix in named:
            if pattern is None:
                continue
            try:
                inventory.expand(pattern, what=what)
            except UnknownTarget as exc:
                errors.append(f"{rb.path}:{line}: {prefix}{exc.reason}")
    return errors
