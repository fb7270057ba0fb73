"""InfraFabric Recovery: the runbook engine.

Where an alert goes, by package: ``alerts`` (intake, routing) -> ``orchestration``
(triggers, then the attempt: each step gated by ``gates``, run by ``executors`` and
``actions``, verified, settled) -> ``store`` and ``artifacts`` (the record). The whole
path: docs/architecture.md. Applications embed it through ``Recovery`` (``embedded``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.embedded import IncidentHandle, Recovery

__all__ = ["IncidentHandle", "Recovery"]


def __getattr__(name: str):
    # Lazily, so `python -m engine` and the CLI do not import what they do not use.
    if name in __all__:
        from engine import embedded as recovery

        return getattr(recovery, name)
    raise AttributeError(name)
