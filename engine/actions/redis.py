"""Redis actions (redis-py): the probe and verify ``ping``, the strategies ``reconnect``
(fail the application's pool over) and ``flush_corrupted`` (delete keys without a TTL
that match a pattern), and the post-flush verify ``sample_keys_readable``.

Where they connect comes from the target's inventory variables, never from labels:

    redis_url                the host's own server (probe, verify)
    redis_failover_urls      the endpoints that may take over, in order (a list)
    redis_sentinels          ["host:port", ...]: Sentinels that know the primary; where
    redis_sentinel_service   set (both), Sentinel decides, not the list

Credentials come from the environment: ``REDIS_PASSWORD`` (for the data nodes, where the
URL carries none) and ``REDIS_SENTINEL_PASSWORD`` (for the Sentinels). They never reach a
summary or ``data``: endpoints are written as ``host:port``.

The contract for applications (``reconnect``): register the ``redis.Redis`` client or the
``redis.ConnectionPool`` the application's code uses. ``reconnect`` rewrites that pool's
host and port and drops its connections, so every client built on the pool follows on its
next command. It cannot move what holds a connection outside the pool: a ``PubSub``, a
pipeline or lock in flight keeps the old address until the application opens it again.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine.actions.base import EMBEDDED, REMOTE, Action, ActionContext, ActionResult
from engine.durations import parse_duration

SAMPLE = 10                      # key names shown in a plan or a record
_GLOB = "*?[\\"                   # where a SCAN pattern stops being a literal prefix


@dataclass(frozen=True)
class Endpoint:
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
                  "retry": _no_retry()}
        return redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=self.connection_class, **kwargs))


def _no_retry():
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def _url_settings(url: str) -> tuple[Endpoint, Settings]:
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


def _configured(ctx: ActionContext) -> tuple[list[Endpoint], Settings | None, list[str]]:
    """``redis_url`` then ``redis_failover_urls``, in order, without repeats; with the
    settings of the first, and what was wrong with any of them."""
    urls = [ctx.host_vars.get("redis_url")]
    extra = ctx.host_vars.get("redis_failover_urls") or []
    urls += [extra] if isinstance(extra, str) else list(extra)
    endpoints: list[Endpoint] = []
    settings, problems = None, []
    for index, url in enumerate(u for u in urls if u):
        try:
            endpoint, these = _url_settings(str(url))
        except ValueError as exc:
            problems.append(f"endpoint #{index + 1} of {ctx.target}: {exc}")
            continue
        settings = settings or these
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    return endpoints, settings, problems


def _sentinels(ctx: ActionContext) -> tuple[list[tuple[str, int]], str | None]:
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


def _sentinel_primary(sentinels: list[tuple[str, int]], service: str,
                      timeout: float) -> tuple[Endpoint | None, str]:
    """The primary Sentinel reports for ``service`` now (not down, a master), or why not."""
    from redis.sentinel import MasterNotFoundError, Sentinel

    sentinel = Sentinel(sentinels, sentinel_kwargs={
        "password": os.environ.get("REDIS_SENTINEL_PASSWORD") or None,
        "socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": _no_retry()})
    try:
        host, port = sentinel.discover_master(service)
    except MasterNotFoundError:
        return None, (f"Sentinel ({len(sentinels)} asked) reports no healthy primary for "
                      f"{service!r} yet")
    finally:
        for client in sentinel.sentinels:
            client.close()
    return Endpoint(str(host), int(port)), f"Sentinel reports {host}:{port} for {service!r}"


def _check_primary(endpoint: Endpoint, settings: Settings, timeout: float) -> str | None:
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


def _number(ctx: ActionContext, name: str, default: float, *, duration: bool = False,
            low: float = 0, high: float = 1e9) -> float:
    value = ctx.params.get(name, default)
    number = parse_duration(value) if duration else float(value)
    if not low <= number <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


# -- the application's pool ---------------------------------------------------------------
def _pool_of(registered: Any):  # -> redis.ConnectionPool | None
    import redis

    if isinstance(registered, redis.Redis):
        return registered.connection_pool
    if isinstance(registered, redis.ConnectionPool):
        return registered
    return None


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


class Reconnect(Action):
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

    def run(self, ctx: ActionContext) -> ActionResult:
        return self._failover(ctx, move=True)

    def plan(self, ctx: ActionContext) -> ActionResult:
        """Where the pool would go now (one round, no waiting); nothing moves."""
        return self._failover(ctx, move=False)

    def _failover(self, ctx: ActionContext, move: bool) -> ActionResult:
        import redis

        registered = ctx.resource("redis")
        pool = _pool_of(registered)
        if pool is None:
            return ActionResult(False, f"cannot fail over a registered "
                                f"{type(registered).__name__}: register the application's "
                                "redis.Redis client or redis.ConnectionPool")
        try:
            rounds = int(_number(ctx, "rounds", 10, low=1, high=100)) if move else 1
            backoff = _number(ctx, "backoff", 0.25, duration=True, high=60)
            backoff_max = _number(ctx, "backoff_max", 4, duration=True, high=300)
            timeout = _number(ctx, "check_timeout", 1, duration=True, low=0.05, high=30)
            sentinels, service = _sentinels(ctx)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        from redis.sentinel import SentinelConnectionPool

        if isinstance(pool, SentinelConnectionPool):
            return self._sentinel_managed(ctx, pool, registered, move)
        current = _pool_endpoint(pool)
        if current is None:
            return ActionResult(False, "refused: the registered pool uses a unix socket; "
                                "it can only fail over between TCP endpoints")
        settings = _pool_settings(pool)
        endpoints, _url, problems = _configured(ctx)
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
        if not move:
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
            endpoint, said = _sentinel_primary(sentinels, service or "", timeout)
            if endpoint is None:
                return None, [said]
            why = _check_primary(endpoint, settings, timeout)
            return (endpoint, [said]) if why is None else (None, [said, why])
        # the next endpoints after the current one, wrapping; the current one last
        at = endpoints.index(current) if current in endpoints else -1
        order = endpoints[at + 1:] + endpoints[:max(at, 0)]
        order = [e for e in order if e != current] + [current]
        checks = []
        for endpoint in order:
            why = _check_primary(endpoint, settings, timeout)
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


# -- remote: the server of the target ------------------------------------------------------
@contextmanager
def _connect(ctx: ActionContext, timeout: float = 2.0) -> Iterator[Any]:
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
                                  retry=_no_retry())
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _primary(ctx: ActionContext, timeout: float = 5.0) -> Iterator[tuple[Any, str]]:
    """A client of the target's primary, for what writes: the one Sentinel reports, else
    the first of ``redis_url`` and ``redis_failover_urls`` that answers ROLE master. The
    inventory comes first (a destructive step acts where the inventory says); only a host
    without any endpoint falls back to the application's registered pool.

    Yields (client, where) or (None, why not)."""
    import redis

    endpoints, settings, problems = _configured(ctx)
    try:
        sentinels, service = _sentinels(ctx)
    except ValueError as exc:
        yield None, f"refused: {exc}"
        return
    if settings is None:
        registered = ctx.resource("redis")
        pool = _pool_of(registered)
        if pool is None:
            yield None, (f"no redis_url for {ctx.target} in the inventory and no pool "
                         f"registered{': ' + '; '.join(problems) if problems else ''}")
            return
        yield redis.Redis(connection_pool=pool), "the application's pool"
        return
    if sentinels:
        found, said = _sentinel_primary(sentinels, service or "", min(timeout, 2.0))
        reasons = [said]
    else:
        found, reasons = None, []
        for endpoint in endpoints:
            why = _check_primary(endpoint, settings, min(timeout, 2.0))
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


def _text(key: Any) -> str:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return text if len(text) <= 120 else text[:117] + "..."


class Ping(Action):
    """PING answers within the timeout, and INFO says the server can serve: not loading
    its dataset, no connection rejected since the previous check (maxclients reached),
    and, under ``maxmemory-policy noeviction``, used memory below ``max_memory_ratio`` of
    ``maxmemory`` (beyond it writes fail with OOM; with an eviction policy a full cache
    is normal and passes). It proves the server serves, not that its data is sound.
    """

    name = "redis.ping"
    scope = REMOTE
    timeout = 10.0

    def __init__(self) -> None:
        self._rejected: dict[tuple[str, str], int] = {}    # (server, run_id) -> counter
        self._lock = threading.Lock()

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        try:
            ratio = _number(ctx, "max_memory_ratio", 0.95, low=0.01, high=1)
            timeout = _number(ctx, "timeout", 2, duration=True, low=0.05, high=30)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        with _connect(ctx, timeout) as client:
            if client is None:
                return ActionResult(False, f"no redis_url for {ctx.target} in the inventory "
                                    "and no pool registered", not_applicable=True)
            loading = False
            try:
                client.ping()
            except redis.exceptions.BusyLoadingError:
                loading = True
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"PING failed: {exc}")
            try:
                info = client.info()
            except redis.exceptions.RedisError as exc:
                if loading:
                    return ActionResult(False, "redis is loading its dataset", {"loading": 1})
                return ActionResult(False, f"PONG, but INFO failed: {exc}")
        return self._judge(info, ratio, loading)

    plan = run

    def _judge(self, info: dict[str, Any], ratio: float, loading: bool) -> ActionResult:
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        policy = str(info.get("maxmemory_policy", ""))
        rejected = int(info.get("rejected_connections", 0))
        data = {"role": info.get("role"), "loading": int(info.get("loading", 0)),
                "used_memory": used, "maxmemory": limit, "maxmemory_policy": policy,
                "connected_clients": info.get("connected_clients"),
                "rejected_connections": rejected}
        problems = []
        if loading or data["loading"]:
            problems.append(f"loading its dataset ({info.get('loading_loaded_perc', '?')}% "
                            f"done, about {info.get('loading_eta_seconds', '?')}s left)")
        key = (str(info.get("tcp_port", "")), str(info.get("run_id", "")))
        with self._lock:
            before = self._rejected.get(key)
            self._rejected[key] = rejected
        if before is not None and rejected > before:
            problems.append(f"rejected {rejected - before} connection(s) since the previous "
                            f"check (maxclients reached; {info.get('connected_clients')} "
                            "clients connected)")
        share = used / limit if limit else 0.0
        memory = (f"{used / 2**20:.1f} MiB used of {limit / 2**20:.1f} MiB ({share:.0%}, "
                  f"{policy})" if limit else f"{used / 2**20:.1f} MiB used, no maxmemory")
        if limit and share >= ratio and policy == "noeviction":
            problems.append(f"memory full: {memory}, writes fail with OOM")
        if problems:
            return ActionResult(False, "; ".join(problems), data)
        return ActionResult(True, f"PONG ({info.get('role')}, {memory}, "
                            f"{info.get('connected_clients')} clients)", data)


def _pattern(ctx: ActionContext) -> str:
    """The runbook's ``match`` pattern; ValueError for one without a literal prefix
    (``*``, ``[a-z]*``): a flush is limited to one namespace of keys, never all of them."""
    pattern = str(ctx.params.get("match") or "")
    if not pattern:
        raise ValueError("`match` (a key pattern such as cache:*) is required")
    if pattern[0] in _GLOB:
        raise ValueError(f"pattern {pattern!r} has no literal prefix and could match every "
                         "key: name the namespace (cache:*)")
    return pattern


# Deletes the given keys that have no TTL, atomically per batch (a key given a TTL since
# the SCAN is kept); returns the names it deleted.
_FLUSH = """
local gone = {}
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) == -1 then
    redis.call('UNLINK', key)
    gone[#gone + 1] = key
  end
end
return gone
"""


class FlushCorrupted(Action):
    """Delete the keys that match ``match`` and have no TTL, at most ``max_keys`` per run.

    SCAN in batches of ``batch`` (never KEYS, never FLUSHALL/FLUSHDB); each batch is
    checked and deleted (UNLINK) by one Lua script, so a key given a TTL meanwhile is
    kept. Keys with a TTL are the cache working as designed and are never touched; a
    TTL-less key under a cache prefix is the corruption this removes (a write that lost
    its EXPIRE). Refuses a pattern that matches every key. It acts on the target's
    primary (see ``_primary``); on a cap it stops and says more may remain.
    """

    name = "redis.flush_corrupted"
    scope = REMOTE
    timeout = 120.0

    def _limits(self, ctx: ActionContext) -> tuple[str, int, int]:
        pattern = _pattern(ctx)
        cap = int(_number(ctx, "max_keys", 10000, low=1, high=1_000_000))
        batch = int(_number(ctx, "batch", 500, low=1, high=10_000))
        return pattern, cap, batch

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        try:
            pattern, cap, batch = self._limits(ctx)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        deleted, checked, batches, sample = 0, 0, 0, []
        started = time.monotonic()
        with _primary(ctx) as (client, where):
            if client is None:
                return ActionResult(False, f"cannot flush: {where}")
            script = client.register_script(_FLUSH)
            cursor, keys = 0, []
            try:
                while deleted < cap:
                    if ctx.cancel.is_set():
                        break
                    cursor, keys = client.scan(cursor, match=pattern, count=batch)
                    batches += 1
                    while keys and deleted < cap:
                        chunk, keys = keys[:cap - deleted], keys[cap - deleted:]
                        checked += len(chunk)
                        gone = script(keys=chunk)
                        deleted += len(gone)
                        sample += [_text(k) for k in gone[:SAMPLE - len(sample)]]
                    if cursor == 0:
                        break
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"flush on {where} failed after deleting "
                                    f"{deleted} key(s): {exc}",
                                    {"deleted": deleted, "server": where})
        capped = deleted >= cap and (cursor != 0 or bool(keys))
        kept = checked - deleted         # had a TTL (or vanished) when checked
        data = {"server": where, "match": pattern, "deleted": deleted, "cap": cap,
                "capped": capped, "checked": checked, "kept_with_ttl": kept,
                "batches": batches, "sample": sample,
                "seconds": round(time.monotonic() - started, 3)}
        tail = (f"stopped at the cap of {cap} per run: more may remain, run it again"
                if capped else "the whole keyspace was scanned")
        if ctx.cancel.is_set():
            return ActionResult(False, f"stopped after deleting {deleted} key(s) without a "
                                f"TTL matching {pattern!r} on {where}", data)
        return ActionResult(True, f"deleted {deleted} key(s) without a TTL matching "
                            f"{pattern!r} on {where} (SCAN, {batches} batch(es) of "
                            f"{batch}); {kept} matching key(s) with a TTL left alone; "
                            f"{tail}", data)

    def plan(self, ctx: ActionContext) -> ActionResult:
        """How many keys a run would delete (up to the cap, then "more than") and a sample;
        reads only (SCAN and PTTL)."""
        import redis

        try:
            pattern, cap, batch = self._limits(ctx)
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        count, with_ttl, sample, cursor = 0, 0, [], 0
        with _primary(ctx) as (client, where):
            if client is None:
                return ActionResult(False, f"cannot plan the flush: {where}")
            try:
                while count <= cap and not ctx.cancel.is_set():
                    cursor, keys = client.scan(cursor, match=pattern, count=batch)
                    pipe = client.pipeline(transaction=False)
                    for key in keys:
                        pipe.pttl(key)
                    for key, ttl in zip(keys, pipe.execute(), strict=True):
                        if ttl == -1:
                            count += 1
                            if len(sample) < SAMPLE:
                                sample.append(_text(key))
                        elif ttl >= 0:
                            with_ttl += 1
                    if cursor == 0:
                        break
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"cannot plan the flush on {where}: {exc}")
        more = count > cap
        data = {"server": where, "match": pattern, "would_delete": min(count, cap),
                "without_ttl": count, "more_than_cap": more, "cap": cap,
                "with_ttl_seen": with_ttl, "sample": sample}
        words = (f"more than {cap} keys without a TTL match {pattern!r}: a run deletes "
                 f"{cap}" if more else f"would delete {count} key(s) without a TTL matching "
                 f"{pattern!r}")
        return ActionResult(True, f"{words} on {where}; {with_ttl} matching key(s) with a "
                            f"TTL stay; e.g. {', '.join(sample) or '(none)'}", data)


class SampleKeysReadable(Action):
    """Verify after a flush (PING proves nothing there): up to ``sample`` keys matching
    ``match`` (default all) are read back whole (DUMP) without an error, and, with
    ``type``, are of that type (a key of another type fails the application's reads with
    WRONGTYPE). It cannot tell whether a value is what the application meant to write.
    """

    name = "redis.sample_keys_readable"
    scope = REMOTE
    timeout = 15.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import redis

        pattern = str(ctx.params.get("match") or "*")
        wanted = ctx.params.get("type")
        try:
            size = int(_number(ctx, "sample", 20, low=1, high=1000))
        except ValueError as exc:
            return ActionResult(False, f"refused: {exc}")
        with _primary(ctx) as (client, where):
            if client is None:
                return ActionResult(False, f"cannot sample: {where}")
            try:
                client.ping()
                keys: list[Any] = []
                cursor, scans = 0, 0
                while len(keys) < size and scans < 50:   # bounded on a sparse keyspace
                    cursor, page = client.scan(cursor, match=pattern, count=100)
                    keys += [k for k in page if k not in keys][:size - len(keys)]
                    scans += 1
                    if cursor == 0:
                        break
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.type(key)
                    pipe.dump(key)
                replies = pipe.execute(raise_on_error=False)
            except redis.exceptions.RedisError as exc:
                return ActionResult(False, f"cannot read from {where}: {exc}")
        bad = []
        for index, key in enumerate(keys):
            kind, value = replies[2 * index], replies[2 * index + 1]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if isinstance(value, Exception) or isinstance(kind, Exception):
                bad.append(f"{_text(key)}: {value}")
            elif wanted and kind not in (str(wanted), "none"):
                bad.append(f"{_text(key)}: a {kind}, not a {wanted}")
        data = {"server": where, "match": pattern, "sampled": len(keys),
                "unreadable": len(bad), "examples": bad[:SAMPLE]}
        if bad:
            return ActionResult(False, f"{len(bad)} of {len(keys)} sampled key(s) matching "
                                f"{pattern!r} on {where} unreadable: {'; '.join(bad[:3])}",
                                data)
        if not keys:
            return ActionResult(True, f"no key matching {pattern!r} left on {where}; the "
                                "server answers", data)
        return ActionResult(True, f"read {len(keys)} sampled key(s) matching {pattern!r} on "
                            f"{where}: all readable", data)

    plan = run


def register(registry) -> None:
    registry.register(Ping())
    registry.register(Reconnect())
    registry.register(FlushCorrupted())
    registry.register(SampleKeysReadable())
