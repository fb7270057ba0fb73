"""The Redis store's client, key namespace and atomic updates.

``redis://[user:password@]host:port/db?prefix=recovery:`` (``rediss://`` for TLS). The
credentials may come from the environment instead (``RECOVERY_REDIS_USERNAME``,
``RECOVERY_REDIS_PASSWORD``), so that no file or process list holds them; a URL is only
ever shown redacted (``redacted``). Every key the store writes starts with the prefix
(``recovery:`` unless ``?prefix=`` says otherwise), so several installs, or the tests,
share one server without seeing each other.

Any error of the server or of the way to it (refused, timed out, loading, read-only,
out of memory) is ``StoreUnavailable``: the caller answers 503 or exits 1, never drops.
A read-then-write runs with its keys WATCHed and is retried when another writer changed
them (``_atomic``), within ``busy_timeout``; Lua only where one verb must check and
write in the server at once (``_script``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from engine.store.base import StoreRefused, StoreUnavailable
from engine.store.redis.server_settings import UnsafeRedisSettings, require_safe_settings
from engine.store.urls import redacted

T = TypeVar("T")
DEFAULT_PREFIX = "recovery:"
USERNAME_ENV = "RECOVERY_REDIS_USERNAME"
PASSWORD_ENV = "RECOVERY_REDIS_PASSWORD"
SOCKET_TIMEOUT = 5.0      # s: a server that does not answer is unavailable, not waited for
STORE_OPTIONS = ("prefix", "checked_elsewhere")
WATCH_FIRST_SLEEP = 0.0005   # s: the first retry of a read-then-write another writer beat


# Wrong credentials, or an ACL user not allowed what the store does: a configuration
# error to fix, not an outage to wait out (it never ends by itself).
CREDENTIALS_REFUSED = (redis.AuthenticationError, redis.exceptions.NoPermissionError,
                       redis.exceptions.AuthenticationWrongNumberOfArgsError)


def _credentials_refused(url: str, exc: Exception) -> StoreRefused:
    return StoreRefused(f"the Redis store at {url} refused its credentials: {exc} (set "
                        f"them in the URL or in {USERNAME_ENV} / {PASSWORD_ENV})")


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """(the URL redis-py is given, the store's own query options): ``prefix`` and
    ``checked_elsewhere`` (settings the server will not show that the operator checked
    another way, comma-separated: see ``server_settings``)."""
    parts = urlsplit(url)
    options: dict[str, str] = {}
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in STORE_OPTIONS:
            options[name] = value
        else:
            kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), options


def credentials(url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The username and password redis-py is given: the URL's, else the environment's."""
    parts = urlsplit(url)
    found = {}
    username = unquote(parts.username) if parts.username else environ.get(USERNAME_ENV)
    password = unquote(parts.password) if parts.password else environ.get(PASSWORD_ENV)
    if username:
        found["username"] = username
    if password:
        found["password"] = password
    return found


Read = tuple[str, ...]     # a read command and its arguments: ("GET", key)


def watch_reading(pipe: redis.client.Pipeline, keys: Sequence[str],
                  reads: Sequence[Read]) -> Any:
    """``pipe`` with ``keys`` WATCHed and ``reads`` run after the WATCH, all sent in one
    round trip; what is returned answers those reads (``get``/``hget``) from their
    replies, each once, and passes everything else to ``pipe``. The connection comes
    from the pool as for any command (one a server restart broke is replaced there); one
    that fails here is dropped, never pooled with replies unread."""
    if pipe.connection is None:
        pipe.connection = pipe.connection_pool.get_connection()
    conn = pipe.connection
    try:
        conn.send_packed_command(conn.pack_commands([("WATCH", *keys), *reads]))
        pipe.watching = True        # from here the pipe's reset sends UNWATCH
        conn.read_response()        # WATCH: OK
        replies = [conn.read_response() for _ in reads]
    except BaseException:
        conn.disconnect()           # replies may be left unread: the connection goes,
        pipe.watching = False       # and its WATCH with it
        raise
    return _Prefetched(pipe, {tuple(r): v for r, v in zip(reads, replies, strict=True)})


class _Prefetched:
    """A WATCHing pipeline whose first reads were already answered (``watch_reading``)."""

    def __init__(self, pipe: redis.client.Pipeline, replies: dict[Read, Any]) -> None:
        self._pipe, self._replies = pipe, replies

    def get(self, key: str) -> Any:
        read = ("GET", key)
        return self._replies.pop(read) if read in self._replies else self._pipe.get(key)

    def hget(self, key: str, field: str) -> Any:
        read = ("HGET", key, field)
        return (self._replies.pop(read) if read in self._replies
                else self._pipe.hget(key, field))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


class RedisConnection:
    """The client and the namespace every protocol's part of the Redis backend goes
    through: ``_key`` names a key, ``_client`` runs commands, ``_atomic`` a
    read-then-write, ``_script`` a Lua script."""

    def __init__(self, url: str, *, busy_timeout: float = 15.0,
                 environ: Mapping[str, str] | None = None, check_settings: bool = False) -> None:
        client_url, options = split_options(url)
        self.prefix = options.get("prefix", DEFAULT_PREFIX)
        self.checked_elsewhere = tuple(
            s.strip() for s in options.get("checked_elsewhere", "").split(",") if s.strip())
        self.url = redacted(url)
        self.busy_timeout = busy_timeout
        env = os.environ if environ is None else environ
        self._client_url, self._credentials = client_url, credentials(url, env)
        self._redis = redis.Redis.from_url(
            client_url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1),   # once at once (a pooled connection gone stale)
            **self._credentials)
        self._within_clients: dict[float, redis.Redis] = {}   # by bound: ``_within``
        self._scripts: dict[str, Script] = {}
        # The server's settings are judged before its first use (``check_settings``):
        # at open when it answers, else at its first answer (a service that came up
        # while Redis was down).
        self._settings_judged = not check_settings

    def _within(self, wait: float | None) -> redis.Redis:
        """The client, or for a caller that waits ``wait`` seconds at most (the
        webhook's ``store_wait``) one whose connect and each command give up after
        ``wait`` (``SOCKET_TIMEOUT`` at most), tried once: a server that stopped answering (a
        partition, SIGSTOP) is a prompt 503, not a wait of two socket timeouts. What is
        sent through it must be safe to send again (the command may have run)."""
        if wait is None:
            return self._redis
        wait = min(wait, SOCKET_TIMEOUT)   # the default client retries: twice as long
        client = self._within_clients.get(wait)
        if client is None:
            client = self._within_clients[wait] = redis.Redis.from_url(
                self._client_url, socket_timeout=wait, socket_connect_timeout=wait,
                retry=Retry(NoBackoff(), 0), **self._credentials)
        return client

    def _key(self, *parts: str) -> str:
        """The key named by ``parts`` in this store's namespace (``prefix`` + ``a:b``)."""
        return self.prefix + ":".join(parts)

    @contextmanager
    def _client(self) -> Iterator[redis.Redis]:
        """The client; any Redis error inside is StoreUnavailable, with the URL redacted."""
        try:
            if not self._settings_judged:
                self.check_settings()
            yield self._redis
        except UnsafeRedisSettings as exc:
            raise StoreRefused(f"the Redis store at {self.url}: {exc}") from exc
        except redis.WatchError:
            raise
        except CREDENTIALS_REFUSED as exc:
            raise _credentials_refused(self.url, exc) from exc
        except redis.RedisError as exc:
            raise StoreUnavailable(
                f"the Redis store at {self.url} is unavailable: {exc}") from exc

    def check_settings(self) -> None:
        """Raise ``UnsafeRedisSettings`` if the server's settings would lose state
        (StoreUnavailable if it cannot be asked); once they passed, not asked again."""
        try:
            require_safe_settings(self._redis, checked_elsewhere=self.checked_elsewhere)
        except CREDENTIALS_REFUSED as exc:
            raise _credentials_refused(self.url, exc) from exc
        except redis.RedisError as exc:
            raise StoreUnavailable(
                f"the Redis store at {self.url} is unavailable: {exc}") from exc
        self._settings_judged = True

    def _atomic(self, keys: list[str], change: Callable[[redis.client.Pipeline], T], *,
                prefetch: Sequence[Read] = ()) -> T:
        """``change(pipe)`` with ``keys`` WATCHed: it reads through ``pipe`` at once, then
        calls ``pipe.multi()`` and queues its writes (or queues none). Run again while
        another writer changes one of the keys in between; StoreUnavailable when that
        goes on past ``busy_timeout``. Returns what ``change`` returned.

        ``prefetch``: reads (``("GET", key)``, ``("HGET", key, field)``) that ``change``
        makes first, sent with the WATCH in one round trip (``watch_reading``): its
        ``pipe.get``/``pipe.hget`` of them answer from those replies, read after the
        WATCH as they would have been."""
        deadline = time.monotonic() + self.busy_timeout
        delay = WATCH_FIRST_SLEEP
        with self._client() as client:
            while True:
                with client.pipeline() as pipe:
                    try:
                        if prefetch:
                            result = change(watch_reading(pipe, keys, prefetch))
                        else:
                            pipe.watch(*keys)
                            result = change(pipe)
                        pipe.execute()
                        return result
                    except redis.WatchError:
                        if time.monotonic() >= deadline:
                            raise StoreUnavailable(
                                f"the Redis store at {self.url} is busy: {keys} kept "
                                f"changing for {self.busy_timeout:g}s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.01)

    def _script(self, name: str, source: str) -> Script:
        """The Lua script ``source``, registered once under ``name`` (redis-py runs it by
        its SHA and loads it again after a server restart)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._redis.register_script(source)
        return script

    def _run_script(self, name: str, source: str, keys: list[str], args: list[Any], *,
                    wait: float | None = None) -> Any:
        with self._client():
            return self._script(name, source)(keys=keys, args=args, client=self._within(wait))

    def close(self) -> None:
        self._redis.close()
        for client in self._within_clients.values():
            client.close()
