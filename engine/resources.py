"""What an embedding application registered for in-process actions to act on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ResourceRegistry:
    """``register("redis", pool, target="cache-1")``; actions look resources up by name.

    A resource registered without a target serves every target of that name; the
    application swaps in a new object (a failed-over pool) with ``replace``.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()
        self._canonical: Callable[[str], str] | None = None

    def canonicalize_with(self, canonical: Callable[[str], str]) -> None:
        """How to turn a registered name into its inventory name (an alias, an
        ``ansible_host``): actions look resources up by the incident's inventory name."""
        self._canonical = canonical

    def register(self, name: str, resource: Any, target: str | None = None) -> None:
        with self._lock:
            self._items[(name, target)] = resource

    replace = register

    def unregister(self, name: str, target: str | None = None) -> None:
        with self._lock:
            self._items.pop((name, target), None)

    def get(self, name: str, target: str | None = None) -> Any:
        with self._lock:
            if (name, target) in self._items:
                return self._items[(name, target)]
            untargeted = self._items.get((name, None))
            named = [(t, r) for (n, t), r in self._items.items() if n == name and t is not None]
        if target is not None and self._canonical is not None:
            # registered under another name of the same host (an alias): that one first
            found = next((r for t, r in named if self._canonical(t) == target), None)
            if found is not None:
                return found
        return untargeted

    def targets(self, name: str | None = None) -> list[str]:
        """Targets registered under ``name`` (any name if None)."""
        with self._lock:
            return [t for (n, t) in self._items if name in (None, n) and t is not None]

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return any(n == name for (n, _) in self._items)
