"""Per-strategy runs in SQLite (``engine.store.strategy_runs.StrategyRuns``): read from
the ``runs_figures`` index alone (status, started_at, check_mode, component, strategy,
finished_at), one range per counted status; only a failure's reason reads its row."""

from __future__ import annotations

from engine.store.sqlite.connection import SQLiteConnection
from engine.store.strategy_runs import (
    FAILED,
    SUCCEEDED,
    LastFailure,
    StrategyRun,
    StrategyRuns,
)

_IN = ", ".join("?" for _ in SUCCEEDED + FAILED)
_FAILED_IN = ", ".join("?" for _ in FAILED)


class SQLiteStrategyRuns(SQLiteConnection, StrategyRuns):

    def strategy_runs(self, since: float, until: float) -> list[StrategyRun]:
        rows = self._read(
            "SELECT component, strategy, status, finished_at - started_at AS duration "
            f"FROM runs WHERE status IN ({_IN}) AND started_at BETWEEN ? AND ? "
            "AND coalesce(check_mode, 0) = 0", (*SUCCEEDED, *FAILED, since, until))
        return [StrategyRun(r["component"], r["strategy"] or "", r["status"],
                            None if r["duration"] is None else max(0.0, r["duration"]))
                for r in rows]

    def last_failures(self, since: float, until: float) -> list[LastFailure]:
        # SQLite's bare columns: with max(), reason comes from the row holding the max
        rows = self._read(
            "SELECT component, strategy, reason, "
            "max(coalesce(finished_at, started_at)) AS at FROM runs "
            f"WHERE status IN ({_FAILED_IN}) AND started_at BETWEEN ? AND ? "
            "AND coalesce(check_mode, 0) = 0 GROUP BY component, strategy",
            (*FAILED, since, until))
        return [LastFailure(r["component"], r["strategy"] or "", r["reason"] or "", r["at"])
                for r in rows]
