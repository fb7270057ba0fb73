"""Shared values in Redis (``engine.store.shared_values.SharedValues``): one string key
per value (``<prefix>value:<key>``), JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.store.redis.connection import RedisConnection
from engine.store.shared_values import SharedValues


class RedisSharedValues(RedisConnection, SharedValues):
    """``update_value`` reads and writes with the value's key WATCHed (retried if another
    writer got in between): atomic against every process, and values under other keys
    (the heartbeats, a probe's claim) never make it retry."""

    def _value_key(self, key: str) -> str:
        return self._key("value", key)

    def set_value(self, key: str, value: Any) -> None:
        with self._client() as client:
            client.set(self._value_key(key), json.dumps(value))

    def get_value(self, key: str) -> Any:
        with self._client() as client:
            raw = client.get(self._value_key(key))
        return None if raw is None else json.loads(raw)

    def update_value(self, key: str, update: Callable[[Any], Any]) -> Any:
        name = self._value_key(key)

        def change(pipe: Any) -> Any:
            raw = pipe.get(name)
            value = update(None if raw is None else json.loads(raw))
            pipe.multi()
            pipe.set(name, json.dumps(value))
            return value

        return self._atomic([name], change)
