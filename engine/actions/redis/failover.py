"""Redis failover: ``redis.reconnect`` moves the application's registered pool to the
primary that is healthy now (the one Sentinel reports, else the next of the host's
endpoints that answers ROLE master).

The contract for applications: register the ``redis.Redis`` client or the
``redis.ConnectionPool`` the application's code uses. ``reconnect`` rewrites that pool's
host and port and drops its connections, so every client built on the pool follows on its
next command. It cannot move what holds a connection outside the pool: a ``PubSub``, a
pipeline or lock in flight keeps the old address until the application opens it again.
"""

from __future__ import annotations

import random
import time
from typing import Any

from engine.actions.base import EMBEDDED, ActionContext, ActionResult, PlannedAction
from engine.actions.redis.endpoints import (
    Endpoint,
    Settings,
    check_primary,
    configured,
    number,
    pool_of,
    sentinel_primary,
    sentinels_of,
)


def _move_pool(pool, registered: Any, endpoint: Endpoint | None) -> None:
    """Point ``pool`` at ``endpoint`` (None: leave its address, as for a Sentinel-managed
    pool that asks Sentinel itself) and drop every connection it holds, idle or in use:
    the next command of any client on the pool connects afresh."""
    if endpoint is not None:
        pool.connection_kwargs.update(host=endpoint.host, port=endpoint.port)
    pool.disconnect(inuse_connections=True)
    pool.reset()   # forget the old connections: they carry the old address
    single = getattr(registered, "connection", None)   # a single_connection_client
    if single is not None:
        registered.connection = pool.get_connection()
        single.disconnect()


def _pool_endpoint(pool) -> Endpoint | None:
    kwargs = pool.connection_kwargs
    if "host" not in kwargs:     # a unix socket
        return None
    return Endpoint(str(kwargs["host"]), int(kwargs.get("port", 6379)))


def _pool_settings(pool) -> Settings:
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in ("host", "port")}
    return Settings(pool.connection_class, kwargs)


