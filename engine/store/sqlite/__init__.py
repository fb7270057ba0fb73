"""SQLite (WAL) backend: the default store, nothing to install or start.

One module per protocol of the store (``intake_journal``, ``incidents``, ``run_index``,
``gate_state``, ``shared_values``, ``outcome_metrics``, ``audit_log``,
``housekeeping``, ``strategy_runs``), each a class over the same connection (``connection``: one
connection per thread, the write lock, retries, the file deleted or read-only);
``schema`` creates the tables and migrates an older store. ``SQLiteStore`` is all of
them: the ``Store`` the engine is given.
"""

from __future__ import annotations

from engine.store.base import Store
from engine.store.sqlite.audit_log import SQLiteAuditLog
from engine.store.sqlite.gate_state import SQLiteGateState
from engine.store.sqlite.housekeeping import SQLiteHousekeeping
from engine.store.sqlite.incidents import SQLiteIncidents
from engine.store.sqlite.intake_journal import SQLiteIntakeJournal
from engine.store.sqlite.outcome_metrics import SQLiteOutcomeMetrics
from engine.store.sqlite.run_index import SQLiteRunIndex
from engine.store.sqlite.shared_values import SQLiteSharedValues
from engine.store.sqlite.strategy_runs import SQLiteStrategyRuns

__all__ = ["SQLiteStore"]


class SQLiteStore(SQLiteIntakeJournal, SQLiteIncidents, SQLiteRunIndex, SQLiteGateState,
                  SQLiteSharedValues, SQLiteOutcomeMetrics, SQLiteAuditLog,
                  SQLiteHousekeeping, SQLiteStrategyRuns, Store):
    """The whole store in one SQLite file (or in memory: ``":memory:"``). Constructed as
    ``SQLiteConnection`` says (``synchronous``, ``busy_timeout``, ``retry_open``)."""
