"""The Redis state backend (scale-out: several replicas sharing one store), built one
protocol at a time like ``sqlite/``. Every protocol of ``engine.store.base.Store`` is
here now (``RedisStore``, each passing the same protocol tests as SQLite), but
``open_store`` still refuses ``redis://`` URLs: what makes several replicas safe on it
comes first (fencing tokens carried by every write a run makes, the replicas' own
start-up and reload, the server's settings checked at start). Until then only the tests
build a ``RedisStore``; a backend that is not safe to choose is never chosen silently.

One module per protocol, each a class over the same client (``connection``: the URL,
the credentials from the environment, the key prefix, errors as StoreUnavailable,
atomic read-then-writes); ``records`` is how a record is kept. ``BUILT`` is the parts
written, one per protocol (or gate's state).
"""

from __future__ import annotations

from engine.store.base import Store
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
from engine.store.redis.shared_values import RedisSharedValues
from engine.store.redis.strategy_runs import RedisStrategyRuns

__all__ = ["BUILT", "RedisStore"]

# The protocols' parts, each a class over ``RedisConnection``.
BUILT: tuple[type, ...] = (RedisSharedValues, RedisAuditLog, RedisLocks, RedisApprovals,
                           RedisKillSwitches, RedisDegradedModes, RedisCooldowns,
                           RedisIncidents, RedisRunIndex, RedisOutcomeMetrics,
                           RedisStrategyRuns, RedisIntakeJournal, RedisHousekeeping)


class RedisStore(RedisHousekeeping, RedisIntakeJournal, RedisIncidents, RedisRunIndex,
                 RedisLocks, RedisApprovals, RedisKillSwitches, RedisDegradedModes,
                 RedisCooldowns, RedisSharedValues, RedisOutcomeMetrics, RedisAuditLog,
                 RedisStrategyRuns, Store):
    """The whole store in one Redis server (or several installs in one, by key prefix).
    Constructed as ``RedisConnection`` says (the URL, ``busy_timeout``, ``environ``)."""
