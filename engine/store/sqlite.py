"""SQLite (WAL) backend: the default store, nothing to install or start.

Safe under several processes at once (the CLI, embedded applications, the service):
WAL lets readers go on while one writer commits, and every read-then-write runs inside
``BEGIN IMMEDIATE`` so two processes cannot both open the same incident or take the same
lock. One connection per thread.

Waiting for the write lock (``_begin``): SQLite's own busy handler retries by *sleeping*
1, 2, 5, 10, 15, 20, 25 ... ms, so a writer that finds the lock taken waits at least 1 ms
even when it is freed 50 us later, and writers do not queue: under the webhook's load
that over-sleeping was most of the p99 acknowledgement (docs/BENCHMARKS.md, "Webhook
intake"). So the threads of one process queue on a Python lock per database file (the
next one starts as soon as the last commits), and between processes a writer retries
``BEGIN IMMEDIATE`` itself every 0.2-1 ms; both bounded by ``busy_timeout`` in all,
after which the store is unavailable (StoreUnavailable: a 503 for Alertmanager), never
a hang. Connections therefore run with SQLite's busy handler off (``busy_timeout=0``):
reads retry the same way (``_read``), and code that runs statements on ``_conn()``
outside ``_tx``/``_read`` must wrap them in ``_busy_handler()`` (as ``__init__`` does).

The file itself (engine.store.database_file): only the constructor may create it, and not
where a deleted one is still open or was saved from; every later connection opens the
file that is there (``mode=rw``) and only while the path still names the file the store
opened (device, inode), which every write transaction checks first. A file deleted or
replaced under the store takes no more writes (StoreUnavailable, with what to do) and
what the store still holds is saved beside it once, from a connection kept for that.
``ping(write=True)`` writes a row for real: an empty transaction passes on a full disk.
A file that refuses writes (immutable, a read-only mount) is opened read-only by SQLite
without a word, and such a connection stays read-only: it is replaced once the file
takes writes again, and any connection whose write is refused as read-only is closed,
so that every thread writes again by itself (``_conn``).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from engine.lifecycle import (
    RUN_TRANSITIONS,
    AttemptOutcome,
    IncidentState,
    RunStatus,
    TransitionError,
    check_incident_transition,
)
from engine.records import (
    Approval,
    Attempt,
    AuditEvent,
    DegradedReason,
    Delivery,
    Incident,
    Lock,
    RunRecord,
    Switch,
)
from engine.store.base import (
    DURATION_BUCKETS,
    CounterRow,
    DurationRow,
    IntakeItem,
    Store,
    StoreUnavailable,
)
from engine.store.database_file import (
    HOWTO,
    FileIdentity,
    lost,
    make_private,
    refusal_to_create,
    rescued_path,
    save_copy,
    unwritable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
WAL_AUTOCHECKPOINT_PAGES = 10000   # ~40 MB of WAL at most where no worker checkpoints
BUSY_FIRST_SLEEP = 0.0002   # s: the first retry of a write lock another process holds
BUSY_MAX_SLEEP = 0.001      # s: retries double up to this (SQLite's own: 1 ms to 100 ms)
SQLITE_BUSY = 5
SQLITE_READONLY = 8
SAVE_RETRY = 60.0           # s between attempts to save a lost database file's copy
OPEN_RETRY = 1.0            # s between attempts to open a store that could not be opened
_ROWS_PER_INSERT = 300      # rows in one multi-row INSERT (3 values each: < 999 variables)

# One writer lock per database file and process (see the module's docstring), reentrant
# so that a thread that nests two stores' transactions on one file fails as it did
# before (SQLite's lock, after busy_timeout) rather than deadlocking here.
_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: str) -> threading.RLock:
    if path == ":memory:":   # a database per connection: nothing shared to queue for
        return threading.RLock()
    key = os.path.realpath(path)
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.RLock())


def _forget_write_locks() -> None:
    """In a forked child: a lock held by a thread of the parent would never be freed.
    Reset in place (as ``logging`` does for its handlers' locks): stores made before the
    fork keep a reference to theirs."""
    _WRITE_LOCKS_GUARD._at_fork_reinit()
    for lock in _WRITE_LOCKS.values():
        lock._at_fork_reinit()


os.register_at_fork(after_in_child=_forget_write_locks)


def _is_busy(exc: sqlite3.Error) -> bool:
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, runbook TEXT NOT NULL, component TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, failure_type TEXT, trigger TEXT, requested_by TEXT, fingerprint TEXT,
    labels TEXT, opened_at REAL, updated_at REAL, closed_at REAL, reason TEXT,
    next_try_at REAL, step INTEGER, only_strategy TEXT, forced INTEGER, approved_step INTEGER,
    approved_by TEXT, attempt_id TEXT, attempts INTEGER, verify_until REAL,
    open_key TEXT UNIQUE, starts_at TEXT, held_by TEXT, interrupted_run TEXT
);
CREATE INDEX IF NOT EXISTS incidents_due ON incidents(state, next_try_at);
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents(opened_at);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, component TEXT NOT NULL, runbook TEXT, strategy TEXT, target TEXT,
    status TEXT NOT NULL, trigger TEXT, incident_id TEXT, attempt_id TEXT, kind TEXT,
    started_at REAL, finished_at REAL, check_mode INTEGER, fingerprint TEXT,
    requested_by TEXT, approved_by TEXT, forced INTEGER, reason TEXT,
    runbook_sha256 TEXT, playbook_sha256 TEXT,
    heartbeat_at REAL, claimed_by TEXT, claimed_until REAL, gate TEXT,
    count INTEGER, fingerprints TEXT, refusal_key TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_component ON runs(component, started_at);
CREATE INDEX IF NOT EXISTS runs_incident ON runs(incident_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs(fingerprint, started_at);
CREATE TABLE IF NOT EXISTS refusal_members (run_id TEXT, fingerprint TEXT, incident_id TEXT);
CREATE INDEX IF NOT EXISTS refusal_members_run ON refusal_members(run_id);
CREATE INDEX IF NOT EXISTS refusal_members_fingerprint ON refusal_members(fingerprint);
CREATE INDEX IF NOT EXISTS refusal_members_incident ON refusal_members(incident_id);
CREATE TABLE IF NOT EXISTS attempts (
    id TEXT PRIMARY KEY, incident_id TEXT, runbook TEXT, target TEXT,
    started_at REAL, finished_at REAL, outcome TEXT
);
CREATE INDEX IF NOT EXISTS attempts_key ON attempts(runbook, target, started_at);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts(started_at);
CREATE INDEX IF NOT EXISTS attempts_finished ON attempts(finished_at);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT PRIMARY KEY, incident_id TEXT, runbook TEXT, component TEXT, strategy TEXT,
    target TEXT, status TEXT, requested_by TEXT, requested_at REAL, expires_at REAL,
    decided_by TEXT, decided_at REAL, reason TEXT, plan TEXT
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals(status, expires_at);
CREATE TABLE IF NOT EXISTS locks (
    target TEXT PRIMARY KEY, holder TEXT, token INTEGER, acquired_at REAL, expires_at REAL,
    run_id TEXT, component TEXT
);
CREATE TABLE IF NOT EXISTS switches (
    id TEXT PRIMARY KEY, component TEXT, target TEXT, until REAL, reason TEXT,
    created_by TEXT, created_at REAL
);
CREATE TABLE IF NOT EXISTS degraded (
    mode TEXT, key TEXT, target TEXT, incident_id TEXT, manual INTEGER, reason TEXT,
    created_by TEXT, since REAL, PRIMARY KEY (mode, key)
);
CREATE TABLE IF NOT EXISTS counters (
    component TEXT, strategy TEXT, outcome TEXT, value REAL,
    PRIMARY KEY (component, strategy, outcome)
);
CREATE TABLE IF NOT EXISTS durations (
    component TEXT, strategy TEXT, buckets TEXT, total REAL, count REAL,
    PRIMARY KEY (component, strategy)
);
CREATE TABLE IF NOT EXISTS intake (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT, payload TEXT, received_at REAL,
    claimed_by TEXT, claimed_until REAL
);
CREATE TABLE IF NOT EXISTS intake_seen (dedup_key TEXT PRIMARY KEY, seen_at REAL);
CREATE TABLE IF NOT EXISTS resolved_alerts (fingerprint TEXT PRIMARY KEY, ends_at TEXT, at REAL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, actor TEXT, action TEXT, detail TEXT
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS fencing (name TEXT PRIMARY KEY, value INTEGER);
"""

# One row per dedup key (Delivery). Created (and its indexes) after ``_migrate`` has
# folded a table of the earlier shape, one row per delivery.
DELIVERIES_TABLE = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE, fingerprint TEXT,
    status TEXT, starts_at TEXT, received_at REAL, processed_at REAL, outcome TEXT,
    incident_id TEXT, run_id TEXT, replayed_by TEXT, payload TEXT, count INTEGER,
    first_received_at REAL, first_processed_at REAL, first_outcome TEXT
)"""
DELIVERIES_INDEXES = """
CREATE INDEX IF NOT EXISTS deliveries_of_alert ON deliveries(fingerprint, processed_at);
CREATE INDEX IF NOT EXISTS deliveries_of_incident ON deliveries(incident_id);
CREATE INDEX IF NOT EXISTS deliveries_processed ON deliveries(processed_at);
"""
DELIVERY_COLUMNS = ("dedup_key", "fingerprint", "status", "starts_at", "received_at",
                    "processed_at", "outcome", "incident_id", "run_id", "replayed_by",
                    "payload", "count", "first_received_at", "first_processed_at",
                    "first_outcome")
# A repeat of a kept key: counted, its latest fields replace the row's (the incident
# stays when the repeat names none); the first delivery's times and outcome stay.
_KEEP_DELIVERY = (
    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))}) "
    "ON CONFLICT(dedup_key) DO UPDATE SET received_at = excluded.received_at, "
    "processed_at = excluded.processed_at, outcome = excluded.outcome, "
    "incident_id = coalesce(excluded.incident_id, deliveries.incident_id), "
    "run_id = excluded.run_id, replayed_by = excluded.replayed_by, "
    "payload = coalesce(excluded.payload, deliveries.payload), "
    "count = deliveries.count + excluded.count")
# Folds a table of the earlier shape (``deliveries_unfolded``, one row per delivery)
# into one row per key; payloads as ``ack_intake`` keeps them.
_FOLD_DELIVERIES = f"""
INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)})
SELECT dedup_key, fingerprint, status, starts_at, received_at, processed_at, outcome,
       incident_id, run_id, replayed_by,
       CASE WHEN status = 'firing' AND newest_firing = 1 AND json_valid(payload) AND
                 coalesce(json_extract(payload, '$.labels.source'), '') != 'infra-recovery'
            THEN payload END,
       n, first_received_at, first_processed_at, first_outcome
