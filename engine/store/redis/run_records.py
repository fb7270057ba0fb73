"""Runs as the Redis store keeps them, for every writer of a run (a step beginning, the
run index): ``run:<id>`` (the record, JSON, with the columns the run index keeps beside
it: ``heartbeat_at``, ``claimed_by``, ``claimed_until``) and ``runs:started`` (ids by
start: the history, newest first)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from engine.records import RunRecord
from engine.store.redis.connection import RedisConnection
from engine.store.redis.records import from_dict

# Kept beside a run's fields, not part of ``RunRecord``.
RUN_EXTRAS = ("heartbeat_at", "claimed_by", "claimed_until")


def run_values(run: RunRecord, **extras: Any) -> dict[str, Any]:
    """``run``'s fields as stored (enums as values), with ``extras`` (``RUN_EXTRAS``)."""
    values = asdict(run)
    values["status"] = run.status.value
    values.update({name: extras.get(name) for name in RUN_EXTRAS})
    return values


def run_of(values: dict[str, Any]) -> RunRecord:
    return from_dict(RunRecord, values)


class RedisRunRecords(RedisConnection):
    """A run read and written whole, with its indexes, in the caller's transaction."""

    def _run_key(self, run_id: str) -> str:
        return self._key("run", run_id)

    def _put_run(self, pipe: Any, values: dict[str, Any]) -> None:
        """Queue (after ``pipe.multi()``) the writes of the run ``values`` (as
        ``run_values`` gives them) and its indexes."""
        pipe.set(self._run_key(values["id"]), json.dumps(values))
        pipe.zadd(self._key("runs", "started"), {values["id"]: values["started_at"]})

    def _run_values(self, pipe: Any, run_id: str) -> dict[str, Any] | None:
        """The stored values of run ``run_id`` (fields and extras), read through ``pipe``
        (WATCHed by the caller if it writes after)."""
        raw = pipe.get(self._run_key(run_id))
        return None if raw is None else json.loads(raw)