class Reconnect(PlannedAction):
    """Fail the application's registered pool over to the primary that is healthy now.

    Where Sentinel is configured (``redis_sentinels`` + ``redis_sentinel_service``) the
    primary is the one Sentinel reports; otherwise the next of the host's endpoints
    (``redis_url``, then ``redis_failover_urls``, starting after the pool's current
    address, the current one last) that answers ROLE ``master``: a replica is never
    chosen. It tries ``rounds`` times with exponential backoff (``backoff`` doubling up to
    ``backoff_max``, each wait jittered to 50-100 %), because a promotion takes seconds.
    It succeeds only when PING answers through the rebuilt pool.

    It cannot promote a replica (Sentinel or an operator does that), and it does not
    decide between two primaries: it takes the first in order, so a split brain (the old
    primary back as a master beside the new one) must be fixed by hand.
    """

    name = "redis.reconnect"
    scope = EMBEDDED
    resource = "redis"
    timeout = 45.0

    def act(self, ctx: ActionContext, change: bool) -> ActionResult:
        """Fails the pool over; as a plan (``change`` false), says where the pool would go
        now (one round, no waiting) and moves nothing."""
        import redis

        registered = ctx.resource("redis")
        pool = pool_of(registered)
        if pool is None:
            return ActionResult(False, f"cannot fail over a registered "
                                f"{type(registered).__name__}: register the application's "
                                "redis.Redis client or redis.ConnectionPool")
        try:
            rounds = int(number(ctx, "rounds", 10, low=1, high=100)) if change else 1
            backoff = number(ctx, "backoff", 0.25, duration=True, high=60)
            backoff_max = number(ctx, "backoff_max", 4, duration=True, high=300)
            timeout = number(ctx, "check_timeout", 1, duration=True, low=0.05, high=30)
            sentinels, service = sentinels_of(ctx)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        from redis.sentinel import SentinelConnectionPool

        if isinstance(pool, SentinelConnectionPool):
            return self._sentinel_managed(ctx, pool, registered, change)
        current = _pool_endpoint(pool)
        if current is None:
            return ActionResult(False, "refused: the registered pool uses a unix socket; "
                                "it can only fail over between TCP endpoints")
        settings = _pool_settings(pool)
        endpoints, _url, problems = configured(ctx)
        if not sentinels and not [e for e in endpoints if e != current]:
            return ActionResult(False, f"nowhere to fail over to: {ctx.target} has no "
                                "redis_failover_urls and no redis_sentinels in the inventory "
                                "(reconnecting to the same address is what redis-py does "
                                f"by itself){'; ' + '; '.join(problems) if problems else ''}")
        source = f"Sentinel service {service!r}" if sentinels else "the configured endpoints"
        checks: list[str] = []
        found = None
        started = time.monotonic()
        for round_no in range(1, rounds + 1):
            found, checks = self._find(current, endpoints, sentinels, service, settings,
                                       timeout)
            for line in checks:
                ctx.log(f"round {round_no}: {line}")
            if found is not None or round_no == rounds:
                break
            wait = min(backoff_max, backoff * 2 ** (round_no - 1)) * random.uniform(0.5, 1.0)
            if ctx.cancel.wait(wait):
                return ActionResult(False, f"stopped while looking for a primary "
                                    f"({round_no} rounds): {'; '.join(checks)}")
        data = {"from": str(current), "source": "sentinel" if sentinels else "endpoints",
                "rounds": round_no, "checks": checks,
                "seconds": round(time.monotonic() - started, 3)}
        if found is None:
            return ActionResult(False, f"no healthy primary among {source} for {ctx.target} "
                                f"after {round_no} round(s) over {data['seconds']:g}s: "
                                f"{'; '.join(checks)}", data)
        data["to"] = str(found)
        if not change:
            verb = "would stay on" if found == current else f"would move from {current} to"
            return ActionResult(True, f"{verb} {found}, the primary now ({source}); "
                                "nothing changed", data)
        _move_pool(pool, registered, found)
        try:
            redis.Redis(connection_pool=pool).ping()
        except redis.exceptions.RedisError as exc:
            return ActionResult(False, f"moved the pool to {found}, but PING through it "
                                f"failed: {exc}", data)
        if found == current:
            words = (f"{current} is still the primary ({source}): dropped the pool's "
                     "connections and reconnected; PING answers")
        else:
            words = (f"failed the application's Redis pool over from {current} to {found}, "
                     f"the primary now ({source}, {round_no} round(s)); PING answers "
                     "through the rebuilt pool")
        return ActionResult(True, words, data)

    @staticmethod
    def _find(current: Endpoint, endpoints: list[Endpoint], sentinels: list[tuple[str, int]],
              service: str | None, settings: Settings,
              timeout: float) -> tuple[Endpoint | None, list[str]]:
        """One round: the primary, or None; and what each check found."""
        if sentinels:
            endpoint, said = sentinel_primary(sentinels, service or "", timeout)
            if endpoint is None:
                return None, [said]
            why = check_primary(endpoint, settings, timeout)
            return (endpoint, [said]) if why is None else (None, [said, why])
        # the next endpoints after the current one, wrapping; the current one last
        at = endpoints.index(current) if current in endpoints else -1
        order = endpoints[at + 1:] + endpoints[:max(at, 0)]
        order = [e for e in order if e != current] + [current]
        checks = []
        for endpoint in order:
            why = check_primary(endpoint, settings, timeout)
            if why is None:
                checks.append(f"{endpoint} is a primary")
                return endpoint, checks
            checks.append(why)
        return None, checks

    @staticmethod
    def _sentinel_managed(ctx: ActionContext, pool, registered: Any,
                          move: bool) -> ActionResult:
        """A ``SentinelConnectionPool`` asks Sentinel on every new connection: dropping
        its connections is the whole failover."""
        import redis

        if not move:
            return ActionResult(True, "would drop the Sentinel-managed pool's connections "
                                f"(service {pool.service_name!r}); nothing changed")
        _move_pool(pool, registered, None)
        try:
            redis.Redis(connection_pool=pool).ping()
        except redis.exceptions.RedisError as exc:
            return ActionResult(False, f"dropped the Sentinel-managed pool's connections, but "
                                f"PING through it failed: {exc}")
        return ActionResult(True, f"dropped the Sentinel-managed pool's connections (service "
                            f"{pool.service_name!r}); PING answers through the new primary")
