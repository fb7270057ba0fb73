"""Named values every process shares: heartbeats of the workers, the loaded runbook set,
cancel requests, and who last took a periodic chore (``claim_due``)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Protocol


class SharedValues(Protocol):
    """A small key-value space (JSON values) whose read-modify-write is atomic."""

    @abstractmethod
    def set_value(self, key: str, value: Any) -> None: ...

    @abstractmethod
    def get_value(self, key: str) -> Any: ...

    @abstractmethod
    def update_value(self, key: str, update: Callable[[Any], Any]) -> Any:
        """Replace the value with ``update(old)`` (old: None when absent) atomically
        against every other writer; returns the new value."""

    def claim_due(self, key: str, now: float, interval: float) -> bool:
        """True for exactly one caller per ``interval`` (whatever process asks): the time
        of the last claim is kept under ``key``."""
        claimed = False

        def take(last: Any) -> Any:
            nonlocal claimed
            claimed = last is None or now - float(last) >= interval
            return now if claimed else last

        self.update_value(key, take)
        return claimed
