"""Which replica's ``GET /metrics`` carries the store's counters, so that several
replicas on one store never count a run twice.

Why: the outcome counters and histograms (runs, hosts, deferrals, durations, failed
posts) are the shared store's, the same totals whichever replica reads them. Were every
replica to export them, Prometheus would keep one copy per scraped replica and
``sum(rate(infra_recovery_attempts_total[5m]))`` would count each run once per replica.
So one replica at a time exports them: the first whose /metrics is scraped takes a
lease of ``LEASE`` seconds in the store (a shared value, atomic on every backend) and
renews it at each of its scrapes; the others leave those families out. When it stops
being scraped (stopped, dead), another takes over once the lease has lapsed. Each
replica says which it is (``infra_recovery_outcome_exporter`` 1 or 0), so a rule can
check that exactly one exports.

What it costs: one atomic write per scrape of the exporting replica; while a lease of a
dead one runs out (at most ``LEASE``), no replica exports the counters (a gap, never a
double count), and the series move to another replica's ``instance`` then (``rate``
and ``increase`` take that as a new series). ``recovery metrics`` and an embedding
application's exporter are not scraped side by side: they always show every family.
"""

from __future__ import annotations

from typing import Any

from engine.context import EngineContext

EXPORTER_KEY = "metrics_outcome_exporter"
LEASE = 120.0      # s: longer than any sensible scrape interval


def exports_outcomes(ctx: EngineContext, now: float, lease: float = LEASE) -> bool:
    """True if this replica exports the store's counters at this scrape: it holds the
    lease (renewed now) or took it (nobody held it, or its holder's lapsed)."""
    taken = False

    def take(value: Any) -> Any:
        nonlocal taken
        held = value if isinstance(value, dict) else {}
        holder, until = held.get("replica"), float(held.get("until") or 0.0)
        if holder is None or holder == ctx.replica or until <= now:
            taken = True
            return {"replica": ctx.replica, "until": now + lease}
        return value

    ctx.store.update_value(EXPORTER_KEY, take)
    return taken