FROM (SELECT *, fingerprint || '|' || coalesce(starts_at, '-') || '|' || status AS dedup_key,
             row_number() OVER per_key_newest AS newest,
             row_number() OVER (PARTITION BY fingerprint, status ORDER BY id DESC)
                 AS newest_firing,
             count(*) OVER per_key AS n,
             first_value(received_at) OVER per_key_oldest AS first_received_at,
             first_value(processed_at) OVER per_key_oldest AS first_processed_at,
             first_value(outcome) OVER per_key_oldest AS first_outcome
      FROM deliveries_unfolded
      WINDOW per_key AS (PARTITION BY fingerprint, starts_at, status),
             per_key_newest AS (per_key ORDER BY id DESC),
             per_key_oldest AS (per_key ORDER BY id))
WHERE newest = 1 ORDER BY id
"""

# An incident claimed or reopened for a new request: who asks now, and nothing of the
# last request's --force or --strategy (a SET clause; parameters trigger, requested_by).
_NEW_REQUEST = "trigger = ?, requested_by = ?, forced = 0, only_strategy = NULL"

_JSON_FIELDS = {"labels", "plan", "detail", "payload"}
_JSON_LISTS = {"fingerprints"}
_BOOL_FIELDS = {"check_mode", "forced", "manual"}


def _row_to(cls: type[T], row: sqlite3.Row) -> T:
    keys = row.keys()
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in keys:
            continue
        value = row[f.name]
        if f.name in _JSON_FIELDS:
            value = json.loads(value) if value else {}
        elif f.name in _JSON_LISTS:
            value = json.loads(value) if value else []
        elif f.name == "count" and cls is RunRecord:
            value = 1 if value is None else value   # a row from before counts existed
        elif f.name in _BOOL_FIELDS:
            value = bool(value)
        elif f.name == "state":
            value = IncidentState(value)
        elif f.name == "status" and cls is RunRecord:
            value = RunStatus(value)
        elif f.name == "outcome" and cls is Attempt:
            value = AttemptOutcome(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _to_column(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return json.dumps(value or {})
    if name in _JSON_LISTS:
        return json.dumps(list(value or []))
    if isinstance(value, (IncidentState, RunStatus, AttemptOutcome)):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _columns(obj: Any) -> dict[str, Any]:
    return {f.name: _to_column(f.name, getattr(obj, f.name)) for f in fields(obj)}


def _bucket_counts(raw: str) -> dict[str, float]:
    return json.loads(raw)


class _Enqueue:
    """One ``enqueue_alerts`` call waiting in a group commit."""

    __slots__ = ("items", "texts", "repeat_after", "deadline", "result", "error", "lead",
                 "done")

    def __init__(self, items: list[tuple[str, dict[str, Any]]], texts: list[str],
                 repeat_after: float | None, deadline: float) -> None:
        self.items, self.texts, self.repeat_after = items, texts, repeat_after
        self.deadline = deadline           # time.monotonic() by which the caller answers
        self.result: tuple[int, int] | None = None
        self.error: BaseException | None = None
        self.lead = False                  # promoted: journal the pending batch
        self.done = threading.Event()      # result or error set, or promoted


class _GroupCommit:
    """Leader/follower group commit, for the threads of one process (no thread of its
    own). A caller queues its request; if no transaction is on its way it leads: takes
    every request queued, runs ``journal(batch)`` (one transaction) and wakes each
    caller with its outcome. Callers that queue meanwhile wait; when the leader is done,
    the first of them leads the next batch. Every caller answers by its own deadline:
    a follower still queued then withdraws its request; one whose transaction is on its
    way is told the store is busy (its alerts may yet commit: Alertmanager's retry is
    deduplicated); a leader's transaction waits for the lock until the earliest deadline
    of its batch."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._mutex = threading.Lock()
        self._pending: list[_Enqueue] = []
        self._leading = False
        self._pid = os.getpid()   # a forked child starts afresh (no leader there)

    def submit(self, request: _Enqueue, journal: Callable[[list[_Enqueue]], None]
               ) -> tuple[int, int]:
        if self._pid != os.getpid():
            self._reset()
        with self._mutex:
            self._pending.append(request)
            lead = request.lead = not self._leading
            self._leading = True
        if not lead:
            self._follow(request)
        if request.lead:
            self._lead(request, journal)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _follow(self, request: _Enqueue) -> None:
        if request.done.wait(max(0.0, request.deadline - time.monotonic())):
            return
        with self._mutex:
            if request.lead or request.done.is_set():
                return
            if request in self._pending:   # no leader took it: nothing written
                self._pending.remove(request)
                raise StoreUnavailable("store busy: alerts not journaled in time")
        # In a transaction on its way: it may yet commit, and then a retry is a duplicate.
        raise StoreUnavailable("store busy: alerts not known journaled in time")

    def _lead(self, request: _Enqueue, journal: Callable[[list[_Enqueue]], None]) -> None:
        with self._mutex:
            batch, self._pending = self._pending, []
        try:
            journal(batch)
        except BaseException as exc:
            for other in batch:
                other.error = exc if other is request else _for_follower(exc)
        finally:
            with self._mutex:
                following = self._pending[0] if self._pending else None
                if following is None:
                    self._leading = False
                else:
                    following.lead = True
            for other in batch:
                if other is not request:
                    other.done.set()
            if following is not None:
                following.done.set()


