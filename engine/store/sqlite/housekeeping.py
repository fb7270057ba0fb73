"""Housekeeping of the SQLite store (``engine.store.housekeeping.Housekeeping``): the
history pruned in one transaction, a write probe that writes for real, checkpoints."""

from __future__ import annotations

import json
import sqlite3
import time

from engine.store.base import StoreUnavailable
from engine.store.housekeeping import Housekeeping
from engine.store.sqlite.connection import SQLiteConnection
from engine.store.sqlite.database_file import unwritable


class SQLiteHousekeeping(SQLiteConnection, Housekeeping):
    """Every table's retention in one place (``delete_before``); ``close`` is the
    connection's."""

    def delete_before(self, before: float) -> list[str]:
        with self._tx() as db:
            rows = db.execute("SELECT id FROM runs WHERE finished_at IS NOT NULL "
                              "AND finished_at < ?", (before,)).fetchall()
            ids = [r["id"] for r in rows]
            db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM refusal_members WHERE run_id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM run_accounts WHERE run_id = ?", [(i,) for i in ids])
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
