"""Audit events: who did what (an operator's disable, an approval, a replay), newest
first. The runs themselves are accounted for in their artifacts, not here."""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol

from engine.records import AuditEvent


class AuditLog(Protocol):
    """An append-only list of events, pruned with the history (``delete_before``)."""

    @abstractmethod
    def add_event(self, event: AuditEvent) -> None: ...

    @abstractmethod
    def list_events(self, limit: int = 100) -> list[AuditEvent]: ...
