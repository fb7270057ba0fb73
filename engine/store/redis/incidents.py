"""Incidents and their attempts in Redis (``engine.store.incidents.Incidents``).

Keys, under the store's prefix: ``incident:<id>`` (the record, JSON); ``open:<runbook>
NUL <target>`` (the id of the one open incident of that pair: the uniqueness SQLite's
``open_key`` column gives); sorted sets of ids: ``incidents:opened`` and
``incidents-of:<runbook> NUL <target>`` by opening, ``incidents:due`` (open and deferred)
by ``next_try_at``, ``incidents:closed`` (closed, by ``closed_at``: what ``delete_before``
prunes). Every change of an incident rewrites the
record and its indexes in one MULTI, with the keys it read WATCHed (``_atomic``): a
compare-and-set against every process.
"""

from __future__ import annotations

import dataclasses
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
from engine.store.redis.attempts import RedisAttemptRecords, pair
from engine.store.redis.fencing import RedisFencing
from engine.store.redis.records import decode, encode
from engine.store.redis.run_records import RedisRunRecords, run_values

PAGE = 200   # incidents read at a time when listing


class RedisIncidents(RedisAttemptRecords, RedisRunRecords, RedisFencing, Incidents):
    """One open incident per (runbook, target): ``open:<pair>`` names it, set and
    cleared with the incident's state in the same transaction."""

    def _incident_key(self, incident_id: str) -> str:
        return self._key("incident", incident_id)

    def _open_key(self, runbook: str, target: str) -> str:
        return self._key("open", pair(runbook, target))

    def _read_incident(self, reader: Any, incident_id: str) -> Incident | None:
        raw = reader.get(self._incident_key(incident_id))
        return None if raw is None else decode(Incident, raw)

    def _put_incident(self, pipe: Any, incident: Incident, *, mark: bool | None) -> None:
        """Queue (after ``pipe.multi()``) the record and its indexes; ``mark``: the pair's
        open mark set to it (True), deleted (False: the caller saw it held it), or left."""
        iid, who = incident.id, pair(incident.runbook, incident.target)
        pipe.set(self._incident_key(iid), encode(incident))
        pipe.zadd(self._key("incidents", "opened"), {iid: incident.opened_at})
        pipe.zadd(self._key("incidents-of", who), {iid: incident.opened_at})
        if incident.state == IncidentState.OPEN and incident.next_try_at is not None:
            pipe.zadd(self._key("incidents", "due"), {iid: incident.next_try_at})
        else:
            pipe.zrem(self._key("incidents", "due"), iid)
        if not incident.state.is_open and incident.closed_at is not None:
            pipe.zadd(self._key("incidents", "closed"), {iid: incident.closed_at})
        else:
            pipe.zrem(self._key("incidents", "closed"), iid)
        if mark is True:
            pipe.set(self._open_key(incident.runbook, incident.target), iid)
        elif mark is False:
            pipe.delete(self._open_key(incident.runbook, incident.target))

    def _change(self, incident_id: str, change: Any,
                fence: Fence | None = None) -> Incident | None:
        """``change(pipe, incident)`` on the incident as it is now (WATCHed, with the
        lock of ``fence`` if any, refused with StaleLease when another token holds it), which
        returns the incident to write and what becomes of its open mark (``_put_incident``),
        or None (write nothing); the incident written."""
        key = self._incident_key(incident_id)

        def step(pipe: Any) -> Incident | None:
            self._check_fence(pipe, fence)
            current = self._read_incident(pipe, incident_id)
            if current is None:
                return None
            changed = change(pipe, current)
            if changed is None:
                return None
            after, mark = changed
            pipe.multi()
            self._put_incident(pipe, after, mark=mark)
            return after

        return self._atomic(self._fenced([key], fence), step,
                            prefetch=[*self._fence_reads(fence), ("GET", key)])

    def open_incident(self, incident: Incident) -> tuple[Incident, bool]:
        open_key = self._open_key(incident.runbook, incident.target)

        def step(pipe: Any) -> tuple[Incident, bool]:
            holder = pipe.get(open_key)
            if holder is not None:
                found = self._read_incident(pipe, holder.decode())
                if found is not None:
                    return found, False
            pipe.multi()
            self._put_incident(pipe, incident, mark=True)   # as SQLite: open, whatever
            return incident, True

        return self._atomic([open_key], step, prefetch=[("GET", open_key)])

    def get_incident(self, incident_id: str) -> Incident | None:
        with self._client() as client:
            return self._read_incident(client, incident_id)

    def find_open_incident(self, runbook: str, target: str) -> Incident | None:
        with self._client() as client:
            holder = client.get(self._open_key(runbook, target))
            return None if holder is None else self._read_incident(client, holder.decode())

    def latest_incident(self, runbook: str, target: str) -> Incident | None:
        with self._client() as client:
            ids = client.zrevrange(self._key("incidents-of", pair(runbook, target)), 0, 0)
            return self._read_incident(client, ids[0].decode()) if ids else None

    def _mark_holder(self, pipe: Any, incident: Incident) -> str | None:
        """WATCH the pair's open mark (before ``multi``); the id of the incident holding it."""
        open_key = self._open_key(incident.runbook, incident.target)
        pipe.watch(open_key)
        holder = pipe.get(open_key)
        return None if holder is None else holder.decode()

    def reopen_incident(self, incident_id: str, reason: str, *, trigger: str,
                        requested_by: str) -> Incident | None:
        now = time.time()

        def change(pipe: Any, current: Incident) -> tuple[Incident, bool] | None:
            if current.state != IncidentState.RECOVERED or \
                    self._mark_holder(pipe, current) not in (None, current.id):
                return None   # not recovered, or another incident is open for it
            return dataclasses.replace(
                current, state=IncidentState.REMEDIATING, closed_at=None, attempt_id=None,
                step=0, next_try_at=None, verify_until=None, trigger=trigger,
                requested_by=requested_by, forced=False, only_strategy=None, reason=reason,
                updated_at=now), True

        return self._change(incident_id, change)

    def update_incident(self, incident_id: str, *, expect: Iterable[IncidentState] | None = None,
                        fence: Fence | None = None, **changes: Any) -> Incident | None:
        def change(pipe: Any, current: Incident) -> tuple[Incident, bool | None] | None:
            if expect is not None and current.state not in set(expect):
                return None
            values, mark = dict(changes), None
            new_state = values.get("state")
            if new_state is not None:
                new_state = values["state"] = IncidentState(new_state)
                check_incident_transition(current.state, new_state)
                if new_state != IncidentState.REMEDIATING and "forced" not in changes:
                    values["forced"] = False   # --force ends with the attempt in hand
                holder = self._mark_holder(pipe, current)
                if new_state.is_open:
                    if holder not in (None, current.id):   # SQLite: the unique open_key
                        raise TransitionError(f"another incident is open for "
                                              f"{current.runbook} on {current.target}")
                    mark = True
                elif holder == current.id:
                    mark = False
            values["updated_at"] = changes.get("updated_at", time.time())
            return dataclasses.replace(current, **values), mark

        return self._change(incident_id, change, fence)

    def list_incidents(self, *, open_only: bool = False, component: str | None = None,
                       target: str | None = None, state: str | None = None,
                       limit: int = 100) -> list[Incident]:
        found: list[Incident] = []
        start = 0
        with self._client() as client:
            while len(found) < limit:
                ids = client.zrevrange(self._key("incidents", "opened"), start,
                                       start + PAGE - 1)
                if not ids:
                    break
                start += PAGE
                raws = client.mget([self._incident_key(i.decode()) for i in ids])
                for raw in raws:
                    inc = None if raw is None else decode(Incident, raw)
                    if (inc is None or (open_only and not inc.state.is_open)
                            or (component and inc.component != component)
                            or (target and inc.target != target)
                            or (state and inc.state.value != state)):
                        continue
                    found.append(inc)
        return found[:limit]

    def claim_due_incident(self, now: float) -> Incident | None:
        due = self._key("incidents", "due")
        while True:   # each turn takes the first due one, or finds it gone from ``due``
            with self._client() as client:
                ids = client.zrangebyscore(due, "-inf", now, start=0, num=1)
            if not ids:
                return None
            claimed = False

            def change(pipe: Any, current: Incident) -> tuple[Incident, None]:
                nonlocal claimed
                claimed = (current.state == IncidentState.OPEN
                           and current.next_try_at is not None and current.next_try_at <= now)
                if not claimed:   # taken since: written as it is, which leaves ``due``
                    return current, None
                return dataclasses.replace(current, state=IncidentState.REMEDIATING,
                                           next_try_at=None, updated_at=now), None

            taken = self._change(ids[0].decode(), change)
            if taken is None:   # the incident is gone (pruned): so is its place in ``due``
                with self._client() as client:
                    client.zrem(due, ids[0])
            elif claimed:
                return taken

    def claim_incident(self, incident_id: str, now: float, *, trigger: str,
                       requested_by: str) -> Incident | None:
        def change(pipe: Any, current: Incident) -> tuple[Incident, None] | None:
            if current.state != IncidentState.OPEN or (
                    current.next_try_at is not None and current.next_try_at > now):
                return None
            # an operator's --strategy chose the step: the new request starts afresh
            step = 0 if current.only_strategy is not None and current.attempt_id is None \
                else current.step
            return dataclasses.replace(
                current, state=IncidentState.REMEDIATING, next_try_at=None, step=step,
                trigger=trigger, requested_by=requested_by, forced=False,
                only_strategy=None, updated_at=now), None

        return self._change(incident_id, change)

    def begin_step(self, run: RunRecord, attempt: Attempt | None, *,
                   resumed: bool = False) -> Incident | None:
        incident_id = run.incident_id or ""

        def step(pipe: Any) -> Incident:
            current = self._read_incident(pipe, incident_id)
            # The incident must still be ours to act on: canceled or resolved since the
            # gates were asked, the step does not start. A step starting supersedes an
            # interrupted one: there is no unverified step left.
            if current is None or current.state != IncidentState.REMEDIATING:
                raise TransitionError(f"incident {run.incident_id} is no longer remediating")
            after = dataclasses.replace(current, updated_at=run.started_at,
                                        interrupted_run=None)
            if attempt is not None:
                after.attempt_id, after.attempts = attempt.id, current.attempts + 1
            values, stored = run_values(run), None
            if resumed:
                pipe.watch(self._run_key(run.id))
                stored = self._run_values(pipe, run.id)
                waiting = (RunStatus.QUEUED.value, RunStatus.PENDING_APPROVAL.value)
                if stored is None or stored.get("status") not in waiting:
                    # canceled (or taken) since it was claimed
                    raise TransitionError(f"run {run.id} is no longer waiting to run")
                keep = ("status", "attempt_id", "reason", "approved_by", "started_at",
                        "forced", "gate")
                values = {**stored, **{k: values[k] for k in keep},
                          "claimed_by": None, "claimed_until": None}
            pipe.multi()
            if attempt is not None:
                self._put_attempt(pipe, attempt)
            # Alive now, whenever its gates were asked: its row is its first beat.
            self._put_run(pipe, values, stored, heartbeat_at=time.time())
            self._put_incident(pipe, after, mark=None)
            return after

        key = self._incident_key(incident_id)
        return self._atomic([key], step, prefetch=[("GET", key)])

    def finish_attempt(self, attempt_id: str, outcome: AttemptOutcome, at: float, *,
                       fence: Fence | None = None) -> None:
        key = self._attempt_key(attempt_id)

        def step(pipe: Any) -> None:
            self._check_fence(pipe, fence)
            raw = pipe.get(key)
            attempt = None if raw is None else decode(Attempt, raw)
            if attempt is None or attempt.outcome != AttemptOutcome.RUNNING:
                return   # once: a late finish never rewrites how an attempt ended
            pipe.multi()
            self._put_attempt(pipe, dataclasses.replace(attempt, outcome=outcome,
                                                        finished_at=at))

        self._atomic(self._fenced([key], fence), step)
