"""Redis actions (redis-py): the probe and verify ``ping``, the strategies ``reconnect``
(fail the application's pool over) and ``flush_corrupted`` (delete keys without a TTL
that match a namespace pattern), and the post-flush verify ``sample_keys_readable``
(with ``require_ttl``: no key of the namespace left without a TTL).

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

The actions live in one module per concept: ``endpoints`` (where to connect: the
inventory, Sentinel, which node is the primary), ``failover`` (``reconnect``), ``keys``
(``flush_corrupted``, ``sample_keys_readable``) and ``probe`` (``ping``). This package is
the entry point the registry imports.
"""

from __future__ import annotations

from engine.actions.redis.failover import Reconnect
from engine.actions.redis.keys import FlushCorrupted, SampleKeysReadable
from engine.actions.redis.probe import Ping


def register(registry) -> None:
    """Register the Redis actions (the registry imports this package by name)."""
    registry.register(Ping())
    registry.register(Reconnect())
    registry.register(FlushCorrupted())
    registry.register(SampleKeysReadable())
