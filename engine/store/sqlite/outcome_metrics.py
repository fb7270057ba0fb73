"""Outcome metrics in SQLite (``engine.store.outcome_metrics.OutcomeMetrics``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.store.outcome_metrics import (
    DURATION_BUCKETS,
    STRATEGY_BUCKETS,
    CounterRow,
    DeferralRow,
    DurationRow,
    OutcomeMetrics,
)
from engine.store.sqlite.connection import SQLiteConnection


def _bucket_counts(raw: str) -> dict[str, float]:
    return json.loads(raw)


def _added(counts: dict[str, float], bounds: tuple[float, ...],
           duration: float) -> dict[str, float]:
    # Counts keyed by bound, so changing the bounds never breaks old rows.
    for bound in bounds:
        if duration <= bound:
            counts[repr(bound)] = counts.get(repr(bound), 0) + 1
    return counts


def histogram_row(r: Any, bounds: tuple[float, ...], outcome: str = "") -> DurationRow:
    """A histogram row (``durations`` or ``strategy_durations``) as a ``DurationRow``."""
    counts = _bucket_counts(r["buckets"])
    buckets = [(b, float(counts.get(repr(b), 0))) for b in bounds]
    buckets.append((float("inf"), float(r["count"])))
    return DurationRow(r["component"], r["strategy"], buckets, r["total"], r["count"], outcome)


class SQLiteOutcomeMetrics(SQLiteConnection, OutcomeMetrics):
    """``counters`` and ``host_counters``: a row per (component, strategy, outcome);
    ``durations``: a row per (component, strategy), its bucket counts as JSON keyed by
    bound; ``strategy_durations`` the same per (component, strategy, outcome);
    ``deferrals``: a row per (component, gate)."""

    def record_outcome(self, component: str, strategy: str, outcome: str,
                       duration: float | None, *, gate: str | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters VALUES (?, ?, ?, 1) ON CONFLICT(component, strategy, "
                "outcome) DO UPDATE SET value = value + 1", (component, strategy, outcome))
            if gate is not None:
                db.execute("INSERT INTO deferrals VALUES (?, ?, 1) ON CONFLICT(component, "
                           "gate) DO UPDATE SET value = value + 1", (component, gate))
            if duration is None:
                return
            row = db.execute("SELECT buckets, total, count FROM durations WHERE component = ? "
                             "AND strategy = ?", (component, strategy)).fetchone()
            counts = _added(_bucket_counts(row["buckets"]) if row else {}, DURATION_BUCKETS,
                            duration)
            total = (row["total"] if row else 0.0) + duration
            count = (row["count"] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO durations VALUES (?, ?, ?, ?, ?)",
                       (component, strategy, json.dumps(counts), total, count))
            row = db.execute("SELECT buckets, total, count FROM strategy_durations WHERE "
                             "component = ? AND strategy = ? AND outcome = ?",
                             (component, strategy, outcome)).fetchone()
            counts = _added(_bucket_counts(row["buckets"]) if row else {}, STRATEGY_BUCKETS,
                            duration)
            db.execute("INSERT OR REPLACE INTO strategy_durations VALUES (?, ?, ?, ?, ?, ?)",
                       (component, strategy, outcome, json.dumps(counts),
                        (row["total"] if row else 0.0) + duration,
                        (row["count"] if row else 0) + 1))

    def record_host_outcomes(self, component: str, strategy: str,
                             counts: Mapping[str, int]) -> None:
        rows = [(component, strategy, outcome, n) for outcome, n in counts.items() if n]
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO host_counters VALUES (?, ?, ?, ?) ON CONFLICT(component, "
                "strategy, outcome) DO UPDATE SET value = value + excluded.value", rows)

    def host_counters(self) -> list[CounterRow]:
        rows = self._read("SELECT * FROM host_counters ORDER BY component, strategy, outcome")
        return [CounterRow(r["component"], r["strategy"], r["outcome"], r["value"]) for r in rows]

    def counters(self) -> list[CounterRow]:
        rows = self._read("SELECT * FROM counters ORDER BY component, strategy, outcome")
        return [CounterRow(r["component"], r["strategy"], r["outcome"], r["value"]) for r in rows]

    def deferrals(self) -> list[DeferralRow]:
        rows = self._read("SELECT * FROM deferrals ORDER BY component, gate")
        return [DeferralRow(r["component"], r["gate"], r["value"]) for r in rows]

    def durations(self) -> list[DurationRow]:
        return [histogram_row(r, DURATION_BUCKETS)
                for r in self._read("SELECT * FROM durations ORDER BY component, strategy")]

    def strategy_durations(self) -> list[DurationRow]:
        return [histogram_row(r, STRATEGY_BUCKETS, r["outcome"])
                for r in self._read("SELECT * FROM strategy_durations "
                                    "ORDER BY component, strategy, outcome")]
