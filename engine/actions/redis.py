"""Redis actions. ``ping`` is the probe and verify; the strategies come with the
component-actions work and end as `skipped` ("not implemented yet") until then."""

from __future__ import annotations

import os

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
)


def _client(ctx: ActionContext):  # -> redis.Redis
    """The registered pool's client in an application; else the inventory's ``redis_url``."""
    import redis  # lazily: an embedding process pays only if it uses Redis

    registered = ctx.resource("redis")
    if registered is not None:
        if isinstance(registered, redis.Redis):
            return registered
        if isinstance(registered, redis.ConnectionPool):
            return redis.Redis(connection_pool=registered)
    url = ctx.endpoint("redis_url")
    if not url:
        return None
    return redis.Redis.from_url(url, password=os.environ.get("REDIS_PASSWORD") or None,
                                socket_connect_timeout=2, socket_timeout=2)


class Ping(Action):
    """PING answers within the timeout. Proves the server answers, not that data is sound."""

    name = "redis.ping"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        client = _client(ctx)
        if client is None:
            return ActionResult(False, f"no redis_url for {ctx.target} in the inventory and "
                                "no pool registered", not_applicable=True)
        try:
            client.ping()
        except redis.exceptions.BusyLoadingError:
            return ActionResult(False, "redis is loading its dataset")
        except redis.exceptions.RedisError as exc:
            return ActionResult(False, f"PING failed: {exc}")
        return ActionResult(True, "PONG")

    plan = run


def register(registry) -> None:
    registry.register(Ping())
    registry.register(NotImplementedAction("redis.reconnect", EMBEDDED))
    registry.register(NotImplementedAction("redis.flush_corrupted", REMOTE))
    registry.register(NotImplementedAction("redis.sample_keys_readable", REMOTE))
