"""Outcome metrics in SQLite (``engine.store.outcome_metrics.OutcomeMetrics``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from engine.store.outcome_metrics import (
    DURATION_BUCKETS,
    CounterRow,
    DeferralRow,
    DurationRow,
    OutcomeMetrics,
)
from engine.store.sqlite.connection import SQLiteConnection


def _bucket_counts(raw: str) -> dict[str, float]:
    return json.loads(raw)


class SQLiteOutcomeMetrics(SQLiteConnection, OutcomeMetrics):
    """``counters`` and ``host_counters``: a row per (component, strategy, outcome);
    ``durations``: a row per (component, strategy), its bucket counts as JSON keyed by
    bound; ``deferrals``: a row per (component, gate)."""

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
            # Counts keyed by bound, so changing DURATION_BUCKETS never breaks old rows.
            counts = _bucket_counts(row["buckets"]) if row else {}
            for bound in DURATION_BUCKETS:
                if duration <= bound:
                    counts[repr(bound)] = counts.get(repr(bound), 0) + 1
            total = (row["total"] if row else 0.0) + duration
            count = (row["count"] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO durations VALUES (?, ?, ?, ?, ?)",
                       (component, strategy, json.dumps(counts), total, count))

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
        out = []
        for r in self._read("SELECT * FROM durations ORDER BY component, strategy"):
            counts = _bucket_counts(r["buckets"])
            buckets = [(b, float(counts.get(repr(b), 0))) for b in DURATION_BUCKETS]
            buckets.append((float("inf"), float(r["count"])))
            out.append(DurationRow(r["component"], r["strategy"], buckets, r["total"], r["count"]))
        return out
