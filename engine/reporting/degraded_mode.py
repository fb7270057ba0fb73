"""One degraded mode as an application reads it in-process (``Recovery.degraded_mode``):
frozen, so what it was handed cannot drift from what the store said when it asked.

Built from ``engine.reporting.reports.degraded_modes`` (what ``recovery status`` and the
HTTP API show), never computed a second way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ModeReason:
    """Why the mode is on: an incident's automatic reason or one set by hand."""

    incident_id: str | None
    target: str | None
    since: float            # epoch seconds
    who: str                # who or what set it (a runbook's incident, an operator)
    manual: bool
    reason: str


@dataclass(frozen=True)
class DegradedMode:
    """A mode, on or off, with its capability matrix: ``capabilities[feature]`` is True
    when the feature stays on while the mode is on, False when the mode switches it off."""

    name: str
    active: bool
    manual: bool
    description: str
    capabilities: Mapping[str, bool]
    switches_off: tuple[str, ...]    # what the mode switches off when it is on
    off_now: tuple[str, ...]         # what it switches off now (empty while it is off)
    configured: bool                 # described in recovery.yml's degraded_modes
    runbooks: tuple[str, ...]        # the runbooks that name it
    reasons: tuple[ModeReason, ...]

    def allows(self, feature: str) -> bool:
        """Is ``feature`` on as far as this mode goes (off only when the mode is on and
        its matrix switches the feature off)?"""
        return not (self.active and feature in self.switches_off)

    @classmethod
    def from_report(cls, mode: Mapping[str, Any]) -> DegradedMode:
        """The mode of one entry of ``degraded_modes``."""
        return cls(
            name=mode["mode"], active=mode["active"], manual=mode["manual"],
            description=mode["description"],
            capabilities=MappingProxyType(dict(mode["capabilities"])),
            switches_off=tuple(mode["switches_off"]), off_now=tuple(mode["off_now"]),
            configured=mode["configured"], runbooks=tuple(mode["runbooks"]),
            reasons=tuple(ModeReason(incident_id=r.get("incident_id"), target=r.get("target"),
                                     since=r.get("since", 0.0), who=r.get("created_by", ""),
                                     manual=bool(r.get("manual")), reason=r.get("reason", ""))
                          for r in mode["reasons"]))
