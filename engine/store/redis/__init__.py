"""The Redis state backend (scale-out: several replicas sharing one store), built one
protocol at a time like ``sqlite/``. Every protocol of ``engine.store.base.Store`` is
here (``RedisStore``, each passing the same protocol tests as SQLite); ``open_store``
opens one for ``redis://`` URLs through ``open_redis_store``, which refuses a server whose
settings would lose state (``server_settings``).

One module per protocol, each a class over the same client (``connection``: the URL,
the credentials from the environment, the key prefix, errors as StoreUnavailable,
atomic read-then-writes); ``records`` is how a record is kept. ``BUILT`` is the parts
written, one per protocol (or gate's state).
"""

from __future__ import annotations

from engine.store.base import Store, StoreUnavailable
from engine.store.redis.audit_log import RedisAuditLog
from engine.store.redis.gate_state import (
    RedisApprovals,
    RedisCooldowns,
    RedisDegradedModes,
    RedisKillSwitches,
    RedisLocks,
)
from engine.store.redis.housekeeping import RedisHousekeeping
from engine.store.redis.incidents import RedisIncidents
from engine.store.redis.intake_journal import RedisIntakeJournal
from engine.store.redis.outcome_metrics import RedisOutcomeMetrics
from engine.store.redis.run_index import RedisRunIndex
from engine.store.redis.server_settings import UnsafeRedisSettings
from engine.store.redis.shared_values import RedisSharedValues
from engine.store.redis.state_import import RedisStateImport
from engine.store.redis.strategy_runs import RedisStrategyRuns

__all__ = ["BUILT", "RedisStore", "open_redis_store"]

# The protocols' parts, each a class over ``RedisConnection``.
BUILT: tuple[type, ...] = (RedisSharedValues, RedisAuditLog, RedisLocks, RedisApprovals,
                           RedisKillSwitches, RedisDegradedModes, RedisCooldowns,
                           RedisIncidents, RedisRunIndex, RedisOutcomeMetrics,
                           RedisStrategyRuns, RedisIntakeJournal, RedisHousekeeping)


class RedisStore(RedisStateImport, RedisHousekeeping, RedisIntakeJournal, RedisIncidents,
                 RedisRunIndex, RedisLocks, RedisApprovals, RedisKillSwitches, RedisDegradedModes,
                 RedisCooldowns, RedisSharedValues, RedisOutcomeMetrics, RedisAuditLog,
                 RedisStrategyRuns, Store):
    """The whole store in one Redis server (or several installs in one, by key prefix).
    Constructed as ``RedisConnection`` says (the URL, ``busy_timeout``, ``environ``)."""


def open_redis_store(url: str, *, retry_open: bool = False) -> RedisStore:
    """The store at ``url``, its server's settings judged now: ``UnsafeRedisSettings`` (a
    ValueError: the service does not start) when they would lose state. A server that
    does not answer is StoreUnavailable, or with ``retry_open`` a store that judges the
    settings at the server's first answer (each use until then is StoreUnavailable, and
    so is each use of a server found unsafe then)."""
    store = RedisStore(url, check_settings=True)
    try:
        store.check_settings()
    except UnsafeRedisSettings:
        store.close()
        raise
    except StoreUnavailable:
        if not retry_open:
            store.close()
            raise
    return store
