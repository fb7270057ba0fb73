"""The SQLite store's connections and write transactions: locks, retries, the file.

Safe under several processes at once (the CLI, embedded applications, the service):
WAL lets readers go on while one writer commits, and every read-then-write runs inside
``BEGIN IMMEDIATE`` so two processes cannot both open the same incident or take the same
lock. One connection per thread.

Waiting for the write lock (``_begin``): SQLite's own busy handler retries by *sleeping*
1, 2, 5, 10, 15, 20, 25 ... ms, so a writer that finds the lock taken waits at least 1 ms
even when it is freed 50 us later, and writers do not queue: under the webhook's load
that over-sleeping was most of the p99 acknowledgement (docs/BENCHMARKS.md, "Webhook
intake"). So the threads of one process queue on a Python lock per database file
(``write_locks``: the next one starts as soon as the last commits), and between
processes a writer retries ``BEGIN IMMEDIATE`` itself every 0.2-1 ms; both bounded by
``busy_timeout`` in all, after which the store is unavailable (StoreUnavailable: a 503
for Alertmanager), never a hang. Connections therefore run with SQLite's busy handler
off (``busy_timeout=0``): reads retry the same way (``_read``), and code that runs
statements on ``_conn()`` outside ``_tx``/``_read`` must wrap them in
``_busy_handler()`` (as the creation of the schema does).

The file itself (``database_file``): only the constructor may create it, and not
where a deleted one is still open or was saved from; every later connection opens the
file that is there (``mode=rw``) and only while the path still names the file the store
opened (device, inode), which every write transaction checks first. A file deleted or
replaced under the store takes no more writes (StoreUnavailable, with what to do) and
what the store still holds is saved beside it once, from a connection kept for that.
``ping(write=True)`` (``housekeeping``) writes a row for real: an empty transaction
passes on a full disk.
A file that refuses writes (immutable, a read-only mount) is opened read-only by SQLite
without a word, and such a connection stays read-only: it is replaced once the file
takes writes again, and any connection whose write is refused as read-only is closed,
so that every thread writes again by itself (``_conn``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from engine.store.base import StoreUnavailable
from engine.store.sqlite.database_file import (
    HOWTO,
    FileIdentity,
    lost,
    make_private,
    refusal_to_create,
    rescued_path,
    save_copy,
)
from engine.store.sqlite.rows import row_to
from engine.store.sqlite.schema import create_schema
from engine.store.sqlite.write_locks import write_lock

log = logging.getLogger(__name__)
T = TypeVar("T")
WAL_AUTOCHECKPOINT_PAGES = 10000   # ~40 MB of WAL at most where no worker checkpoints
BUSY_FIRST_SLEEP = 0.0002   # s: the first retry of a write lock another process holds
BUSY_MAX_SLEEP = 0.001      # s: retries double up to this (SQLite's own: 1 ms to 100 ms)
SQLITE_BUSY = 5
SQLITE_READONLY = 8
SAVE_RETRY = 60.0           # s between attempts to save a lost database file's copy
OPEN_RETRY = 1.0            # s between attempts to open a store that could not be opened


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == SQLITE_BUSY
    return "database is locked" in str(exc)


def _is_read_only(exc: BaseException | None) -> bool:
    """SQLITE_READONLY (any extended code), raised itself or the cause of ours."""
    for err in (exc, getattr(exc, "__cause__", None)):
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(err, sqlite3.Error) and code is not None:
            return code & 0xFF == SQLITE_READONLY
    return False


def _retry_busy(attempt: Callable[[], T], deadline: float, failed: str,
                errors: type[sqlite3.Error]) -> T:
    """``attempt()``, tried again while another connection holds the lock (SQLite's busy
    handler is off: the module's docstring), every 0.2-1 ms until ``deadline``
    (``time.monotonic()``); then, or on any other of ``errors``, StoreUnavailable."""
    delay = BUSY_FIRST_SLEEP
    while True:
        try:
            return attempt()
        except errors as exc:
            left = deadline - time.monotonic()
            if not _is_busy(exc) or left <= 0:
                raise StoreUnavailable(f"{failed}: {exc}") from exc
        time.sleep(min(delay, left))
        delay = min(delay * 2, BUSY_MAX_SLEEP)


class SQLiteConnection:
    """The store's file, connections and transactions, which every protocol's part of
    the backend writes and reads through (``_tx``, ``_read``).

    ``retry_open``: for the processes of a service, which must come up (and answer
    503, /healthz 200) with the store unavailable: a store that cannot be opened now
    (none may be made where a deleted one is still open, a read-only file system...)
    raises StoreUnavailable, with the reason, at each use, and is opened at the first
    use that finds it possible (tried at most every ``OPEN_RETRY`` seconds). Without it
    (the CLI, an application) the constructor raises."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL",
                 busy_timeout: float = 15.0, retry_open: bool = False) -> None:
        self.path = str(path)
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._write_lock = write_lock(self.path)
        self._identity: FileIdentity | None = None   # the file opened (None: in memory)
        self._keeper: sqlite3.Connection | None = None   # saves it if it is lost
        self._lost_lock = threading.Lock()
        self._lost_reason: str | None = None      # once lost: why writes are refused
        self._saved = False                       # ... and whether its copy is saved
        self._save_tried = 0.0
        self._open_lock = threading.Lock()
        self._opened = False
        self._not_opened: StoreUnavailable | None = None   # why not, at the last try
        self._open_tried = 0.0
        try:
            self._open()
        except StoreUnavailable as exc:
            if not retry_open:
                raise
            self._not_opened, self._open_tried = exc, time.monotonic()
            log.warning("the store is unavailable (tried again as it is used): %s", exc)

    def _open(self) -> None:
        """Create the file (or open the one there), its schema, and note which file it
        is; StoreUnavailable, with the reason, if that cannot be done now."""
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                refusal = None if os.path.exists(self.path) else refusal_to_create(self.path)
                if refusal is not None:
                    raise StoreUnavailable(refusal)
            # The schema's connection stays this thread's (in memory, it is the database).
            self._local.conn, self._local.read_only = self._connect(), False
            with self._busy_handler() as conn:   # writes outside _tx: busy handler on
                create_schema(conn)   # commits by itself: not inside _tx
            if self.path != ":memory:":
                make_private(self.path)
                self._identity = FileIdentity.of(self.path)
                self._local.read_only = not self._takes_writes()
                self._keeper = self._connect()
                self._keeper.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                self._keeper.execute("SELECT 1 FROM kv LIMIT 1").fetchall()   # opens the WAL
            self._opened = True
        except sqlite3.Error as exc:
            self._not_open()
            raise StoreUnavailable(f"cannot create the store at {self.path}: {exc}") from exc
        except OSError as exc:
            self._not_open()
            raise StoreUnavailable(f"cannot use the store at {self.path}: {exc}") from exc
        except StoreUnavailable:
            self._not_open()
            raise

    def _not_open(self) -> None:
        """What a failed ``_open`` left: nothing that says the store is open."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)
        keeper, self._keeper, self._identity = self._keeper, None, None
        if keeper is not None:
            keeper.close()

    def _ensure_open(self) -> None:
        """StoreUnavailable (the last reason) unless the store is open, or opens now."""
        if self._opened:
            return
        with self._open_lock:
            if self._opened:
                return
            if (self._not_opened is not None
                    and time.monotonic() - self._open_tried < OPEN_RETRY):
                raise StoreUnavailable(str(self._not_opened))
            self._open_tried = time.monotonic()
            try:
                self._open()
            except StoreUnavailable as exc:
                self._not_opened = exc
                raise
            self._not_opened = None
            log.warning("the store at %s is open: it was unavailable until now", self.path)

    # -- connections and transactions ----------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection. One opened while the file refused writes is
        read-only for good (SQLite falls back to read-only without a word, ``mode=rw``
        too): it serves only until the file takes writes again, then another is opened."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.read_only and self._takes_writes():
            self._drop(conn)
            conn = None
        if conn is None:
            self._ensure_open()
            self._check_file()   # never a connection to a file that took our file's place
            read_only = not self._takes_writes()   # asked first: a race errs towards a retry
            conn = self._connect()
            self._local.conn, self._local.read_only = conn, read_only
        return conn

    def _takes_writes(self) -> bool:
        """Whether the file would be opened for writing now (an immutable file, a
        read-only mount or its permissions say no; in memory: always)."""
        return self._identity is None or os.access(self.path, os.W_OK)

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Close ``conn`` and forget it if it is this thread's: the next call opens one."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _drop_if_read_only(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        """A write refused as read-only: the connection may have been opened read-only
        (the file refused writes then), so it goes; a new one is opened at the next call,
        read-write once the file takes writes again."""
        if _is_read_only(exc):
            self._drop(conn)

    def _connect(self) -> sqlite3.Connection:
        """A new connection, set up. Once the store is made, to the file that is there
        only (``mode=rw``): never a new, empty one where ours was deleted."""
        if self._identity is None:
            target, uri = self.path, False
        else:
            target, uri = f"file:{quote(os.path.abspath(self.path))}?mode=rw", True
        try:
            conn = sqlite3.connect(target, timeout=self.busy_timeout, uri=uri,
                                   isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                # Checkpoints (an fsync of the database) would otherwise run inside
                # whichever commit crosses 1000 pages, on the path from alert to action;
                # workers checkpoint between passes (maintain), this is only the bound.
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                # Waits for locks are ours from here on (_begin, _read): the module's doc.
                conn.execute("PRAGMA busy_timeout=0")
            except sqlite3.Error:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from exc
        return conn

    def _check_file(self) -> None:
        """StoreUnavailable once the path no longer names the file this store opened."""
        if self._identity is None:
            return
        how = lost(self.path, self._identity)
        if how is not None:
            raise StoreUnavailable(self._lost(how))

    def _lost(self, how: str) -> str:
        """The reason every write is refused from now on, said in the log when it changes:
        with the copy saved of what this process still holds of the file, or why it could
        not be saved (tried again at most every ``SAVE_RETRY`` seconds: a full disk)."""
        with self._lost_lock:
            now = time.monotonic()
            if self._lost_reason is not None and (
                    self._saved or now - self._save_tried < SAVE_RETRY):
                return self._lost_reason
            self._save_tried = now
            saved = rescued_path(self.path, self._identity or FileIdentity(0, 0))
            try:
                if self._keeper is None:
                    raise OSError("this store was closed")
                save_copy(self._keeper, saved)
                self._saved = True
                then = (f"its content is saved in {saved}: stop the service, move that file "
                        f"to {self.path} (first removing {self.path}-wal and {self.path}-shm "
                        "if they are left), and start it again")
            except (OSError, sqlite3.Error) as exc:
                then = (f"its content could not be saved to {saved} ({exc}; tried again "
                        "every minute or so): it is still open in this process only, so do "
                        "not stop the service yet")
            reason = (f"the database file {self.path} was {how} under this process (pid "
                      f"{os.getpid()}): it takes no more writes (alerts are answered 503), "
                      f"rather than writing into a file no one will read again; {then} "
                      f"({HOWTO})")
            if reason != self._lost_reason:
                log.error("%s", reason)
            self._lost_reason = reason
            return reason

    @contextmanager
    def _busy_handler(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection with SQLite's sleeping busy handler on (busy_timeout),
        for the rare statements run outside ``_tx`` and ``_read`` (the schema)."""
        conn = self._conn()
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        try:
            yield conn
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    def _begin(self, conn: sqlite3.Connection,
               deadline: float | None = None) -> threading.RLock:
        """``BEGIN IMMEDIATE``, holding this process's writer lock for the file: the
        threads of one process queue on the lock, another process's writer is waited for
        by retrying every 0.2-1 ms; until ``deadline`` (``time.monotonic()``; default:
        ``busy_timeout`` from now), then StoreUnavailable. On return the lock (returned)
        is held: the caller releases it after COMMIT or ROLLBACK."""
        if deadline is None:
            deadline = time.monotonic() + self.busy_timeout
        lock = self._write_lock.lock   # this one: a fork may put another in its place
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise StoreUnavailable("store busy: no write turn in this process in time")
        try:
            _retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), deadline,
                        "store busy or unavailable", sqlite3.Error)
            return lock
        except BaseException:
            lock.release()
            raise

    @contextmanager
    def _tx(self, deadline: float | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (IMMEDIATE) so read-then-write is atomic;
        the lock waited for until ``deadline`` (see ``_begin``)."""
        self._check_file()
        conn = self._conn()
        try:
            lock = self._begin(conn, deadline)
        except StoreUnavailable as exc:
            self._drop_if_read_only(conn, exc)
            raise
        try:
            yield conn
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise  # a constraint the caller handles (one open incident per identity)
        except sqlite3.Error as exc:  # disk full, I/O error: the store, not the caller
            self._rollback(conn)
            self._drop_if_read_only(conn, exc)
            raise StoreUnavailable(f"store write failed: {exc}") from exc
        except BaseException:
            self._rollback(conn)  # the original error is the one to report
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)  # never leave this thread's connection inside a tx
                self._drop_if_read_only(conn, exc)
                raise StoreUnavailable(f"store commit failed: {exc}") from exc
        finally:
            lock.release()

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return _retry_busy(lambda: self._conn().execute(sql, tuple(params)).fetchall(),
                           time.monotonic() + self.busy_timeout, "store read failed",
                           sqlite3.OperationalError)

    def _select(self, table: str, equal: Iterable[tuple[str, Any]], *, order: str,
                limit: int | None, since: tuple[str, float | None] = ("", None),
                extra: Iterable[tuple[str, list[Any]]] = ()) -> list[sqlite3.Row]:
        """Rows of ``table`` whose columns equal the values given (None: any), whose
        ``since`` column is at or after its value (if given), that meet the ``extra``
        conditions (SQL, parameters), in ``order``."""
        where, params = [], []
        for column, value in equal:
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for condition, values in extra:
            where.append(condition)
            params.extend(values)
        if since[1] is not None:
            where.append(f"{since[0]} >= ?")
            params.append(since[1])
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._read(sql, params)

    @staticmethod
    def _insert(db: sqlite3.Connection, table: str, values: dict[str, Any],
                verb: str = "INSERT") -> None:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        db.execute(f"{verb} INTO {table} ({cols}) VALUES ({marks})", tuple(values.values()))

    @staticmethod
    def _update(db: sqlite3.Connection, table: str, key: str, key_value: Any,
                values: dict[str, Any]) -> None:
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        db.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?",
                   (*values.values(), key_value))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()

    @staticmethod
    def _take_first(db: sqlite3.Connection, select: str, params: Iterable[Any], update: str,
                    update_params: Iterable[Any]) -> sqlite3.Row | None:
        """In the transaction ``db``: the first row ``select`` finds (as found), taken by
        ``update`` (its parameters, then the row's ``id``); None if there is none."""
        row = db.execute(select, tuple(params)).fetchone()
        if row is not None:
            db.execute(update, (*update_params, row["id"]))
        return row

    def _change_one(self, record: type[T], sql: str, params: Iterable[Any], *, table: str,
                    key: str, value: Any) -> T | None:
        """Run ``sql`` (a compare-and-set UPDATE) in a write transaction: the row of
        ``table`` whose ``key`` is ``value``, as it is now, if exactly one row changed;
        None if none did (someone else changed it first, or it is not there)."""
        with self._tx() as db:
            if db.execute(sql, tuple(params)).rowcount != 1:
                return None
            row = db.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,)).fetchone()
        return row_to(record, row)
