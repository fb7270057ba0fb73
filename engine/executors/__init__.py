"""Executors carry out one step and report how it went; they never decide policy.

Both write ansible-runner's artifacts layout through ``engine.artifacts.RunArtifacts``:
``ansible`` runs a playbook with ansible-runner, ``python`` runs a registered action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.lifecycle import RunStatus


@dataclass
class StepResult:
    """How one step ended: a final run status, in words an operator reads."""

    status: RunStatus               # SUCCEEDED, FAILED, SKIPPED or CANCELED
    reason: str = ""
    rc: int = 0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED
