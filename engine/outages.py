"""Is this error an outage of the engine's own storage, or a fault of what it was given?

The store (SQLite) and the artifacts folder are where the engine keeps its word: a disk
that is full, read-only or failing under them stops every write for a while, whatever
the alert or the step. Such an error is an outage: what was being done is kept and
tried again once the storage is back, never thrown away as a bad alert or counted as a
failed fix. Anything else (a malformed alert, a bug) is the item's own fault.

Outages: ``StoreUnavailable`` (the store says so); ``OSError`` ENOSPC, EDQUOT, EROFS
and EIO (files); and the SQLite errors that mean the same when one escapes the store
raw: ``database or disk is full``, ``disk I/O error``, ``attempt to write a readonly
database``, ``unable to open database file``, a database locked past its wait.
"""

from __future__ import annotations

import errno
import sqlite3

from engine.store.base import StoreUnavailable

OUTAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_SQLITE_OUTAGES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR,
                             sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN,
                             sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_SQLITE_MESSAGES = ("database or disk is full", "disk i/o error", "readonly database",
                    "unable to open database", "database is locked")


def is_outage(exc: BaseException | None) -> bool:
    """True if ``exc`` (or the error it was raised from) is a storage outage."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, StoreUnavailable):
            return True
        if isinstance(exc, OSError) and exc.errno in OUTAGE_ERRNOS:
            return True
        if isinstance(exc, sqlite3.Error) and _sqlite_outage(exc):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def _sqlite_outage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_OUTAGES
    text = str(exc).lower()
    return any(message in text for message in _SQLITE_MESSAGES)


def describe(exc: BaseException) -> str:
    """The error in words an operator reads (``OSError: [Errno 28] No space left ...``)."""
    return f"{type(exc).__name__}: {exc}"
