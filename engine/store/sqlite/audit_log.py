"""The audit log in SQLite (``engine.store.audit_log.AuditLog``): the ``events`` table."""

from __future__ import annotations

import json

from engine.records import AuditEvent
from engine.store.audit_log import AuditLog
from engine.store.sqlite.connection import SQLiteConnection
from engine.store.sqlite.rows import row_to


class SQLiteAuditLog(SQLiteConnection, AuditLog):
    """Events in the order they were added (their ids), listed newest first."""

    def add_event(self, event: AuditEvent) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                       (event.at, event.actor, event.action, json.dumps(event.detail)))

    def list_events(self, limit: int = 100) -> list[AuditEvent]:
        rows = self._read("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [row_to(AuditEvent, r) for r in rows]
