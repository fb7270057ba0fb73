"""The store interface: every piece of shared state, one small protocol per concept.

The CLI, embedded applications and the service all read and write through this one
interface, so cooldowns, approvals, locks and the audit index are one, whoever acts.
``Store`` is what the engine is given: the union of the protocols (the intake journal,
incidents and attempts, the run index, the gates' state, shared values, outcome metrics,
the audit log, housekeeping, the runs per strategy, and the roster of replicas, written
once over the shared values for every backend). A module that needs one concept
takes that protocol, and a backend is written and tested one protocol at a time
(``sqlite/``; Redis comes with scale-out). Every verb that reads then writes is atomic
in the backend (compare-and-set), because several processes race for the same
incident, approval or lock.
"""

from __future__ import annotations

from typing import Protocol

from engine.store.audit_log import AuditLog
from engine.store.fencing import Fence, StaleLease
from engine.store.gate_state import GateState
from engine.store.housekeeping import Housekeeping
from engine.store.incidents import Incidents
from engine.store.intake_journal import IntakeJournal
from engine.store.outcome_metrics import OutcomeMetrics
from engine.store.replicas import ReplicaRoster
from engine.store.run_index import RunIndex
from engine.store.shared_values import SharedValues
from engine.store.strategy_runs import StrategyRuns

__all__ = ["Fence", "StaleLease", "Store", "StoreUnavailable"]


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or written: callers answer 503 / exit 1, never drop."""


class Store(IntakeJournal, Incidents, RunIndex, GateState, ReplicaRoster, SharedValues,
            OutcomeMetrics, AuditLog, Housekeeping, StrategyRuns, Protocol):
    """State shared by every process that runs recoveries."""
