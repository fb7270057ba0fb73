"""The notes application's own action: the verify of its runbook (notes.yml).

An action module defines `register(registry)`; name it in `recovery.yml`'s
`action_modules` (importable by the service and the CLI: on their PYTHONPATH).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult


class NotesReadable(Action):
    """The notes state file parses: what "recovered" means for this application."""

    name = "notes.readable"
    scope = REMOTE          # reads the host's files; needs nothing the application registered

    def run(self, ctx: ActionContext) -> ActionResult:
        folder = ctx.host_vars.get("notes_persist_dir")
        if not folder:
            return ActionResult(False, f"no notes_persist_dir for {ctx.target}",
                                not_applicable=True)
        state = Path(str(folder)) / "notes.json"
        try:
            notes = json.loads(state.read_text())
        except (OSError, ValueError) as exc:
            return ActionResult(False, f"{state} does not read: {exc}")
        return ActionResult(True, f"{state}: {len(notes)} notes")


def register(registry) -> None:
    registry.register(NotesReadable())
