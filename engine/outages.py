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

``OutageLog`` says in the log when an outage begins and when it is over, once each:
during one, every pass, heartbeat and request of every thread fails, many times a
second, and a traceback per failure (4,649 lines in a minute of full disk) buried the
one line that says why.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time

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


QUIET_AFTER = 5.0   # s without a failure before an outage is said to be over


class OutageLog:
    """One warning when a storage outage begins (what failed, and why) and one when it is
    over (how long it lasted, how many failures), for one part of a process (a worker,
    an app), whichever of its threads fails or succeeds. It is over once a success
    comes ``quiet_after`` seconds after the last failure, so a store that fails one
    write in two is one outage, not a line each. Errors that are not outages are not
    its business: ``failed`` says False and the caller reports them as before."""

    def __init__(self, logger: logging.Logger, what: str,
                 quiet_after: float = QUIET_AFTER) -> None:
        self.log, self.what, self.quiet_after = logger, what, quiet_after
        self._lock = threading.Lock()
        self._since: float | None = None     # time.monotonic() the outage began
        self._last_failure = 0.0
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, doing: str) -> bool:
        """``doing`` failed with ``exc``. True if that is an outage (said if it begins
        one: no traceback, the work is retried), False for the caller to report."""
        if not is_outage(exc):
            return False
        with self._lock:
            self._last_failure = time.monotonic()
            self._failures += 1
            if self._since is not None:
                return True
            self._since, self._failures = self._last_failure, 1
        self.log.warning("%s: storage outage: %s failed: %s (said once until it is over; "
                         "what failed is tried again, nothing is discarded)", self.what,
                         doing, describe(exc))
        return True

    def succeeded(self) -> None:
        """Something worked: an outage quiet for ``quiet_after`` seconds is over."""
        if self._since is None:
            return
        with self._lock:
            now = time.monotonic()
            if self._since is None or now - self._last_failure < self.quiet_after:
                return
            lasted, failures, self._since = now - self._since, self._failures, None
        self.log.warning("%s: storage outage over after %.0fs (%d failure(s) meanwhile)",
                         self.what, lasted, failures)
