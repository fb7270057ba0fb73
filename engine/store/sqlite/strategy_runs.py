"""Per-strategy runs in SQLite (``engine.store.strategy_runs.StrategyRuns``): each read
is a range scan of the ``runs_figures`` index alone (status, started_at, check_mode,
component, strategy, finished_at), one range per counted status (``INDEXED BY``: with
ANALYZE statistics the planner preferred ``runs_component`` and read every row). Counts
and last failures are reduced in SQL (GROUP BY); the median and p95 from the successful
runs' durations, one float per run. Only a failure's reason reads its row."""

from __future__ import annotations

from engine.store.sqlite.connection import SQLiteConnection
from engine.store.strategy_runs import (
    FAILED,
    SUCCEEDED,
    LastFailure,
    StrategyCount,
    StrategyRuns,
    SuccessTimes,
    success_times_of,
)

_COUNTED = "coalesce(check_mode, 0) = 0 AND started_at BETWEEN ? AND ?"
_IN = ", ".join("?" for _ in SUCCEEDED + FAILED)
_SUCCEEDED_IN = ", ".join("?" for _ in SUCCEEDED)
_FAILED_IN = ", ".join("?" for _ in FAILED)
_SUCCESS_TIMES = f"""
SELECT component, strategy, max(finished_at - started_at, 0.0) AS took
FROM runs INDEXED BY runs_figures
WHERE status IN ({_SUCCEEDED_IN}) AND {_COUNTED} AND finished_at IS NOT NULL"""


class SQLiteStrategyRuns(SQLiteConnection, StrategyRuns):

    def strategy_counts(self, since: float, until: float) -> list[StrategyCount]:
        rows = self._read(
            f"SELECT component, strategy, sum(status IN ({_SUCCEEDED_IN})) AS ok, "
            f"sum(status NOT IN ({_SUCCEEDED_IN})) AS failed FROM runs INDEXED BY runs_figures "
            f"WHERE status IN ({_IN}) AND {_COUNTED} GROUP BY component, strategy",
            (*SUCCEEDED, *SUCCEEDED, *SUCCEEDED, *FAILED, since, until))
        return [StrategyCount(r["component"], r["strategy"] or "", r["ok"], r["failed"])
                for r in rows]

    def success_times(self, since: float, until: float) -> list[SuccessTimes]:
        # Sorted here, not by SQL window functions: 3-4 times faster over 60,000 runs
        # (bench/strategy_figures.py); the scan is the index's either way.
        took: dict[tuple[str, str], list[float]] = {}
        for r in self._read(_SUCCESS_TIMES, (*SUCCEEDED, since, until)):
            took.setdefault((r["component"], r["strategy"] or ""), []).append(r["took"])
        return [success_times_of(component, strategy, values)
                for (component, strategy), values in took.items()]

    def last_failures(self, since: float, until: float) -> list[LastFailure]:
        # SQLite's bare columns: with max(), reason comes from the row holding the max
        rows = self._read(
            "SELECT component, strategy, reason, "
            "max(coalesce(finished_at, started_at)) AS at FROM runs INDEXED BY runs_figures "
            f"WHERE status IN ({_FAILED_IN}) AND {_COUNTED} GROUP BY component, strategy",
            (*FAILED, since, until))
        return [LastFailure(r["component"], r["strategy"] or "", r["reason"] or "", r["at"])
                for r in rows]
