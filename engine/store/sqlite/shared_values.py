"""Shared values in SQLite (``engine.store.shared_values.SharedValues``): the ``kv``
table, JSON values."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.store.shared_values import SharedValues
from engine.store.sqlite.connection import SQLiteConnection


class SQLiteSharedValues(SQLiteConnection, SharedValues):
    """``update_value`` reads and writes in one write transaction: atomic against every
    process."""

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
