"""InfraFabric Recovery: the runbook engine.

Where an alert goes, by module: ``triggers`` (runbook and target, incident) ->
``gates`` (may this step start?) -> ``orchestrator`` (the attempt) -> ``executors``
(ansible, python) -> ``verify`` -> ``store`` and ``artifacts`` (the record).
Applications embed it through ``Recovery``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.recovery import IncidentHandle, Recovery

__all__ = ["IncidentHandle", "Recovery"]


def __getattr__(name: str):
    # Lazily, so `python -m engine` and the CLI do not import what they do not use.
    if name in __all__:
        from engine import recovery

        return getattr(recovery, name)
    raise AttributeError(name)
