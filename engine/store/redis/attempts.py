"""Attempts as the Redis store keeps them, for the incidents that write them and the
cooldowns that count them.

Keys, under the store's prefix: ``attempt:<id>`` (the record, JSON); the indexes, each a
sorted set of attempt ids: ``attempts:<runbook> NUL <target>`` by start (a cooldown's
window), ``attempts-failed:<runbook> NUL <target>`` by finish (the last failure),
``attempts:started`` and ``attempts:finished`` (which pairs moved since a time).
"""

from __future__ import annotations

from typing import Any

from engine.lifecycle import AttemptOutcome
from engine.records import Attempt
from engine.store.redis.connection import RedisConnection
from engine.store.redis.records import decode, encode


def pair(runbook: str, target: str) -> str:
    """One key part naming (runbook, target): NUL is in neither."""
    return f"{runbook}\x00{target}"


class RedisAttemptRecords(RedisConnection):
    """An attempt written with its indexes in the caller's transaction (``_put_attempt``),
    and read back by id."""

    def _attempt_key(self, attempt_id: str) -> str:
        return self._key("attempt", attempt_id)

    def _put_attempt(self, pipe: Any, attempt: Attempt) -> None:
        """Queue (after ``pipe.multi()``) the writes of ``attempt`` and its indexes."""
        pipe.set(self._attempt_key(attempt.id), encode(attempt))
        pipe.zadd(self._key("attempts", pair(attempt.runbook, attempt.target)),
                  {attempt.id: attempt.started_at})
        pipe.zadd(self._key("attempts", "started"), {attempt.id: attempt.started_at})
        if attempt.finished_at is not None:
            pipe.zadd(self._key("attempts", "finished"), {attempt.id: attempt.finished_at})
            if attempt.outcome == AttemptOutcome.FAILED:
                pipe.zadd(self._key("attempts-failed", pair(attempt.runbook, attempt.target)),
                          {attempt.id: attempt.finished_at})

    def _attempts(self, ids: list[bytes]) -> list[Attempt]:
        """The attempts of ``ids`` that are there, in that order."""
        if not ids:
            return []
        with self._client() as client:
            found = client.mget([self._attempt_key(i.decode()) for i in ids])
        return [decode(Attempt, raw) for raw in found if raw is not None]
