"""The gates' state in SQLite (``engine.store.gate_state``): cooldowns read from the
attempts, approvals, locks with a fencing counter, kill switches, degraded modes."""

from __future__ import annotations

import time

from engine.lifecycle import AttemptOutcome
from engine.records import Approval, Attempt, DegradedReason, Lock, Switch
from engine.store.gate_state import GateState
from engine.store.sqlite.connection import SQLiteConnection
from engine.store.sqlite.rows import columns, row_to


class SQLiteGateState(SQLiteConnection, GateState):
    """One table per gate's state; lock tokens come from the ``fencing`` row ``lock``,
    which only grows."""


    # -- cooldowns ----------

    def attempts_since(self, runbook: str, target: str, since: float) -> list[Attempt]:
        rows = self._read(
            "SELECT * FROM attempts WHERE runbook = ? AND target = ? AND started_at >= ? "
            "ORDER BY started_at", (runbook, target, since))
        return [row_to(Attempt, r) for r in rows]

    def last_failed_attempt(self, runbook: str, target: str) -> Attempt | None:
        rows = self._read(
            "SELECT * FROM attempts WHERE runbook = ? AND target = ? AND outcome = ? "
            "ORDER BY finished_at DESC LIMIT 1",
            (runbook, target, AttemptOutcome.FAILED.value))
        return row_to(Attempt, rows[0]) if rows else None

    def attempt_keys_since(self, since: float) -> set[tuple[str, str]]:
        rows = self._read("SELECT DISTINCT runbook, target FROM attempts WHERE started_at >= ? "
                          "UNION SELECT DISTINCT runbook, target FROM attempts "
                          "WHERE finished_at >= ?", (since, since))
        return {(r["runbook"], r["target"]) for r in rows}

    # -- approvals ----------

    def add_approval(self, approval: Approval) -> None:
        with self._tx() as db:
            self._insert(db, "approvals", columns(approval), verb="INSERT OR REPLACE")

    def get_approval(self, run_id: str) -> Approval | None:
        rows = self._read("SELECT * FROM approvals WHERE run_id = ?", (run_id,))
        return row_to(Approval, rows[0]) if rows else None

    def list_approvals(self, status: str | None = "pending") -> list[Approval]:
        if status is None:
            rows = self._read("SELECT * FROM approvals ORDER BY requested_at DESC")
        else:
            rows = self._read("SELECT * FROM approvals WHERE status = ? ORDER BY requested_at",
                              (status,))
        return [row_to(Approval, r) for r in rows]

    def decide_approval(self, run_id: str, *, status: str, by: str | None, reason: str,
                        at: float, expect: str = "pending") -> Approval | None:
        return self._change_one(
            Approval, "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, "
            "reason = ? WHERE run_id = ? AND status = ?",
            (status, by, at, reason, run_id, expect), table="approvals", key="run_id",
            value=run_id)

    def due_approvals(self, now: float) -> list[Approval]:
        rows = self._read("SELECT * FROM approvals WHERE status = 'pending' AND expires_at <= ?",
                          (now,))
        return [row_to(Approval, r) for r in rows]

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
            self._insert(db, "locks", columns(lock), verb="INSERT OR REPLACE")
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
        return row_to(Lock, rows[0]) if rows else None

    def break_lock(self, target: str) -> Lock | None:
        with self._tx() as db:
            row = db.execute("SELECT * FROM locks WHERE target = ?", (target,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM locks WHERE target = ?", (target,))
        return row_to(Lock, row)

    def list_locks(self) -> list[Lock]:
        rows = self._read("SELECT * FROM locks WHERE expires_at > ? ORDER BY target",
                          (time.time(),))
        return [row_to(Lock, r) for r in rows]

    # -- switches ----------

    def add_switch(self, switch: Switch) -> None:
        with self._tx() as db:
            self._insert(db, "switches", columns(switch))

    def remove_switches(self, component: str | None, target: str | None) -> list[Switch]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT * FROM switches WHERE component IS ? AND target IS ?",
                (component, target)).fetchall()
            db.execute("DELETE FROM switches WHERE component IS ? AND target IS ?",
                       (component, target))
        return [row_to(Switch, r) for r in rows]

    def active_switches(self, now: float) -> list[Switch]:
        rows = self._read("SELECT * FROM switches WHERE until IS NULL OR until > ? "
                          "ORDER BY created_at", (now,))
        return [row_to(Switch, r) for r in rows]

    # -- degraded modes ----------

    def add_degraded(self, reason: DegradedReason) -> None:
        with self._tx() as db:
            self._insert(db, "degraded", columns(reason), verb="INSERT OR REPLACE")

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
        return [row_to(DegradedReason, r) for r in rows]

    def degraded_reasons(self, mode: str | None = None) -> list[DegradedReason]:
        if mode is None:
            rows = self._read("SELECT * FROM degraded ORDER BY mode, since")
        else:
            rows = self._read("SELECT * FROM degraded WHERE mode = ? ORDER BY since", (mode,))
        return [row_to(DegradedReason, r) for r in rows]
