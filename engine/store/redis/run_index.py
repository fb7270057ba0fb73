"""The run index in Redis (``engine.store.run_index.RunIndex``): the records and
indexes of ``run_records``, queried newest first from the narrowest index that fits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from engine.lifecycle import RUN_TRANSITIONS, RunStatus
from engine.records import RunRecord
from engine.store.fencing import Fence
from engine.store.redis.fencing import RedisFencing
from engine.store.redis.run_records import RedisRunRecords, run_of, run_values
from engine.store.run_index import RunIndex

PAGE = 500   # run ids read at a time from an index


class RedisRunIndex(RedisRunRecords, RedisFencing, RunIndex):
    """Every change of a run rewrites its record and indexes in one MULTI, the record
    WATCHed; heartbeats are a hash of their own (``runs:heartbeat``)."""

    def add_run(self, run: RunRecord) -> None:
        with self._client() as client:
            pipe = client.pipeline()
            self._put_run(pipe, run_values(run), heartbeat_at=run.started_at)
            pipe.execute()

    def _change_run(self, run_id: str, change: Any,
                    fence: Fence | None = None) -> dict[str, Any] | None:
        """``change(stored)`` -> the values to write (None: none), on the run as it is
        now, WATCHed (with the lock of ``fence``, if any); the values written."""
        key = self._run_key(run_id)

        def step(pipe: Any) -> dict[str, Any] | None:
            self._check_fence(pipe, fence)
            stored = self._run_values(pipe, run_id)
            after = None if stored is None else change(stored)
            if after is not None:
                values, heartbeat_at = after
                pipe.multi()
                self._put_run(pipe, values, stored, heartbeat_at=heartbeat_at)
                return values
            return None

        return self._atomic(self._fenced([key], fence), step)

    def update_run(self, run_id: str, *, status: RunStatus | None = None,
                   fence: Fence | None = None, **changes: Any) -> RunRecord | None:
        def change(stored: dict[str, Any]) -> tuple[dict[str, Any], float | None] | None:
            values = {**stored, **changes}
            heartbeat_at = values.pop("heartbeat_at", None)
            if status is not None:
                old = RunStatus(stored["status"])
                if status != old and status not in RUN_TRANSITIONS.get(old, frozenset()):
                    return None
                values["status"] = status.value
                if status == RunStatus.RUNNING and heartbeat_at is None:
                    heartbeat_at = time.time()
                values["claimed_by"] = values["claimed_until"] = None
            return values, heartbeat_at

        values = self._change_run(run_id, change, fence)
        return None if values is None else run_of(values)

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._client() as client:
            values = self._run_values(client, run_id)
        return None if values is None else run_of(values)

    def _newest_first(self, index: str, since: float | None) -> Iterator[dict[str, Any]]:
        """The runs of ``index`` started at or after ``since``, newest first, a page of
        ids (and their records) at a time."""
        start = 0
        low = "-inf" if since is None else since
        while True:
            with self._client() as client:
                ids = client.zrevrangebyscore(index, "+inf", low, start=start, num=PAGE)
                if not ids:
                    return
                raws = client.mget([self._run_key(i.decode()) for i in ids])
            start += PAGE
            for raw in raws:
                if raw is not None:
                    yield json.loads(raw)

    def query_runs(self, *, component: str | None = None, since: float | None = None,
                   status: str | None = None, incident_id: str | None = None,
                   target: str | None = None, fingerprint: str | None = None,
                   limit: int | None = 100) -> list[RunRecord]:
        # A refusal record is found by each of the alerts (and incidents) it counts: its
        # members put it in their indexes, and match here.
        wanted = {"incident_id": incident_id, "fingerprint": fingerprint,
                  "component": component, "status": status, "target": target}
        given = {c: str(v) for c, v in wanted.items() if v is not None}
        column = next(iter(given), None)
        index = self._run_index(column, given.get(column or ""))
        found: list[RunRecord] = []
        if limit is not None and limit <= 0:
            return found
        for values in self._newest_first(index, since):
            if all(self._matches(values, c, v) for c, v in given.items()):
                found.append(run_of(values))
                if limit is not None and len(found) >= limit:
                    break
        return found

    @staticmethod
    def _matches(values: dict[str, Any], column: str, value: str) -> bool:
        if values.get(column) is not None and str(values[column]) == value:
            return True
        members = values.get("members") or []
        if column == "fingerprint":
            return any(fp == value for fp, _ in members)
        if column == "incident_id":
            return any(inc == value for _, inc in members)
        return False

    def add_refusal(self, run: RunRecord, key: str, *, max_fingerprints: int) -> RunRecord:
        refusal = self._key("refusal", key)

        def step(pipe: Any) -> dict[str, Any]:
            holder = pipe.get(refusal)
            stored = None
            if holder is not None:
                pipe.watch(self._run_key(holder.decode()))
                stored = self._run_values(pipe, holder.decode())
            if stored is None:
                values = run_values(run, refusal_key=key)
                values.update(count=1, fingerprints=[run.fingerprint] if run.fingerprint
                              else [])
                counted = 0
            else:
                values = dict(stored)
                counted = int(values.get("count") or 1)
                listed = list(values.get("fingerprints") or [])
                if (run.fingerprint and run.fingerprint not in listed
                        and len(listed) < max_fingerprints):
                    listed.append(run.fingerprint)
                values.update(count=counted + 1, fingerprints=listed)
            if counted < max_fingerprints and (run.fingerprint or run.incident_id):
                values["members"] = [*(values.get("members") or []),
                                     [run.fingerprint, run.incident_id]]
            pipe.multi()
            pipe.set(refusal, values["id"])
            self._put_run(pipe, values, stored,
                          heartbeat_at=run.started_at if stored is None else None)
            return values

        return run_of(self._atomic([refusal], step))

    def _claim(self, run_id: str, holder: str, now: float,
               lease: float) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(the run as found, as claimed) if it is queued and no claim on it is live."""
        found: dict[str, Any] = {}

        def change(stored: dict[str, Any]) -> tuple[dict[str, Any], None] | None:
            if stored["status"] != RunStatus.QUEUED.value or (
                    stored.get("claimed_until") is not None and stored["claimed_until"] >= now):
                return None
            found.update(stored)
            return {**stored, "claimed_by": holder, "claimed_until": now + lease}, None

        claimed = self._change_run(run_id, change)
        return None if claimed is None else (found, claimed)

    def claim_queued_run(self, holder: str, now: float, lease: float) -> RunRecord | None:
        with self._client() as client:
            ids = client.zrange(self._run_index("status", RunStatus.QUEUED.value), 0, -1)
        for run_id in ids:   # oldest first
            taken = self._claim(run_id.decode(), holder, now, lease)
            if taken is not None:
                return run_of(taken[0])   # as it was found
        return None

    def claim_run(self, run_id: str, holder: str, now: float, lease: float) -> RunRecord | None:
        taken = self._claim(run_id, holder, now, lease)
        return None if taken is None else run_of(taken[1])

    def heartbeat_runs(self, run_ids: Iterable[str], now: float) -> None:
        ids = list(run_ids)
        if not ids:
            return
        with self._client() as client:
            pipe = client.pipeline(transaction=False)
            for run_id in ids:
                pipe.exists(self._run_key(run_id))
            there = [i for i, exists in zip(ids, pipe.execute(), strict=True) if exists]
            if there:
                client.hset(self._key("runs", "heartbeat"),
                            mapping={i: repr(now) for i in there})

    def stale_running_runs(self, heartbeat_before: float) -> list[RunRecord]:
        with self._client() as client:
            ids = [i.decode() for i in client.zrange(
                self._run_index("status", RunStatus.RUNNING.value), 0, -1)]
            if not ids:
                return []
            beats = client.hmget(self._key("runs", "heartbeat"), ids)
            stale = [i for i, beat in zip(ids, beats, strict=True)
                     if beat is not None and float(beat) < heartbeat_before]
            raws = client.mget([self._run_key(i) for i in stale]) if stale else []
        return [run_of(v) for v in (json.loads(r) for r in raws if r is not None)
                if v["status"] == RunStatus.RUNNING.value]
