"""The run index in SQLite (``engine.store.run_index.RunIndex``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from engine.lifecycle import RUN_TRANSITIONS, RunStatus
from engine.records import RunRecord
from engine.store.fencing import Fence
from engine.store.run_index import RunIndex
from engine.store.sqlite.connection import SQLiteConnection
from engine.store.sqlite.fencing import check_fence
from engine.store.sqlite.rows import columns, row_to, to_column


class SQLiteRunIndex(SQLiteConnection, RunIndex):
    """A row of ``runs`` per run; the alerts and incidents a refusal record counts are
    rows of ``refusal_members``."""

    def add_run(self, run: RunRecord) -> None:
        values = columns(run)
        values["heartbeat_at"] = run.started_at
        with self._tx() as db:
            self._insert(db, "runs", values)

    def update_run(self, run_id: str, *, status: RunStatus | None = None,
                   fence: Fence | None = None, **changes: Any) -> RunRecord | None:
        with self._tx() as db:
            check_fence(db, fence)
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            values = {k: to_column(k, v) for k, v in changes.items()}
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
        return row_to(RunRecord, row)

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return row_to(RunRecord, rows[0]) if rows else None

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
        return [row_to(RunRecord, r) for r in rows]

    def add_refusal(self, run: RunRecord, key: str, *, max_fingerprints: int) -> RunRecord:
        with self._tx() as db:
            row = db.execute("SELECT * FROM runs WHERE refusal_key = ?", (key,)).fetchone()
            if row is None:
                values = columns(run)
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
        return row_to(RunRecord, row)

    def claim_queued_run(self, holder: str, now: float, lease: float) -> RunRecord | None:
        with self._tx() as db:
            row = self._take_first(
                db, "SELECT * FROM runs WHERE status = ? AND (claimed_until IS NULL "
                "OR claimed_until < ?) ORDER BY started_at LIMIT 1",
                (RunStatus.QUEUED.value, now),
                "UPDATE runs SET claimed_by = ?, claimed_until = ? WHERE id = ?",
                (holder, now + lease))
        return row_to(RunRecord, row) if row is not None else None   # as it was found

    def claim_run(self, run_id: str, holder: str, now: float, lease: float) -> RunRecord | None:
        return self._change_one(
            RunRecord, "UPDATE runs SET claimed_by = ?, claimed_until = ? WHERE id = ? "
            "AND status = ? AND (claimed_until IS NULL OR claimed_until < ?)",
            (holder, now + lease, run_id, RunStatus.QUEUED.value, now), table="runs", key="id",
            value=run_id)

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
        return [row_to(RunRecord, r) for r in rows]
