"""The Redis state backend (scale-out: several replicas sharing one store), built one
protocol at a time like ``sqlite/``. Until every protocol of ``engine.store.base.Store``
is here, ``open_store`` refuses ``redis://`` URLs with that reason: a backend that holds
part of the state is never chosen silently.

One module per protocol, each a class over the same client (``connection``: the URL,
the credentials from the environment, the key prefix, errors as StoreUnavailable,
atomic read-then-writes); ``records`` is how a record is kept. ``BUILT`` is the parts
written so far: the store tests run each protocol on Redis that these cover.
"""

from __future__ import annotations

from engine.store.redis.audit_log import RedisAuditLog
from engine.store.redis.gate_state import (
    RedisApprovals,
    RedisCooldowns,
    RedisDegradedModes,
    RedisKillSwitches,
    RedisLocks,
)
from engine.store.redis.incidents import RedisIncidents
from engine.store.redis.outcome_metrics import RedisOutcomeMetrics
from engine.store.redis.run_index import RedisRunIndex
from engine.store.redis.shared_values import RedisSharedValues
from engine.store.redis.strategy_runs import RedisStrategyRuns

__all__ = ["BUILT"]

# The protocols' parts built so far, each a class over ``RedisConnection``.
BUILT: tuple[type, ...] = (RedisSharedValues, RedisAuditLog, RedisLocks, RedisApprovals,
                           RedisKillSwitches, RedisDegradedModes, RedisCooldowns,
                           RedisIncidents, RedisRunIndex, RedisOutcomeMetrics,
                           RedisStrategyRuns)
