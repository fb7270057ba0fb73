"""A store's state as one consistent snapshot, kind by kind: what ``recovery store
migrate`` reads from a SQLite install and writes into a Redis one (engine.store.migrate).

Records are kept as the protocols know them (``Incident``, ``Attempt``, ``Approval``...);
what a protocol keeps beside its records (a run's claim, heartbeat and refusal members,
a kept delivery's fold, the histograms' buckets) is kept as plain values. Locks are not
part of it: they are the leases of the processes that held them, and those are stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.records import Approval, Attempt, AuditEvent, DegradedReason, Incident, Switch
from engine.store.outcome_metrics import CounterRow, DeferralRow, DurationRow
from engine.store.replicas import ROSTER_KEY

# The shared value that marks a store being written by a migration (and by which one),
# read by ``recovery status``: {"state": "incomplete" | "complete", "source": ..., "at": ...}
MIGRATION_KEY = "store_migration"
# Shared values that belong to the processes that wrote them, not to the install.
PER_PROCESS_VALUES = frozenset({"worker_heartbeat", ROSTER_KEY, "metrics_outcome_exporter",
                                MIGRATION_KEY})


def migration_note(mark: object) -> str | None:
    """The line ``recovery status`` shows for a store a migration wrote (its shared value
    ``MIGRATION_KEY``): only when that migration did not finish."""
    if isinstance(mark, dict) and mark.get("state") == "incomplete":
        return (f"store: INCOMPLETE migration from {mark.get('source')}: this store does "
                "not hold that install's whole state; rerun `recovery store migrate "
                "--replace` before starting the service on it")
    return None


@dataclass
class StateSnapshot:
    """Every kind of state a store holds, but locks and the intake waiting."""

    incidents: list[Incident] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    # ``run_values``-shaped dicts: the RunRecord's fields and claimed_by, claimed_until,
    # refusal_key, members ([fingerprint, incident] pairs), heartbeat_at
    runs: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    switches: list[Switch] = field(default_factory=list)
    degraded: list[DegradedReason] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)          # oldest first
    values: dict[str, Any] = field(default_factory=dict)
    counters: list[CounterRow] = field(default_factory=list)
    host_counters: list[CounterRow] = field(default_factory=list)
    deferrals: list[DeferralRow] = field(default_factory=list)
    durations: list[DurationRow] = field(default_factory=list)
    strategy_durations: list[DurationRow] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # Delivery fields + dedup_key
    resolved: list[tuple[str, str, float]] = field(default_factory=list)  # fp, ends_at, at
    dedup_keys: list[tuple[str, float]] = field(default_factory=list)     # key, last seen
    # the last fencing token given per counter (``lock``...): tokens keep growing after
    fencing: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many of each kind (the order ``recovery store migrate`` prints them)."""
        return {"incidents": len(self.incidents), "attempts": len(self.attempts),
                "runs": len(self.runs), "approvals": len(self.approvals),
                "switches": len(self.switches), "degraded": len(self.degraded),
                "events": len(self.events), "values": len(self.values),
                "counters": len(self.counters), "host_counters": len(self.host_counters),
                "deferrals": len(self.deferrals), "durations": len(self.durations),
                "strategy_durations": len(self.strategy_durations),
                "deliveries": len(self.deliveries), "resolved": len(self.resolved),
                "dedup_keys": len(self.dedup_keys)}


@dataclass
class SourceActivity:
    """What shows a service still working on a store: it must be stopped and its
    journal drained before the state is copied."""

    running_runs: list[str] = field(default_factory=list)
    intake_waiting: int = 0
    intake_claimed: int = 0
    live_locks: list[str] = field(default_factory=list)

    def reasons(self) -> list[str]:
        found = []
        if self.running_runs:
            shown = ", ".join(self.running_runs[:5]) + (" ..." if len(self.running_runs) > 5
                                                        else "")
            found.append(f"{len(self.running_runs)} run(s) running ({shown})")
        if self.intake_waiting:
            found.append(f"{self.intake_waiting} alert(s) in the intake journal not "
                         f"processed ({self.intake_claimed} claimed by a worker)")
        if self.live_locks:
            found.append(f"live lock(s) on {', '.join(self.live_locks[:5])}")
        return found
