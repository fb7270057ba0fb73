"""Runs as the Redis store keeps them, for every writer of a run (a step beginning, the
run index).

Keys, under the store's prefix: ``run:<id>`` (the record, JSON, with what the run index
keeps beside its fields: ``claimed_by``, ``claimed_until``, ``refusal_key`` and
``members``, the [fingerprint, incident] pairs a refusal record counts);
``runs:heartbeat`` (run id -> its last heartbeat, a hash: beaten without rewriting the
record); sorted sets of run ids by ``started_at`` (ties: by id, as SQLite's ``ORDER BY
started_at DESC, id DESC``): ``runs:started`` (all) and one per value of each column
the history filters on (``runs-<column>:<value>``, a refusal record also under each of
its members' fingerprint and incident); ``runs:finished`` (the finished runs, by
``finished_at``: what ``delete_before`` prunes); ``refusal:<key>`` (the id of a refusal
record); ``run-account:<id>`` (a finished run's account, JSON: ``put_run_account``).
"""

from __future__ import annotations

import json
from typing import Any

from engine.records import RunRecord
from engine.store.redis.connection import RedisConnection
from engine.store.redis.records import field_values, from_dict

# Kept beside a run's fields in its record, not part of ``RunRecord``.
RUN_EXTRAS = ("claimed_by", "claimed_until", "refusal_key", "members")
INDEXED = ("component", "status", "target", "incident_id", "fingerprint")


def run_values(run: RunRecord, **extras: Any) -> dict[str, Any]:
    """``run``'s fields as stored (enums as values), with ``extras`` (``RUN_EXTRAS``)."""
    values = field_values(run)
    values["status"] = run.status.value
    values.update({name: extras.get(name) for name in RUN_EXTRAS})
    values["members"] = values["members"] or []
    return values


def run_of(values: dict[str, Any]) -> RunRecord:
    return from_dict(RunRecord, values)


def index_entries(values: dict[str, Any]) -> set[tuple[str, str]]:
    """(column, value) of every index a run's ``values`` put it in, beside ``started``."""
    entries = {(c, str(values[c])) for c in INDEXED if values.get(c) is not None}
    for fingerprint, incident_id in values.get("members") or []:
        if fingerprint:
            entries.add(("fingerprint", fingerprint))
        if incident_id:
            entries.add(("incident_id", incident_id))
    return entries


class RedisRunRecords(RedisConnection):
    """A run read and written whole, with its indexes, in the caller's transaction."""

    def _run_key(self, run_id: str) -> str:
        return self._key("run", run_id)

    def _run_index(self, column: str | None = None, value: str | None = None) -> str:
        return self._key("runs", "started") if column is None else \
            self._key(f"runs-{column}", str(value))

    def _put_run(self, pipe: Any, values: dict[str, Any],
                 old: dict[str, Any] | None = None, *,
                 heartbeat_at: float | None = None) -> None:
        """Queue (after ``pipe.multi()``) the writes of the run ``values`` (as
        ``run_values`` gives them, ``old``: as they were) and its indexes."""
        run_id, score = values["id"], values["started_at"]
        pipe.set(self._run_key(run_id), json.dumps(values))
        pipe.zadd(self._run_index(), {run_id: score})
        if values.get("finished_at") is not None:
            pipe.zadd(self._key("runs", "finished"), {run_id: values["finished_at"]})
        elif old is not None and old.get("finished_at") is not None:
            pipe.zrem(self._key("runs", "finished"), run_id)
        now = index_entries(values)
        for column, value in index_entries(old or {}) - now:
            pipe.zrem(self._run_index(column, value), run_id)
        for column, value in now:
            pipe.zadd(self._run_index(column, value), {run_id: score})
        if heartbeat_at is not None:
            pipe.hset(self._key("runs", "heartbeat"), run_id, repr(heartbeat_at))

    def _run_values(self, reader: Any, run_id: str) -> dict[str, Any] | None:
        """The stored values of run ``run_id`` (fields and extras), read through
        ``reader`` (a pipeline WATCHing it, if the caller writes after)."""
        raw = reader.get(self._run_key(run_id))
        return None if raw is None else json.loads(raw)
