"""Where the Redis actions connect, shared by the failover, the keyspace actions and the
probe: the target's endpoints from the inventory (``redis_url``, ``redis_failover_urls``),
its Sentinels (``redis_sentinels`` + ``redis_sentinel_service``), which of them is the
primary now, and a client of it. Never from labels.

Credentials come from the environment: ``REDIS_PASSWORD`` (for the data nodes, where the
URL carries none) and ``REDIS_SENTINEL_PASSWORD`` (for the Sentinels). They never reach a
summary or ``data``: endpoints are written as ``host:port``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.actions.base import ActionContext
from engine.durations import parse_duration


@dataclass(frozen=True)
class Endpoint:
    """A data node's address; written ``host:port`` (never with credentials)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Settings:
    """How to connect to a data node (class, db, credentials, TLS), minus the address:
    the application's own pool settings, or those of the inventory's ``redis_url``."""

    connection_class: type
    kwargs: dict[str, Any]

    def client(self, endpoint: Endpoint, timeout: float):  # -> redis.Redis
        """A one-off client to ``endpoint`` that fails at once: no retries of its own."""
        import redis

        kwargs = {**self.kwargs, "host": endpoint.host, "port": endpoint.port,
                  "socket_timeout": timeout, "socket_connect_timeout": timeout,
                  "retry": no_retry()}
        return redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=self.connection_class, **kwargs))


