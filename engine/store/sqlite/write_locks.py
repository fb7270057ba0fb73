"""One writer lock per database file and process, safe across ``fork``.

The threads of one process queue on this lock for a write transaction (the next one
starts as soon as the last commits: see ``connection``), rather than on SQLite's busy
handler, which sleeps. Reentrant, so that a thread that nests two stores' transactions
on one file fails as it did before (SQLite's lock, after busy_timeout) rather than
deadlocking here.

In a forked child a lock held by a thread of the parent would never be freed (that
thread does not exist there). So each lock sits in a ``WriteLock`` that the stores keep,
and after a fork the child gives every one a new lock, made with the public
constructor: stores made before the fork find the new lock through the ``WriteLock``
they hold.
"""

from __future__ import annotations

import os
import threading


class WriteLock:
    """The holder of one file's writer lock; ``lock`` is replaced in a forked child."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.RLock()


_LOCKS: dict[str, WriteLock] = {}
_GUARD = threading.Lock()


def write_lock(path: str) -> WriteLock:
    """The writer lock of the database file at ``path`` in this process (in memory: a
    database per connection, nothing shared to queue for, so a lock of its own)."""
    if path == ":memory:":
        return WriteLock()
    key = os.path.realpath(path)
    with _GUARD:
        return _LOCKS.setdefault(key, WriteLock())


def _renew_after_fork() -> None:
    """In a forked child: new locks for all, none held (see the module's docstring)."""
    global _GUARD
    _GUARD = threading.Lock()
    for held in _LOCKS.values():
        held.lock = threading.RLock()


os.register_at_fork(after_in_child=_renew_after_fork)
