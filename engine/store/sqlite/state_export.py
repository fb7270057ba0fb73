"""A SQLite store read whole, for ``recovery store migrate`` (engine.store.migrate): every
table in one read transaction (one consistent snapshot), the file opened read-only, so
reading it never changes the install being moved away from.

The tables are read here rather than through the protocols because the protocols list
what a caller asks about (an incident, a window, the newest N), not every record with
what is kept beside it: a run's claim, heartbeat and refusal members, a delivery's fold
and id, the resolve marks, the dedup keys, the last fencing token.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.records import (
    Approval,
    Attempt,
    AuditEvent,
    DegradedReason,
    Incident,
    RunRecord,
    Switch,
)
from engine.store.outcome_metrics import DURATION_BUCKETS, STRATEGY_BUCKETS, CounterRow, DeferralRow
from engine.store.sqlite.outcome_metrics import histogram_row
from engine.store.sqlite.rows import row_to
from engine.store.state_snapshot import PER_PROCESS_VALUES, SourceActivity, StateSnapshot


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"no SQLite store at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=15.0,
                           isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _activity(conn: sqlite3.Connection, at: float) -> SourceActivity:
    """What a service is doing on the store (nothing, once stopped and drained)."""
    running = [r["id"] for r in conn.execute(
        "SELECT id FROM runs WHERE status = 'running' ORDER BY started_at")]
    waiting, claimed = conn.execute(
        "SELECT count(*), count(claimed_until > ? OR NULL) FROM intake", (at,)).fetchone()
    locks = [r["target"] for r in conn.execute(
        "SELECT target FROM locks WHERE expires_at > ? ORDER BY target", (at,))]
    return SourceActivity(running, int(waiting), int(claimed), locks)


def _runs(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    members: dict[str, list[list[str | None]]] = {}
    for m in conn.execute("SELECT * FROM refusal_members ORDER BY rowid"):
        members.setdefault(m["run_id"], []).append([m["fingerprint"], m["incident_id"]])
    found = []
    for r in conn.execute("SELECT * FROM runs ORDER BY started_at, id"):
        run, row = row_to(RunRecord, r), dict(r)   # a column a store lacks: None
        values = {**asdict(run), "status": run.status.value,
                  **{name: row.get(name) for name in ("claimed_by", "claimed_until",
                                                      "refusal_key", "heartbeat_at")},
                  "members": members.get(run.id, [])}
        found.append(values)
    return found


def _deliveries(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    found = []
    for r in conn.execute("SELECT * FROM deliveries ORDER BY id"):
        values = dict(r)
        values["payload"] = json.loads(r["payload"]) if r["payload"] else None
        found.append(values)
    return found


def export_sqlite(path: Path) -> tuple[StateSnapshot, SourceActivity]:
    """Every kind of state of the store at ``path``, but locks and the intake waiting;
    and what a service is doing on it, read in the same transaction (a refusal and the
    copy judge one and the same state)."""
    conn = _connect(path)
    try:
        conn.execute("BEGIN")   # one read transaction: one snapshot of every table
        activity = _activity(conn, time.time())
        snap = StateSnapshot(
            incidents=[row_to(Incident, r) for r in
                       conn.execute("SELECT * FROM incidents ORDER BY opened_at, id")],
            attempts=[row_to(Attempt, r) for r in
                      conn.execute("SELECT * FROM attempts ORDER BY started_at, id")],
            runs=_runs(conn),
            approvals=[row_to(Approval, r) for r in
                       conn.execute("SELECT * FROM approvals ORDER BY requested_at")],
            switches=[row_to(Switch, r) for r in
                      conn.execute("SELECT * FROM switches ORDER BY created_at")],
            degraded=[row_to(DegradedReason, r) for r in
                      conn.execute("SELECT * FROM degraded ORDER BY mode, key")],
            events=[row_to(AuditEvent, r) for r in
                    conn.execute("SELECT * FROM events ORDER BY id")],
            values={r["key"]: json.loads(r["value"]) for r in
                    conn.execute("SELECT key, value FROM kv ORDER BY key")
                    if r["key"] not in PER_PROCESS_VALUES},
            counters=[CounterRow(r["component"], r["strategy"], r["outcome"], r["value"])
                      for r in conn.execute("SELECT * FROM counters")],
            host_counters=[CounterRow(r["component"], r["strategy"], r["outcome"], r["value"])
                           for r in conn.execute("SELECT * FROM host_counters")],
            deferrals=[DeferralRow(r["component"], r["gate"], r["value"])
                       for r in conn.execute("SELECT * FROM deferrals")],
            durations=[histogram_row(r, DURATION_BUCKETS) for r in
                       conn.execute("SELECT * FROM durations")],
            strategy_durations=[histogram_row(r, STRATEGY_BUCKETS, r["outcome"]) for r in
                                conn.execute("SELECT * FROM strategy_durations")],
            deliveries=_deliveries(conn),
            resolved=[(r["fingerprint"], r["ends_at"], r["at"]) for r in
                      conn.execute("SELECT * FROM resolved_alerts ORDER BY fingerprint")],
            dedup_keys=[(r["dedup_key"], r["seen_at"]) for r in
                        conn.execute("SELECT * FROM intake_seen ORDER BY dedup_key")],
        )
        snap.fencing = {r["name"]: int(r["value"]) for r in
                        conn.execute("SELECT name, value FROM fencing")}
        conn.execute("COMMIT")
    finally:
        conn.close()
    return snap, activity
