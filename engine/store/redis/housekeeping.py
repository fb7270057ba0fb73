"""Housekeeping of the Redis store (``engine.store.housekeeping.Housekeeping``): what
ended before a time pruned from every protocol's keys, each found through an index by
the time it ended (``runs:finished``, ``incidents:closed``, ``attempts:finished``,
``deliveries:processed``, ``intake:seen``, ``resolved:at``); a write probe that writes.

Each part is pruned in a MULTI with what it read WATCHed (a record changed in between
is read again), so a record that goes on (reopened, written again) is never dropped;
the parts are not one transaction together, as SQLite's are, and need not be: each
removes only what had ended. Approvals, events and cancel marks have no time index and
are read whole (they are few: decided approvals, operator actions, cancel requests).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from engine.lifecycle import IncidentState
from engine.store.housekeeping import Housekeeping
from engine.store.redis.attempts import pair
from engine.store.redis.incidents import RedisIncidents
from engine.store.redis.intake_journal import RedisIntakeJournal
from engine.store.redis.run_records import index_entries

SCAN_COUNT = 1000   # keys a SCAN call looks at (Redis's default: 10)


class RedisHousekeeping(RedisIntakeJournal, RedisIncidents, Housekeeping):
    """Every key family's retention in one place (``delete_before``); ``close`` is the
    connection's; nothing to maintain between passes."""

    def _ended(self, index: str, before: float) -> list[str]:
        with self._client() as client:
            return [m.decode() for m in client.zrangebyscore(index, "-inf", f"({before!r}")]

    def _prune(self, index: str, before: float, record_key: Callable[[str], str],
               ended: Callable[[dict[str, Any]], bool],
               drop: Callable[[Any, str, dict[str, Any]], None]) -> dict[str, Any]:
        """The members of ``index`` that ended before ``before``, each record (JSON at
        ``record_key(member)``) dropped by ``drop(pipe, member, values)`` after ``multi``
        if it still ``ended`` (else left: it goes on); member -> values of those dropped
        (None: the record was gone already, only its place in ``index`` is)."""
        members = self._ended(index, before)
        if not members:
            return {}
        keys = [record_key(m) for m in members]

        def change(pipe: Any) -> dict[str, Any]:
            raws = pipe.mget(keys)
            dropped: dict[str, Any] = {}
            for member, raw in zip(members, raws, strict=True):
                values = None if raw is None else json.loads(raw)
                if values is None or ended(values):
                    dropped[member] = values
            pipe.multi()
            for member, values in dropped.items():
                if values is None:
                    pipe.zrem(index, member)
                else:
                    drop(pipe, member, values)
            return dropped

        return self._atomic([index, *keys], change)

    def _drop_run(self, pipe: Any, run_id: str, values: dict[str, Any]) -> None:
        pipe.delete(self._run_key(run_id), self._key("run-account", run_id))
        pipe.zrem(self._run_index(), run_id)
        pipe.zrem(self._key("runs", "finished"), run_id)
        for column, value in index_entries(values):
            pipe.zrem(self._run_index(column, value), run_id)
        pipe.hdel(self._key("runs", "heartbeat"), run_id)

    def _drop_incident(self, pipe: Any, incident_id: str, values: dict[str, Any]) -> None:
        pipe.delete(self._incident_key(incident_id))
        for index in ("opened", "due", "closed"):
            pipe.zrem(self._key("incidents", index), incident_id)
        pipe.zrem(self._key("incidents-of", pair(values["runbook"], values["target"])),
                  incident_id)

    def _drop_attempt(self, pipe: Any, attempt_id: str, values: dict[str, Any]) -> None:
        who = pair(values["runbook"], values["target"])
        pipe.delete(self._attempt_key(attempt_id))
        pipe.zrem(self._key("attempts", who), attempt_id)
        pipe.zrem(self._key("attempts-failed", who), attempt_id)
        for index in ("started", "finished"):
            pipe.zrem(self._key("attempts", index), attempt_id)

    def _drop_delivery(self, pipe: Any, key: str, values: dict[str, Any]) -> None:
        pipe.delete(self._delivery_key(key))
        for index in self._delivery_indexes(values):
            pipe.zrem(index, key)

    def _drop_refusal_marks(self, runs: dict[str, Any]) -> None:
        """The ``refusal:<key>`` marks that still name a pruned refusal record (a newer
        record of the key, named since, keeps its mark)."""
        for run_id, values in runs.items():
            if not values or not values.get("refusal_key"):
                continue
            mark = self._key("refusal", values["refusal_key"])

            def change(pipe: Any, mark: str = mark, run_id: str = run_id) -> None:
                held = pipe.get(mark)
                if held is not None and held.decode() == run_id:
                    pipe.multi()
                    pipe.delete(mark)

            self._atomic([mark], change)

    def _prune_hash(self, name: str, ended: Callable[[dict[str, Any]], bool]) -> None:
        key = self._key(name)

        def change(pipe: Any) -> None:
            gone = [f for f, raw in pipe.hgetall(key).items() if ended(json.loads(raw))]
            if gone:
                pipe.multi()
                pipe.hdel(key, *gone)

        self._atomic([key], change)

    def _prune_events(self, before: float) -> None:
        key = self._key("events")

        def change(pipe: Any) -> None:
            raws = pipe.lrange(key, 0, -1)
            kept = [raw for raw in raws if not json.loads(raw)["at"] < before]
            if len(kept) != len(raws):
                pipe.multi()
                pipe.delete(key)
                if kept:
                    pipe.rpush(key, *kept)

        self._atomic([key], change)

    def _prune_resolved(self, before: float) -> None:
        marks, index = self._key("resolved"), self._key("resolved", "at")

        def change(pipe: Any) -> None:
            gone = pipe.zrangebyscore(index, "-inf", f"({before!r}")
            if gone:
                pipe.multi()
                pipe.hdel(marks, *gone)
                pipe.zrem(index, *gone)

        self._atomic([marks, index], change)

    def _prune_cancel_marks(self, before: float) -> None:
        with self._client() as client:
            # SCAN walks the whole keyspace (every run's keys): a large COUNT per call,
            # else an hourly prune over 100,000 runs is ~50,000 round trips (10 s and more).
            for name in client.scan_iter(match=_glob(self._key("value", "cancel:")) + "*",
                                         count=SCAN_COUNT):
                raw = client.get(name)
                value = None if raw is None else json.loads(raw)
                at = value.get("at") if isinstance(value, dict) else None
                if isinstance(at, (int, float)) and at < before:
                    client.delete(name)

    def delete_before(self, before: float) -> list[str]:
        def ended(field: str) -> Callable[[dict[str, Any]], bool]:
            return lambda v: v.get(field) is not None and v[field] < before

        runs = self._prune(self._key("runs", "finished"), before, self._run_key,
                           ended("finished_at"), self._drop_run)
        self._drop_refusal_marks(runs)
        self._prune(self._key("incidents", "closed"), before, self._incident_key,
                    lambda v: not IncidentState(v["state"]).is_open and
                    ended("closed_at")(v), self._drop_incident)
        self._prune(self._key("attempts", "finished"), before, self._attempt_key,
                    ended("finished_at"), self._drop_attempt)
        self._prune_hash("approvals", lambda a: a["status"] != "pending" and
                         ended("decided_at")(a))
        self._prune_events(before)
        with self._client() as client:
            client.zremrangebyscore(self._key("intake", "seen"), "-inf", f"({before!r}")
        self._prune_resolved(before)
        self._prune(self._key("deliveries", "processed"), before, self._delivery_key,
                    ended("processed_at"), self._drop_delivery)
        self._prune_cancel_marks(before)
        return list(runs)

    def ping(self, *, write: bool = False, wait: float | None = None) -> None:
        """PING; with ``write``, a key written for real (a server that cannot write, out
        of memory, read-only or failing to persist, refuses it). ``wait`` bounds each
        command (``_within``): a server that does not answer by then is unavailable."""
        with self._client():
            client = self._within(wait)
            client.ping()
            if write:
                client.set(self._key("write_probe"), repr(time.time()))


def _glob(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
