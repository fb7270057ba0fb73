"""The fencing check of a Redis write (engine.store.fencing): the lock's hash is WATCHed
with the record the write changes, its token read before MULTI, so a lock taken by
another holder between the check and EXEC makes the transaction run again (and be
refused), never commit under a stale lease."""

from __future__ import annotations

from typing import Any

from engine.store.fencing import Fence, refused
from engine.store.redis.connection import RedisConnection


class RedisFencing(RedisConnection):
    """``_fenced(keys, fence)`` adds the lock's key to what a write WATCHes;
    ``_check_fence(pipe, fence)`` reads it, raising StaleLease when another token holds it."""

    def _fenced(self, keys: list[str], fence: Fence | None) -> list[str]:
        return keys if fence is None else [*keys, self._key("lock", fence.target)]

    def _fence_reads(self, fence: Fence | None) -> list[tuple[str, ...]]:
        """What ``_check_fence`` reads, for ``_atomic``'s ``prefetch``."""
        return [] if fence is None else [("HGET", self._key("lock", fence.target), "token")]

    def _check_fence(self, pipe: Any, fence: Fence | None) -> None:
        if fence is None:
            return
        token = pipe.hget(self._key("lock", fence.target), "token")
        stale = refused(fence, None if token is None else int(token))
        if stale is not None:
            raise stale