def _for_follower(exc: BaseException) -> BaseException:
    """The leader's exception for another caller of the batch (one object is not
    raised in two threads: its traceback would be shared)."""
    if isinstance(exc, StoreUnavailable):
        copy = StoreUnavailable(str(exc))
    else:
        copy = StoreUnavailable(f"journaling the alerts failed: {type(exc).__name__}: {exc}")
    copy.__cause__ = exc
    return copy


def _parts(values: list[Any], size: int) -> Iterator[list[Any]]:
    """``values`` in slices of at most ``size`` (bound parameters of one statement)."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class SQLiteStore(Store):
    """``retry_open``: for the processes of a service, which must come up (and answer
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
        self._write_lock = _write_lock(self.path)
        self._intake_group = _GroupCommit()
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
            with self._busy_handler():   # writes outside _tx: SQLite's busy handler on
                self._conn().executescript(SCHEMA)  # commits by itself: not inside _tx
                self._migrate()
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

    def _migrate(self) -> None:
        """Columns added since a store was created (CREATE TABLE IF NOT EXISTS leaves an
        existing table as it was)."""
        conn = self._conn()
        for table, column, kind in (("incidents", "starts_at", "TEXT"),
                                    ("incidents", "held_by", "TEXT"),
                                    ("incidents", "interrupted_run", "TEXT"),
                                    ("runs", "gate", "TEXT"), ("runs", "count", "INTEGER"),
                                    ("runs", "fingerprints", "TEXT"),
                                    ("runs", "refusal_key", "TEXT")):
            columns = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column in columns:
                continue
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):   # another process added it first
                    raise
        # after the columns: an index on one an older store lacked until just now
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS runs_refusal ON runs(refusal_key) "
                     "WHERE refusal_key IS NOT NULL")
        self._fold_deliveries(conn)
        conn.execute(DELIVERIES_TABLE)
        conn.executescript(DELIVERIES_INDEXES)
        # resolve markers once kept in kv (one row per fingerprint, never pruned); looked
        # for first, so that opening a store takes no write lock once they are gone
        if conn.execute("SELECT 1 FROM kv WHERE key LIKE 'intake:resolved:%' LIMIT 1"
                        ).fetchone():
            conn.execute("DELETE FROM kv WHERE key LIKE 'intake:resolved:%'")

    @staticmethod
    def _fold_deliveries(conn: sqlite3.Connection) -> None:
        """A deliveries table of the earlier shape (one row per delivery, every payload)
        becomes one row per dedup key, once, whichever process opens the store first."""
        def unfolded() -> bool:
            columns = {r["name"] for r in conn.execute("PRAGMA table_info(deliveries)")}
            return bool(columns) and "dedup_key" not in columns

        if not unfolded():
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if unfolded():    # not folded by another process meanwhile
                conn.execute("ALTER TABLE deliveries RENAME TO deliveries_unfolded")
                conn.execute(DELIVERIES_TABLE)     # its indexes once the old ones are gone
                conn.execute(_FOLD_DELIVERIES)
                conn.execute("DROP TABLE deliveries_unfolded")   # and its indexes
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

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

    def _begin(self, conn: sqlite3.Connection, deadline: float | None = None) -> None:
        """``BEGIN IMMEDIATE``, holding this process's writer lock for the file: the
        threads of one process queue on the lock, another process's writer is waited for
        by retrying every 0.2-1 ms; until ``deadline`` (``time.monotonic()``; default:
        ``busy_timeout`` from now), then StoreUnavailable. On return the lock is held:
        the caller releases it after COMMIT or ROLLBACK."""
        if deadline is None:
            deadline = time.monotonic() + self.busy_timeout
        if not self._write_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise StoreUnavailable("store busy: no write turn in this process in time")
        delay = BUSY_FIRST_SLEEP
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.Error as exc:
                    left = deadline - time.monotonic()
                    if not _is_busy(exc) or left <= 0:
                        raise StoreUnavailable(f"store busy or unavailable: {exc}") from exc
                time.sleep(min(delay, left))
                delay = min(delay * 2, BUSY_MAX_SLEEP)
        except BaseException:
            self._write_lock.release()
            raise

    @contextmanager
    def _tx(self, deadline: float | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (IMMEDIATE) so read-then-write is atomic;
        the lock waited for until ``deadline`` (see ``_begin``)."""
        self._check_file()
        conn = self._conn()
        try:
            self._begin(conn, deadline)
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
            self._write_lock.release()

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        deadline = time.monotonic() + self.busy_timeout
        delay = BUSY_FIRST_SLEEP
        while True:
            try:
                return self._conn().execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                left = deadline - time.monotonic()
                if not _is_busy(exc) or left <= 0:
                    raise StoreUnavailable(f"store read failed: {exc}") from exc
            time.sleep(min(delay, left))
            delay = min(delay * 2, BUSY_MAX_SLEEP)

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

    def ping(self, *, write: bool = False, wait: float | None = None) -> None:
        self._check_file()
        self._read("SELECT 1")
        if write:
            # A row written for real: BEGIN and COMMIT alone write nothing, and pass on a
            # full disk and on a file SQLite has (quietly) opened read-only.
            why = unwritable(self.path) if self._identity is not None else None
            if why is not None:
                raise StoreUnavailable(why)
            bound = self.busy_timeout if wait is None else min(wait, self.busy_timeout)
            with self._tx(deadline=time.monotonic() + bound) as db:
                db.execute("INSERT INTO kv (key, value) VALUES ('write_probe', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (json.dumps(time.time()),))

    def maintain(self) -> None:
        conn = self._conn()
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            self._drop_if_read_only(conn, exc)
            raise StoreUnavailable(f"checkpoint failed: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()

    # -- incidents ----------
    def open_incident(self, incident: Incident) -> tuple[Incident, bool]:
        open_key = f"{incident.runbook}\x00{incident.target}"
        with self._tx() as db:
            row = db.execute("SELECT * FROM incidents WHERE open_key = ?", (open_key,)).fetchone()
            if row is not None:
                return _row_to(Incident, row), False
            values = _columns(incident)
            values["open_key"] = open_key
            self._insert(db, "incidents", values)
        return incident, True

    def get_incident(self, incident_id: str) -> Incident | None:
        rows = self._read("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return _row_to(Incident, rows[0]) if rows else None

    def latest_incident(self, runbook: str, target: str) -> Incident | None:
        rows = self._read("SELECT * FROM incidents WHERE runbook = ? AND target = ? "
                          "ORDER BY opened_at DESC LIMIT 1", (runbook, target))
        return _row_to(Incident, rows[0]) if rows else None

    def reopen_incident(self, incident_id: str, reason: str, *, trigger: str,
                        requested_by: str) -> Incident | None:
        now = time.time()
        try:
            with self._tx() as db:
                row = db.execute("SELECT * FROM incidents WHERE id = ?",
                                 (incident_id,)).fetchone()
                if row is None or row["state"] != IncidentState.RECOVERED.value:
                    return None
                db.execute(
                    "UPDATE incidents SET state = ?, open_key = ?, closed_at = NULL, "
                    "attempt_id = NULL, step = 0, next_try_at = NULL, verify_until = NULL, "
                    f"{_NEW_REQUEST}, reason = ?, updated_at = ? WHERE id = ?",
                    (IncidentState.REMEDIATING.value, f"{row['runbook']}\x00{row['target']}",
                     trigger, requested_by, reason, now, incident_id))
                row = db.execute("SELECT * FROM incidents WHERE id = ?",
                                 (incident_id,)).fetchone()
        except sqlite3.IntegrityError:  # another incident is open for it: attach to that
            return None
        return _row_to(Incident, row)

    def find_open_incident(self, runbook: str, target: str) -> Incident | None:
        rows = self._read("SELECT * FROM incidents WHERE open_key = ?", (f"{runbook}\x00{target}",))
        return _row_to(Incident, rows[0]) if rows else None

    def update_incident(self, incident_id: str, *, expect: Iterable[IncidentState] | None = None,
                        **changes: Any) -> Incident | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            if row is None:
                return None
            current = _row_to(Incident, row)
            if expect is not None and current.state not in set(expect):
                return None
            values = {k: _to_column(k, v) for k, v in changes.items()}
            new_state = changes.get("state")
            if new_state is not None:
                check_incident_transition(current.state, IncidentState(new_state))
                open_key = f"{current.runbook}\x00{current.target}"
                values["open_key"] = open_key if IncidentState(new_state).is_open else None
                if (IncidentState(new_state) != IncidentState.REMEDIATING
                        and "forced" not in changes):
                    values["forced"] = 0   # --force ends with the attempt in hand
            values["updated_at"] = changes.get("updated_at", time.time())
            self._update(db, "incidents", "id", incident_id, values)
            row = db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _row_to(Incident, row)

    def list_incidents(self, *, open_only: bool = False, component: str | None = None,
                       limit: int = 100) -> list[Incident]:
        where, params = [], []
        if open_only:
            where.append("open_key IS NOT NULL")
        if component:
            where.append("component = ?")
            params.append(component)
        sql = "SELECT * FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC LIMIT ?"
        return [_row_to(Incident, r) for r in self._read(sql, [*params, limit])]

    def claim_due_incident(self, now: float) -> Incident | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM incidents WHERE state = ? AND next_try_at IS NOT NULL "
                "AND next_try_at <= ? ORDER BY next_try_at LIMIT 1",
                (IncidentState.OPEN.value, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE incidents SET state = ?, next_try_at = NULL, updated_at = ? "
                "WHERE id = ?", (IncidentState.REMEDIATING.value, now, row["id"]),
            )
            row = db.execute("SELECT * FROM incidents WHERE id = ?", (row["id"],)).fetchone()
        return _row_to(Incident, row)

    # -- runs ----------
    def add_run(self, run: RunRecord) -> None:
        values = _columns(run)
        values["heartbeat_at"] = run.started_at
        with self._tx() as db:
            self._insert(db, "runs", values)

    def begin_step(self, run: RunRecord, attempt: Attempt | None, *,
                   resumed: bool = False) -> Incident | None:
        with self._tx() as db:
            # The incident must still be ours to act on: canceled or resolved since the
            # gates were asked, the step does not start. A step starting supersedes an
            # interrupted one: there is no unverified step left.
            cur = db.execute("UPDATE incidents SET updated_at = ?, interrupted_run = NULL "
                             "WHERE id = ? AND state = ?",
                             (run.started_at, run.incident_id,
                              IncidentState.REMEDIATING.value))
            if cur.rowcount != 1:
                raise TransitionError(f"incident {run.incident_id} is no longer remediating")
            if attempt is not None:
                self._insert(db, "attempts", _columns(attempt))
                db.execute("UPDATE incidents SET attempt_id = ?, attempts = attempts + 1 "
                           "WHERE id = ?", (attempt.id, run.incident_id))
            values = _columns(run)
            values["heartbeat_at"] = run.started_at
            if resumed:
                keep = ("status", "attempt_id", "reason", "approved_by", "started_at",
                        "forced", "heartbeat_at", "gate")
                values = {k: v for k, v in values.items() if k in keep}
                values.update(claimed_by=None, claimed_until=None)
                sets = ", ".join(f"{k} = ?" for k in values)
                cur = db.execute(
                    f"UPDATE runs SET {sets} WHERE id = ? AND status IN (?, ?)",
                    (*values.values(), run.id, RunStatus.QUEUED.value,
                     RunStatus.PENDING_APPROVAL.value))
                if cur.rowcount != 1:  # canceled (or taken) since it was claimed
                    raise TransitionError(f"run {run.id} is no longer waiting to run")
            else:
                self._insert(db, "runs", values)
            row = db.execute("SELECT * FROM incidents WHERE id = ?",
                             (run.incident_id,)).fetchone()
        return _row_to(Incident, row) if row else None

    def update_run(self, run_id: str, *, status: RunStatus | None = None,
                   **changes: Any) -> RunRecord | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            values = {k: _to_column(k, v) for k, v in changes.items()}
            if status is not None:
                old = RunStatus(row["status"])
                if status != old and status not in RUN_TRANSITIONS.get(old, frozenset()):
                    return None
                values["status"] = status.value
                if status == RunStatus.RUNNING:
                    values.setdefault("heartbeat_at", time.time())
                values["claimed_by"] = None
                values["claimed_until"] = None
            self._update(db, "runs", "id", run_id, values)
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to(RunRecord, row)

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _row_to(RunRecord, rows[0]) if rows else None

    def query_runs(self, *, component: str | None = None, since: float | None = None,
                   status: str | None = None, incident_id: str | None = None,
                   target: str | None = None, fingerprint: str | None = None,
                   limit: int | None = 100) -> list[RunRecord]:
        # A refusal record is found by each of the alerts (and incidents) it counts.
        members = [(f"({column} = ? OR id IN (SELECT run_id FROM refusal_members "
                    f"WHERE {column} = ?))", [value, value])
                   for column, value in (("incident_id", incident_id),
                                         ("fingerprint", fingerprint)) if value is not None]
        rows = self._select("runs", (("component", component), ("status", status),
                                     ("target", target)),
                            order="started_at DESC, id DESC", limit=limit,
                            since=("started_at", since), extra=members)
        return [_row_to(RunRecord, r) for r in rows]

    def add_refusal(self, run: RunRecord, key: str, *, max_fingerprints: int) -> RunRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM runs WHERE refusal_key = ?", (key,)).fetchone()
            if row is None:
                values = _columns(run)
                values.update(heartbeat_at=run.started_at, refusal_key=key, count=1,
                              fingerprints=json.dumps([run.fingerprint] if run.fingerprint
                                                      else []))
                self._insert(db, "runs", values)
                counted, run_id = 0, run.id
            else:
                counted, run_id = int(row["count"] or 1), row["id"]
                listed = json.loads(row["fingerprints"] or "[]")
                if (run.fingerprint and run.fingerprint not in listed
                        and len(listed) < max_fingerprints):
                    listed.append(run.fingerprint)
                db.execute("UPDATE runs SET count = count + 1, fingerprints = ? WHERE id = ?",
                           (json.dumps(listed), run_id))
            if counted < max_fingerprints and (run.fingerprint or run.incident_id):
                db.execute("INSERT INTO refusal_members VALUES (?, ?, ?)",
                           (run_id, run.fingerprint, run.incident_id))
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to(RunRecord, row)

    def claim_queued_run(self, holder: str, now: float, lease: float) -> RunRecord | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM runs WHERE status = ? AND (claimed_until IS NULL "
                "OR claimed_until < ?) ORDER BY started_at LIMIT 1",
                (RunStatus.QUEUED.value, now),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE runs SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                       (holder, now + lease, row["id"]))
        return _row_to(RunRecord, row)

    def claim_run(self, run_id: str, holder: str, now: float, lease: float) -> RunRecord | None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE runs SET claimed_by = ?, claimed_until = ? WHERE id = ? AND status = ? "
                "AND (claimed_until IS NULL OR claimed_until < ?)",
                (holder, now + lease, run_id, RunStatus.QUEUED.value, now))
            if cur.rowcount != 1:
                return None
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row_to(RunRecord, row)

    def claim_incident(self, incident_id: str, now: float, *, trigger: str,
                       requested_by: str) -> Incident | None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE incidents SET state = ?, next_try_at = NULL, "
                # an operator's --strategy chose the step: the new request starts afresh
                "step = CASE WHEN only_strategy IS NOT NULL AND attempt_id IS NULL THEN 0 "
                f"ELSE step END, {_NEW_REQUEST}, updated_at = ? "
                "WHERE id = ? AND state = ? AND (next_try_at IS NULL OR next_try_at <= ?)",
                (IncidentState.REMEDIATING.value, trigger, requested_by, now, incident_id,
                 IncidentState.OPEN.value, now))
            if cur.rowcount != 1:
                return None
            row = db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _row_to(Incident, row)

    def heartbeat_runs(self, run_ids: Iterable[str], now: float) -> None:
        ids = list(run_ids)
        if not ids:
            return
        with self._tx() as db:
            db.executemany("UPDATE runs SET heartbeat_at = ? WHERE id = ?",
                           [(now, i) for i in ids])

    def stale_running_runs(self, heartbeat_before: float) -> list[RunRecord]:
        rows = self._read("SELECT * FROM runs WHERE status = ? AND heartbeat_at < ?",
                          (RunStatus.RUNNING.value, heartbeat_before))
        return [_row_to(RunRecord, r) for r in rows]

    # -- attempts ----------
    def finish_attempt(self, attempt_id: str, outcome: AttemptOutcome, at: float) -> None:
        with self._tx() as db:  # once: a late finish never rewrites how an attempt ended
            db.execute("UPDATE attempts SET outcome = ?, finished_at = ? WHERE id = ? "
                       "AND outcome = ?", (outcome.value, at, attempt_id,
                                           AttemptOutcome.RUNNING.value))

    def attempts_since(self, runbook: str, target: str, since: float) -> list[Attempt]:
        rows = self._read(
            "SELECT * FROM attempts WHERE runbook = ? AND target = ? AND started_at >= ? "
            "ORDER BY started_at", (runbook, target, since))
        return [_row_to(Attempt, r) for r in rows]

    def last_failed_attempt(self, runbook: str, target: str) -> Attempt | None:
        rows = self._read(
            "SELECT * FROM attempts WHERE runbook = ? AND target = ? AND outcome = ? "
            "ORDER BY finished_at DESC LIMIT 1",
            (runbook, target, AttemptOutcome.FAILED.value))
        return _row_to(Attempt, rows[0]) if rows else None

    def attempt_keys_since(self, since: float) -> set[tuple[str, str]]:
        rows = self._read("SELECT DISTINCT runbook, target FROM attempts WHERE started_at >= ? "
                          "UNION SELECT DISTINCT runbook, target FROM attempts "
                          "WHERE finished_at >= ?", (since, since))
        return {(r["runbook"], r["target"]) for r in rows}

    # -- approvals ----------
    def add_approval(self, approval: Approval) -> None:
        with self._tx() as db:
            self._insert(db, "approvals", _columns(approval), verb="INSERT OR REPLACE")

    def get_approval(self, run_id: str) -> Approval | None:
        rows = self._read("SELECT * FROM approvals WHERE run_id = ?", (run_id,))
        return _row_to(Approval, rows[0]) if rows else None

    def list_approvals(self, status: str | None = "pending") -> list[Approval]:
        if status is None:
            rows = self._read("SELECT * FROM approvals ORDER BY requested_at DESC")
        else:
            rows = self._read("SELECT * FROM approvals WHERE status = ? ORDER BY requested_at",
                              (status,))
        return [_row_to(Approval, r) for r in rows]

    def decide_approval(self, run_id: str, *, status: str, by: str | None, reason: str,
                        at: float, expect: str = "pending") -> Approval | None:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, reason = ? "
                "WHERE run_id = ? AND status = ?", (status, by, at, reason, run_id, expect))
            if cur.rowcount != 1:
                return None
            row = db.execute("SELECT * FROM approvals WHERE run_id = ?", (run_id,)).fetchone()
        return _row_to(Approval, row)

    def due_approvals(self, now: float) -> list[Approval]:
        rows = self._read("SELECT * FROM approvals WHERE status = 'pending' AND expires_at <= ?",
                          (now,))
        return [_row_to(Approval, r) for r in rows]

    # -- locks ----------
    def acquire_lock(self, target: str, holder: str, ttl: float, *, run_id: str | None = None,
                     component: str | None = None) -> Lock | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT * FROM locks WHERE target = ?", (target,)).fetchone()
            if row is not None and row["expires_at"] > now:
                return None
            db.execute("INSERT INTO fencing (name, value) VALUES ('lock', 1) "
                       "ON CONFLICT(name) DO UPDATE SET value = value + 1")
            token = db.execute("SELECT value FROM fencing WHERE name = 'lock'").fetchone()[0]
            lock = Lock(target=target, holder=holder, token=token, acquired_at=now,
                        expires_at=now + ttl, run_id=run_id, component=component)
            self._insert(db, "locks", _columns(lock), verb="INSERT OR REPLACE")
        return lock

    def renew_lock(self, target: str, token: int, ttl: float) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE locks SET expires_at = ? WHERE target = ? AND token = ?",
                             (time.time() + ttl, target, token))
            return cur.rowcount == 1

    def release_lock(self, target: str, token: int) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM locks WHERE target = ? AND token = ?", (target, token))
            return cur.rowcount == 1

    def get_lock(self, target: str) -> Lock | None:
        rows = self._read("SELECT * FROM locks WHERE target = ? AND expires_at > ?",
                          (target, time.time()))
        return _row_to(Lock, rows[0]) if rows else None

    def break_lock(self, target: str) -> Lock | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM locks WHERE target = ?", (target,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM locks WHERE target = ?", (target,))
        return _row_to(Lock, row)

    def list_locks(self) -> list[Lock]:
        rows = self._read("SELECT * FROM locks WHERE expires_at > ? ORDER BY target",
                          (time.time(),))
        return [_row_to(Lock, r) for r in rows]

    # -- switches ----------
    def add_switch(self, switch: Switch) -> None:
        with self._tx() as db:
            self._insert(db, "switches", _columns(switch))

    def remove_switches(self, component: str | None, target: str | None) -> list[Switch]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM switches WHERE component IS ? AND target IS ?",
                (component, target)).fetchall()
            db.execute("DELETE FROM switches WHERE component IS ? AND target IS ?",
                       (component, target))
        return [_row_to(Switch, r) for r in rows]

    def active_switches(self, now: float) -> list[Switch]:
        rows = self._read("SELECT * FROM switches WHERE until IS NULL OR until > ? "
                          "ORDER BY created_at", (now,))
        return [_row_to(Switch, r) for r in rows]

    # -- degraded modes ----------
    def add_degraded(self, reason: DegradedReason) -> None:
        with self._tx() as db:
            self._insert(db, "degraded", _columns(reason), verb="INSERT OR REPLACE")

    def clear_degraded(self, *, mode: str | None = None, target: str | None = None,
                       manual: bool | None = False) -> list[DegradedReason]:
        where, params = [], []
        if mode is not None:
            where.append("mode = ?")
            params.append(mode)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if manual is not None:
            where.append("manual = ?")
            params.append(int(manual))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._tx() as db:
            rows = db.execute(f"SELECT * FROM degraded{clause}", params).fetchall()
            db.execute(f"DELETE FROM degraded{clause}", params)
        return [_row_to(DegradedReason, r) for r in rows]

    def degraded_reasons(self, mode: str | None = None) -> list[DegradedReason]:
        if mode is None:
            rows = self._read("SELECT * FROM degraded ORDER BY mode, since")
        else:
            rows = self._read("SELECT * FROM degraded WHERE mode = ? ORDER BY since", (mode,))
        return [_row_to(DegradedReason, r) for r in rows]

    # -- metrics ----------
    def record_outcome(self, component: str, strategy: str, outcome: str,
                       duration: float | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters VALUES (?, ?, ?, 1) ON CONFLICT(component, strategy, "
                "outcome) DO UPDATE SET value = value + 1", (component, strategy, outcome))
            if duration is None:
                return
            row = db.execute("SELECT buckets, total, count FROM durations WHERE component = ? "
                             "AND strategy = ?", (component, strategy)).fetchone()
            # Counts keyed by bound, so changing DURATION_BUCKETS never breaks old rows.
            counts = _bucket_counts(row["buckets"]) if row else {}
            for bound in DURATION_BUCKETS:
                if duration <= bound:
                    counts[repr(bound)] = counts.get(repr(bound), 0) + 1
            total = (row["total"] if row else 0.0) + duration
            count = (row["count"] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO durations VALUES (?, ?, ?, ?, ?)",
                       (component, strategy, json.dumps(counts), total, count))

    def counters(self) -> list[CounterRow]:
        rows = self._read("SELECT * FROM counters ORDER BY component, strategy, outcome")
        return [CounterRow(r["component"], r["strategy"], r["outcome"], r["value"]) for r in rows]

    def durations(self) -> list[DurationRow]:
        out = []
        for r in self._read("SELECT * FROM durations ORDER BY component, strategy"):
            counts = _bucket_counts(r["buckets"])
            buckets = [(b, float(counts.get(repr(b), 0))) for b in DURATION_BUCKETS]
            buckets.append((float("inf"), float(r["count"])))
            out.append(DurationRow(r["component"], r["strategy"], buckets, r["total"], r["count"]))
        return out

    # -- intake queue ----------
    def enqueue_alerts(self, items: list[tuple[str, dict[str, Any]]], *,
                       repeat_after: float | None = None,
                       wait: float | None = None) -> tuple[int, int]:
        """Journal the alerts not seen before (by dedup key), in order, and a firing one
        seen more than ``repeat_after`` seconds ago again: (accepted, duplicates), once
        committed.

        Group commit: the calls of one process's threads that arrive while a transaction
        of theirs is on its way are journaled together in the next one, by one of them
        (the leader; ``_GroupCommit``), each caller getting its own counts as if it had
        been alone, in turn. One transaction of a handful of statements, whatever the
        number of alerts and callers (the keys already seen, one multi-row INSERT per
        table), the JSON encoded before: each statement lets go of the GIL, and a thread
        that has to wait to get it back keeps the write lock all that time."""
        if not items:
            return 0, 0
        bound = self.busy_timeout if wait is None else min(wait, self.busy_timeout)
        request = _Enqueue(items, [json.dumps(payload) for _, payload in items],
                           repeat_after, time.monotonic() + bound)
        return self._intake_group.submit(request, self._journal_alerts)

    def _journal_alerts(self, batch: list[_Enqueue]) -> None:
        """One transaction for the requests of ``batch``, in order; sets their counts."""
        now = time.time()
        keys = list(dict.fromkeys(key for request in batch for key, _ in request.items))
        counts = []
        with self._tx(deadline=min(request.deadline for request in batch)) as db:
            seen: dict[str, float | None] = {}
            for part in _parts(keys, 900):
                marks = ",".join("?" * len(part))
                seen.update(db.execute(f"SELECT dedup_key, seen_at FROM intake_seen "
                                       f"WHERE dedup_key IN ({marks})", part).fetchall())
            fresh: list[Any] = []
            repeated: list[str] = []
            journal: list[Any] = []
            for request in batch:
                accepted = duplicates = 0
                repeat_after = request.repeat_after
                for (key, payload), text in zip(request.items, request.texts, strict=True):
                    if key in seen:   # in the store, or earlier in this batch
                        duplicates += 1
                        # A firing alert repeated after a while is still a signal (the fix
                        # may not have held): journal it again, at most once per
                        # repeat_after.
                        if repeat_after is None or payload.get("status") != "firing":
                            continue
                        last = seen[key]
                        if last is None or not last < now - repeat_after:
                            continue
                        repeated.append(key)
                    else:
                        accepted += 1
                        fresh += (key, now)
                    seen[key] = now
                    journal += (key, text, now)
                counts.append((accepted, duplicates))
            for part in _parts(fresh, 2 * _ROWS_PER_INSERT):
                db.execute("INSERT INTO intake_seen (dedup_key, seen_at) VALUES "
                           + ",".join(["(?,?)"] * (len(part) // 2)), part)
            for part in _parts(repeated, 900):
                db.execute(f"UPDATE intake_seen SET seen_at = ? WHERE dedup_key IN "
                           f"({','.join('?' * len(part))})", (now, *part))
            for part in _parts(journal, 3 * _ROWS_PER_INSERT):
                db.execute("INSERT INTO intake (dedup_key, payload, received_at) VALUES "
                           + ",".join(["(?,?,?)"] * (len(part) // 3)), part)
        for request, result in zip(batch, counts, strict=True):   # committed
            request.result = result

    def claim_intake(self, holder: str, limit: int, lease: float) -> list[IntakeItem]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM intake WHERE claimed_until IS NULL OR claimed_until < ? "
                "ORDER BY id LIMIT ?", (now, limit)).fetchall()
            ids = [r["id"] for r in rows]
            for part in _parts(ids, 900):
                db.execute(f"UPDATE intake SET claimed_by = ?, claimed_until = ? WHERE id IN "
                           f"({','.join('?' * len(part))})", (holder, now + lease, *part))
        return [IntakeItem(r["id"], r["dedup_key"], json.loads(r["payload"]), r["received_at"])
                for r in rows]

    def intake_claims(self, now: float) -> list[tuple[str, float]]:
        rows = self._read("SELECT DISTINCT claimed_by, claimed_until FROM intake "
                          "WHERE claimed_by IS NOT NULL AND claimed_until >= ?", (now,))
        return [(r["claimed_by"], r["claimed_until"]) for r in rows]

    def release_intake(self, claims: Iterable[tuple[str, float]]) -> int:
        claims = list(claims)
        if not claims:
            return 0
        released = 0
        with self._tx() as db:
            for holder, until in claims:
                released += db.execute(
                    "UPDATE intake SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE claimed_by = ? AND claimed_until = ?", (holder, until)).rowcount
        return released

    def ack_intake(self, ids: Iterable[int], deliveries: Iterable[Delivery] = ()) -> None:
        """One row per dedup key (``_KEEP_DELIVERY``; the batch folded first, written with
        ``executemany``); a payload only on the newest firing delivery of each
        fingerprint (the one a replay re-queues): the others of that fingerprint drop
        theirs."""
        ids, kept = list(ids), list(deliveries)
        if not ids and not kept:
            return
        first: dict[str, Delivery] = {}
        last: dict[str, Delivery] = {}
        count: dict[str, int] = {}
        incident: dict[str, str | None] = {}
        newest_firing: dict[str, Delivery] = {}
        for d in kept:
            key = d.dedup_key
            first.setdefault(key, d)
            last[key] = d
            count[key] = count.get(key, 0) + 1
            incident[key] = d.incident_id or incident.get(key)
            if d.status == "firing" and d.payload:
                newest_firing[d.fingerprint] = d
        payloads = {d.dedup_key: json.dumps(d.payload) for d in newest_firing.values()}
        rows = [(key, d.fingerprint, d.status, d.starts_at, d.received_at, d.processed_at,
                 d.outcome, incident[key], d.run_id, d.replayed_by, payloads.get(key),
                 count[key], first[key].received_at, first[key].processed_at,
                 first[key].outcome) for key, d in last.items()]
        with self._tx() as db:
            for part in _parts(ids, 900):
                db.execute(f"DELETE FROM intake WHERE id IN ({','.join('?' * len(part))})",
                           part)
            db.executemany(_KEEP_DELIVERY, rows)
            db.executemany("UPDATE deliveries SET payload = NULL WHERE fingerprint = ? AND "
                           "dedup_key != ? AND payload IS NOT NULL",
                           [(fp, d.dedup_key) for fp, d in newest_firing.items()])

    def deliveries(self, *, fingerprint: str | None = None, incident_id: str | None = None,
                   limit: int | None = 100) -> list[Delivery]:
        rows = self._select("deliveries", (("fingerprint", fingerprint),
                                           ("incident_id", incident_id)),
                            order="processed_at DESC, id DESC", limit=limit)
        return [_row_to(Delivery, r) for r in rows]

    def intake_depth(self, now: float) -> tuple[int, float]:
        row = self._read("SELECT COUNT(*) AS n, MIN(received_at) AS oldest FROM intake")[0]
        return int(row["n"]), (now - row["oldest"]) if row["oldest"] else 0.0

    # -- audit events and housekeeping ----------
    def add_event(self, event: AuditEvent) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                       (event.at, event.actor, event.action, json.dumps(event.detail)))

    def list_events(self, limit: int = 100) -> list[AuditEvent]:
        rows = self._read("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [_row_to(AuditEvent, r) for r in rows]

    def delete_before(self, before: float) -> list[str]:
        with self._tx() as db:
            rows = db.execute("SELECT id FROM runs WHERE finished_at IS NOT NULL "
                              "AND finished_at < ?", (before,)).fetchall()
            ids = [r["id"] for r in rows]
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM refusal_members WHERE run_id = ?", [(i,) for i in ids])
            db.execute("DELETE FROM incidents WHERE open_key IS NULL AND closed_at < ?",
                       (before,))
            db.execute("DELETE FROM attempts WHERE finished_at < ?", (before,))
            db.execute("DELETE FROM approvals WHERE status != 'pending' AND decided_at < ?",
                       (before,))
            db.execute("DELETE FROM events WHERE at < ?", (before,))
            db.execute("DELETE FROM intake_seen WHERE seen_at < ?", (before,))
            db.execute("DELETE FROM resolved_alerts WHERE at < ?", (before,))
            db.execute("DELETE FROM deliveries WHERE processed_at < ?", (before,))
            db.execute("DELETE FROM kv WHERE key LIKE 'cancel:%' "
                       "AND json_extract(value, '$.at') < ?", (before,))
        return ids

    def mark_resolved(self, fingerprint: str, ends_at: str, at: float) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO resolved_alerts VALUES (?, ?, ?) ON CONFLICT(fingerprint) "
                       "DO UPDATE SET ends_at = max(ends_at, excluded.ends_at), "
                       "at = excluded.at", (fingerprint, ends_at, at))

    def resolved_until(self, fingerprint: str) -> tuple[str, float] | None:
        rows = self._read("SELECT ends_at, at FROM resolved_alerts WHERE fingerprint = ?",
                          (fingerprint,))
        return (rows[0]["ends_at"], rows[0]["at"]) if rows else None

    def set_value(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    def get_value(self, key: str) -> Any:
        rows = self._read("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else None

    def update_value(self, key: str, update: Callable[[Any], Any]) -> Any:
        with self._tx() as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            value = update(json.loads(row["value"]) if row else None)
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))
        return value