def no_retry():  # -> redis.retry.Retry
    """No retries: a check must fail at once, not retry a dead address by itself."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def url_settings(url: str) -> tuple[Endpoint, Settings]:
    """The endpoint and connection settings of a ``redis://`` or ``rediss://`` URL; the
    password from REDIS_PASSWORD where the URL has none. ValueError for anything else."""
    import redis
    from redis.connection import parse_url

    kwargs = parse_url(url)
    if "host" not in kwargs:
        raise ValueError("only redis:// and rediss:// URLs with a host can be failed over")
    connection_class = kwargs.pop("connection_class", redis.Connection)
    endpoint = Endpoint(kwargs.pop("host"), int(kwargs.pop("port", 6379)))
    if not kwargs.get("password") and os.environ.get("REDIS_PASSWORD"):
        kwargs["password"] = os.environ["REDIS_PASSWORD"]
    return endpoint, Settings(connection_class, kwargs)


def configured(ctx: ActionContext) -> tuple[list[Endpoint], Settings | None, list[str]]:
    """``redis_url`` then ``redis_failover_urls``, in order, without repeats; with the
    settings of the first, and what was wrong with any of them."""
    urls = [ctx.host_vars.get("redis_url")]
    extra = ctx.host_vars.get("redis_failover_urls") or []
    urls += [extra] if isinstance(extra, str) else list(extra)
    endpoints: list[Endpoint] = []
    settings, problems = None, []
    for index, url in enumerate(u for u in urls if u):
        try:
            endpoint, these = url_settings(str(url))
        except ValueError as exc:
            problems.append(f"endpoint #{index + 1} of {ctx.target}: {exc}")
            continue
        settings = settings or these
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    return endpoints, settings, problems


def sentinels_of(ctx: ActionContext) -> tuple[list[tuple[str, int]], str | None]:
    """``redis_sentinels`` as (host, port) pairs and ``redis_sentinel_service``; ValueError
    when only one of them is set or an address is not host:port."""
    raw = ctx.host_vars.get("redis_sentinels") or []
    service = ctx.host_vars.get("redis_sentinel_service")
    raw = [raw] if isinstance(raw, str) else list(raw)
    if bool(raw) != bool(service):
        raise ValueError(f"{ctx.target}: redis_sentinels and redis_sentinel_service go "
                         "together (Sentinel needs both)")
    pairs = []
    for item in raw:
        host, _, port = str(item).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{ctx.target}: sentinel address {item!r} is not host:port")
        pairs.append((host.strip("[]"), int(port)))
    return pairs, (str(service) if service else None)


def sentinel_primary(sentinels: list[tuple[str, int]], service: str,
                     timeout: float) -> tuple[Endpoint | None, str]:
    """The primary Sentinel reports for ``service`` now (not down, a master), or why not."""
    from redis.sentinel import MasterNotFoundError, Sentinel

    sentinel = Sentinel(sentinels, sentinel_kwargs={
        "password": os.environ.get("REDIS_SENTINEL_PASSWORD") or None,
        "socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": no_retry()})
    try:
        host, port = sentinel.discover_master(service)
    except MasterNotFoundError:
        return None, (f"Sentinel ({len(sentinels)} asked) reports no healthy primary for "
                      f"{service!r} yet")
    finally:
        for client in sentinel.sentinels:
            client.close()
    return Endpoint(str(host), int(port)), f"Sentinel reports {host}:{port} for {service!r}"


def check_primary(endpoint: Endpoint, settings: Settings, timeout: float) -> str | None:
    """None if ``endpoint`` answers as a primary (ROLE master, then PING); else why not.
    A replica is never a failover target: it refuses writes."""
    import redis

    client = settings.client(endpoint, timeout)
    try:
        role = client.execute_command("ROLE")
        name = role[0].decode() if isinstance(role[0], bytes) else str(role[0])
        if name != "master":
            return f"{endpoint} is a {'replica' if name == 'slave' else name}, not a primary"
        client.ping()
    except redis.exceptions.BusyLoadingError:
        return f"{endpoint} is loading its dataset"
    except redis.exceptions.RedisError as exc:
        return f"{endpoint}: {exc}"
    finally:
        client.close()
    return None


def number(ctx: ActionContext, name: str, default: float, *, duration: bool = False,
           low: float = 0, high: float = 1e9) -> float:
    """The runbook parameter ``name`` (a duration where ``duration``) within bounds, else
    ValueError: a typo must refuse the step, not run it with a wild value."""
    value = ctx.params.get(name, default)
    got = parse_duration(value) if duration else float(value)
    if not low <= got <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return got


def pool_of(registered: Any):  # -> redis.ConnectionPool | None
    """The pool behind what the application registered (a client or a pool), else None."""
    import redis

    if isinstance(registered, redis.Redis):
        return registered.connection_pool
    if isinstance(registered, redis.ConnectionPool):
        return registered
    return None


# -- remote: the server of the target ------------------------------------------------------
@contextmanager
def connect(ctx: ActionContext, timeout: float = 2.0) -> Iterator[Any]:
    """The registered pool's client in an application; else a client of the inventory's
    ``redis_url`` (closed afterwards). None when there is neither."""
    import redis

    registered = ctx.resource("redis")
    if isinstance(registered, redis.Redis):
        yield registered
        return
    if isinstance(registered, redis.ConnectionPool):
        yield redis.Redis(connection_pool=registered)
        return
    url = ctx.endpoint("redis_url")
    if not url:
        yield None
        return
    client = redis.Redis.from_url(url, password=os.environ.get("REDIS_PASSWORD") or None,
                                  socket_connect_timeout=timeout, socket_timeout=timeout,
                                  retry=no_retry())
    try:
        yield client
    finally:
        client.close()


@contextmanager
def primary_client(ctx: ActionContext, timeout: float = 5.0) -> Iterator[tuple[Any, str]]:
    """A client of the target's primary, for what writes: the one Sentinel reports, else
    the first of ``redis_url`` and ``redis_failover_urls`` that answers ROLE master. The
    inventory comes first (a destructive step acts where the inventory says); only a host
    without any endpoint falls back to the application's registered pool.

    Yields (client, where) or (None, why not)."""
    import redis

    endpoints, settings, problems = configured(ctx)
    try:
        sentinels, service = sentinels_of(ctx)
    except ValueError as exc:
        yield None, f"refused: {exc}"
        return
    if settings is None:
        registered = ctx.resource("redis")
        pool = pool_of(registered)
        if pool is None:
            yield None, (f"no redis_url for {ctx.target} in the inventory and no pool "
                         f"registered{': ' + '; '.join(problems) if problems else ''}")
            return
        yield redis.Redis(connection_pool=pool), "the application's pool"
        return
    if sentinels:
        found, said = sentinel_primary(sentinels, service or "", min(timeout, 2.0))
        reasons = [said]
    else:
        found, reasons = None, []
        for endpoint in endpoints:
            why = check_primary(endpoint, settings, min(timeout, 2.0))
            if why is None:
                found = endpoint
                break
            reasons.append(why)
    if found is None:
        yield None, f"no primary for {ctx.target}: {'; '.join(reasons + problems)}"
        return
    client = settings.client(found, timeout)
    try:
        yield client, str(found)
    finally:
        client.close()
