"""Incidents and their attempts in SQLite (``engine.store.incidents.Incidents``)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from engine.lifecycle import (
    AttemptOutcome,
    IncidentState,
    RunStatus,
    TransitionError,
    check_incident_transition,
)
from engine.records import Attempt, Incident, RunRecord
from engine.store.fencing import Fence
from engine.store.incidents import Incidents
from engine.store.sqlite.connection import SQLiteConnection
from engine.store.sqlite.fencing import check_fence
from engine.store.sqlite.rows import columns, row_to, to_column

# An incident claimed or reopened for a new request: who asks now, and nothing of the
# last request's --force or --strategy (a SET clause; parameters trigger, requested_by).
_NEW_REQUEST = "trigger = ?, requested_by = ?, forced = 0, only_strategy = NULL"


class SQLiteIncidents(SQLiteConnection, Incidents):
    """One open incident per (runbook, target): the ``open_key`` column, unique, set
    while the incident is open; a step's attempt is a row of ``attempts``."""

    def open_incident(self, incident: Incident) -> tuple[Incident, bool]:
        open_key = f"{incident.runbook}\x00{incident.target}"
        with self._tx() as db:
            row = db.execute("SELECT * FROM incidents WHERE open_key = ?", (open_key,)).fetchone()
            if row is not None:
                return row_to(Incident, row), False
            values = columns(incident)
            values["open_key"] = open_key
            self._insert(db, "incidents", values)
        return incident, True

    def get_incident(self, incident_id: str) -> Incident | None:
        rows = self._read("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return row_to(Incident, rows[0]) if rows else None

    def latest_incident(self, runbook: str, target: str) -> Incident | None:
        rows = self._read("SELECT * FROM incidents WHERE runbook = ? AND target = ? "
                          "ORDER BY opened_at DESC LIMIT 1", (runbook, target))
        return row_to(Incident, rows[0]) if rows else None

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
        return row_to(Incident, row)

    def find_open_incident(self, runbook: str, target: str) -> Incident | None:
        rows = self._read("SELECT * FROM incidents WHERE open_key = ?", (f"{runbook}\x00{target}",))
        return row_to(Incident, rows[0]) if rows else None

    def update_incident(self, incident_id: str, *, expect: Iterable[IncidentState] | None = None,
                        fence: Fence | None = None, **changes: Any) -> Incident | None:
        with self._tx() as db:
            check_fence(db, fence)
            row = db.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            if row is None:
                return None
            current = row_to(Incident, row)
            if expect is not None and current.state not in set(expect):
                return None
            values = {k: to_column(k, v) for k, v in changes.items()}
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
        return row_to(Incident, row)

    def list_incidents(self, *, open_only: bool = False, component: str | None = None,
                       target: str | None = None, state: str | None = None,
                       limit: int = 100) -> list[Incident]:
        where, params = [], []
        if open_only:
            where.append("open_key IS NOT NULL")
        for column, value in (("component", component), ("target", target),
                              ("state", state)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC LIMIT ?"
        return [row_to(Incident, r) for r in self._read(sql, [*params, limit])]

    def claim_due_incident(self, now: float) -> Incident | None:
        with self._tx() as db:
            row = self._take_first(
                db, "SELECT * FROM incidents WHERE state = ? AND next_try_at IS NOT NULL "
                "AND next_try_at <= ? ORDER BY next_try_at LIMIT 1",
                (IncidentState.OPEN.value, now),
                "UPDATE incidents SET state = ?, next_try_at = NULL, updated_at = ? "
                "WHERE id = ?", (IncidentState.REMEDIATING.value, now))
            if row is None:
                return None
            row = db.execute("SELECT * FROM incidents WHERE id = ?", (row["id"],)).fetchone()
        return row_to(Incident, row)

    def claim_incident(self, incident_id: str, now: float, *, trigger: str,
                       requested_by: str) -> Incident | None:
        return self._change_one(
            Incident, "UPDATE incidents SET state = ?, next_try_at = NULL, "
            # an operator's --strategy chose the step: the new request starts afresh
            "step = CASE WHEN only_strategy IS NOT NULL AND attempt_id IS NULL THEN 0 "
            f"ELSE step END, {_NEW_REQUEST}, updated_at = ? "
            "WHERE id = ? AND state = ? AND (next_try_at IS NULL OR next_try_at <= ?)",
            (IncidentState.REMEDIATING.value, trigger, requested_by, now, incident_id,
             IncidentState.OPEN.value, now), table="incidents", key="id", value=incident_id)

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
                self._insert(db, "attempts", columns(attempt))
                db.execute("UPDATE incidents SET attempt_id = ?, attempts = attempts + 1 "
                           "WHERE id = ?", (attempt.id, run.incident_id))
            values = columns(run)
            # Alive now, whenever its gates were asked (facts, a fleet wait): its row is
            # its first beat, or a sweep would take it for dead before its lease beats.
            values["heartbeat_at"] = time.time()
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
        return row_to(Incident, row) if row else None

    def finish_attempt(self, attempt_id: str, outcome: AttemptOutcome, at: float, *,
                       fence: Fence | None = None) -> None:
        with self._tx() as db:  # once: a late finish never rewrites how an attempt ended
            check_fence(db, fence)
            db.execute("UPDATE attempts SET outcome = ?, finished_at = ? WHERE id = ? "
                       "AND outcome = ?", (outcome.value, at, attempt_id,
                                           AttemptOutcome.RUNNING.value))
