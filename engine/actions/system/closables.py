"""What an application that embeds the engine registers as closable when idle (pools,
clients, files it can do without for a while), so ``system.file_handle_cleanup`` can
give their descriptors back in that process: only the idle ones, the busy ones are left
and named.

    recovery.register_closable("cache-pool", pool, close=pool.disconnect,
                               idle=lambda: pool_is_idle(pool))
    recovery.register_closable("export", export_file, idle_after=300)
    with recovery.closables.using("export"):      # busy while inside; used_at after
        export_file.write(row)

Idle is what the application says: an ``idle`` callable (True: nothing uses it now), or
a ``last_used`` callable (a ``time.time()`` timestamp: idle ``idle_after`` seconds
later), or neither: busy while inside :meth:`Closables.using`, idle ``idle_after``
seconds after the last use (registration counts as one). ``close`` defaults to the
object's ``close()``. Closing is the application's promise that the object copes: a
redis-py pool reconnects by itself on its next use; a file the application re-opens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Closable:
    """One registered object, how to close it and how to tell that it is idle."""

    name: str
    obj: Any
    close: Callable[[], Any]
    idle: Callable[[], bool] | None = None
    last_used: Callable[[], float] | None = None
    idle_after: float = 60.0
    in_use: int = 0                                   # inside ``using`` now
    used_at: float = field(default_factory=time.time)

    def idleness(self, now: float) -> tuple[bool, str]:
        """Idle now?, and why (for the record). A check that raises counts as busy."""
        if self.in_use:
            return False, f"in use ({self.in_use} inside using())"
        if self.idle is not None:
            try:
                quiet = bool(self.idle())
            except Exception as exc:  # noqa: BLE001 - the application's check: left open
                return False, f"its idle check raised {type(exc).__name__}: {exc}"
            return quiet, "idle by its check" if quiet else "busy by its check"
        try:
            last = self.last_used() if self.last_used is not None else self.used_at
        except Exception as exc:  # noqa: BLE001 - as above
            return False, f"its last_used raised {type(exc).__name__}: {exc}"
        quiet_for = now - float(last)
        if quiet_for >= self.idle_after:
            return True, f"unused for {quiet_for:.0f}s"
        return False, f"used {quiet_for:.0f}s ago (idle after {self.idle_after:g}s)"


@dataclass
class Closing:
    """What happened to one registered object in a cleanup (or would, in check mode)."""

    name: str
    state: str            # closed | would_close | busy | failed
    why: str
    fds_freed: int | None = None

    def describe(self) -> str:
        if self.state == "closed":
            return f"closed {self.name} ({self.why}; {self.fds_freed} fd(s) freed)"
        if self.state == "would_close":
            return f"would close {self.name} ({self.why})"
        if self.state == "busy":
            return f"left {self.name} open: {self.why}"
        return f"could not close {self.name}: {self.why}"


class Closables:
    """The registry of one process's closables, by name (a name registered again
    replaces the old entry). Thread-safe; registered as the resource ``closables``."""

    RESOURCE = "closables"

    def __init__(self) -> None:
        self._items: dict[str, Closable] = {}
        self._lock = threading.RLock()

    def register(self, name: str, obj: Any, *, close: Callable[[], Any] | None = None,
                 idle: Callable[[], bool] | None = None,
                 last_used: Callable[[], float] | None = None,
                 idle_after: float = 60.0) -> Closable:
        closer = close if close is not None else getattr(obj, "close", None)
        if not callable(closer):
            raise TypeError(f"closable {name!r}: no close given and "
                            f"{type(obj).__name__} has no close()")
        if idle is not None and last_used is not None:
            raise ValueError(f"closable {name!r}: give idle or last_used, not both")
        entry = Closable(name, obj, closer, idle, last_used, float(idle_after))
        with self._lock:
            self._items[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._items)

    @contextmanager
    def using(self, name: str) -> Iterator[Any]:
        """Marks ``name`` busy while inside (a cleanup leaves it open) and used at exit;
        yields the object. A cleanup that already decided to close it finishes first."""
        with self._lock:
            entry = self._items[name]
            entry.in_use += 1
        try:
            yield entry.obj
        finally:
            with self._lock:
                entry.in_use -= 1
                entry.used_at = time.time()

    def close_idle(self, change: bool, count_fds: Callable[[], int]) -> list[Closing]:
        """Closes every idle entry (``change``; else says it would), each under the lock
        so ``using`` cannot start on it meanwhile; ``count_fds`` before and after each
        close measures what it gave back. Busy ones are left, with the reason."""
        done = []
        with self._lock:
            for entry in list(self._items.values()):
                idle, why = entry.idleness(time.time())
                if not idle:
                    done.append(Closing(entry.name, "busy", why))
                elif not change:
                    done.append(Closing(entry.name, "would_close", why))
                else:
                    done.append(close_one(entry, why, count_fds))
        return done


def close_one(entry: Closable, why: str, count_fds: Callable[[], int]) -> Closing:
    before = count_fds()
    try:
        entry.close()
    except Exception as exc:  # noqa: BLE001 - the application's close: reported
        return Closing(entry.name, "failed", f"{type(exc).__name__}: {exc}")
    return Closing(entry.name, "closed", why, max(before - count_fds(), 0))
