"""The audit log in Redis (``engine.store.audit_log.AuditLog``): one list,
``<prefix>events``, newest at its head."""

from __future__ import annotations

from engine.records import AuditEvent
from engine.store.audit_log import AuditLog
from engine.store.redis.connection import RedisConnection
from engine.store.redis.records import decode, encode


class RedisAuditLog(RedisConnection, AuditLog):
    """Events in the order they were added (LPUSH), listed newest first (LRANGE)."""

    def add_event(self, event: AuditEvent) -> None:
        with self._client() as client:
            client.lpush(self._key("events"), encode(event))

    def list_events(self, limit: int = 100) -> list[AuditEvent]:
        if limit == 0:
            return []
        with self._client() as client:   # a negative limit: all of them, as LIMIT -1
            raw = client.lrange(self._key("events"), 0, limit - 1 if limit > 0 else -1)
        return [decode(AuditEvent, r) for r in raw]
