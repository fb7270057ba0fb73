"""The fencing check of a SQLite write (engine.store.fencing), made inside the write's
own transaction: the lock row read and the write committed under one write lock, so no
other holder can take the lock in between."""

from __future__ import annotations

import sqlite3

from engine.store.fencing import Fence, refused


def check_fence(db: sqlite3.Connection, fence: Fence | None) -> None:
    """Raise StaleLease (the caller's transaction rolls back) if the lock on the fence's
    target is held by another token."""
    if fence is None:
        return
    row = db.execute("SELECT token FROM locks WHERE target = ?", (fence.target,)).fetchone()
    stale = refused(fence, None if row is None else int(row[0]))
    if stale is not None:
        raise stale
