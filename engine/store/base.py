"""The store interface: every piece of shared state, behind a handful of verbs.

The CLI, embedded applications and the service all read and write through this one
interface, so cooldowns, approvals, locks and the audit index are one, whoever acts.
Each backend is one file (``sqlite.py``; Redis comes with scale-out). Every verb that
reads then writes is atomic in the backend (compare-and-set), because several
processes race for the same incident, approval or lock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus
from engine.records import (
    Approval,
    Attempt,
    AuditEvent,
    DegradedReason,
    Delivery,
    Incident,
    Lock,
    RunRecord,
    Switch,
)

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0,
)


class StoreUnavailable(RuntimeError):
    """The store cannot be reached or written: callers answer 503 / exit 1, never drop."""


@dataclass
class IntakeItem:
    """One journaled alert delivery, waiting for a worker."""

    id: int
    dedup_key: str
    payload: dict[str, Any]
    received_at: float


@dataclass
class CounterRow:
    component: str
    strategy: str
    outcome: str
    value: float


@dataclass
class DurationRow:
    component: str
    strategy: str
    buckets: list[tuple[float, float]]   # (upper bound, cumulative count); +Inf last
    total: float
    count: float


class Store(ABC):
    """State shared by every process that runs recoveries."""

    # -- incidents ------------------------------------------------------------------
    @abstractmethod
    def open_incident(self, incident: Incident) -> tuple[Incident, bool]:
        """Insert ``incident`` unless one is open for (runbook, target); return that one then."""

    @abstractmethod
    def get_incident(self, incident_id: str) -> Incident | None: ...

    @abstractmethod
    def find_open_incident(self, runbook: str, target: str) -> Incident | None: ...

    @abstractmethod
    def latest_incident(self, runbook: str, target: str) -> Incident | None:
        """The most recently opened incident of (runbook, target), open or closed."""

    @abstractmethod
    def reopen_incident(self, incident_id: str, reason: str, *, trigger: str,
                        requested_by: str) -> Incident | None:
        """A recovered incident whose alert still fires: remediating again, as a new
        attempt asked for by ``trigger``/``requested_by`` (whatever the last attempt's
        request was: an operator's ``--force`` or ``--strategy`` is not carried over);
        None if it is not recovered or another incident is open for it."""

    @abstractmethod
    def update_incident(
        self, incident_id: str, *, expect: Iterable[IncidentState] | None = None, **fields: Any
    ) -> Incident | None:
        """Change fields; with ``expect``, only if the state is one of them (else None).
        An incident leaving ``remediating`` loses ``forced``: an operator's ``--force``
        belongs to the attempt in hand, and ends when that attempt ends or pauses; unless
        the change names ``forced`` itself (the operator's own step handed back to be
        planned again under a changed runbook keeps its request)."""

    @abstractmethod
    def list_incidents(
        self, *, open_only: bool = False, component: str | None = None, limit: int = 100
    ) -> list[Incident]: ...

    @abstractmethod
    def claim_due_incident(self, now: float) -> Incident | None:
        """Take one deferred incident whose time has come: OPEN -> REMEDIATING, atomically
        (the request is retried as it stands: a deferral dropped its ``--force``, see
        ``update_incident``)."""

    # -- runs (the index; the account is in the artifacts) -----------------------------
    @abstractmethod
    def add_run(self, run: RunRecord) -> None: ...

    @abstractmethod
    def begin_step(self, run: RunRecord, attempt: Attempt | None, *,
                   resumed: bool = False) -> Incident | None:
        """A step starts, atomically: the attempt it opens (if any) is recorded and counted
        on the incident, and the run is added (or, ``resumed``, moved to running). If the
        incident is no longer remediating, or a resumed run no longer waits, it raises
        TransitionError and writes nothing."""

    @abstractmethod
    def update_run(
        self, run_id: str, *, status: RunStatus | None = None, **fields: Any
    ) -> RunRecord | None:
        """Change a run; a status change must be allowed by the lifecycle (else None)."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def add_refusal(self, run: RunRecord, key: str, *, max_fingerprints: int) -> RunRecord:
        """Count the refusal ``run`` into the record of ``key`` (engine.refusals), at once:
        the first of a key adds ``run`` (count 1); each next one adds 1 to its ``count``
        and, while it has counted fewer than ``max_fingerprints``, lists its fingerprint
        (once) and links its fingerprint and incident, so ``query_runs(fingerprint=...,
        incident_id=...)`` finds the record. Returns the record as stored now: ``run.id``
        is its id only when this call created it."""

    @abstractmethod
    def query_runs(
        self,
        *,
        component: str | None = None,
        since: float | None = None,
        status: str | None = None,
        incident_id: str | None = None,
        target: str | None = None,
        fingerprint: str | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]:
        """Newest first. By ``fingerprint`` or ``incident_id``: also the refusal records
        that count that alert or incident among their linked ones (``add_refusal``)."""

    @abstractmethod
    def claim_queued_run(self, holder: str, now: float, lease: float) -> RunRecord | None:
        """Take one approved run for a worker; the claim lapses after ``lease`` seconds."""

    @abstractmethod
    def claim_run(self, run_id: str, holder: str, now: float, lease: float) -> RunRecord | None:
        """Take this queued run (``approve --now``), unless another claim is live."""

    @abstractmethod
    def claim_incident(self, incident_id: str, now: float, *, trigger: str,
                       requested_by: str) -> Incident | None:
        """Take this incident's attempt for a repeated signal: OPEN (and due, if
        deferred) -> REMEDIATING, asked for by ``trigger``/``requested_by`` from now on;
        an operator's ``--force`` or ``--strategy`` of an earlier request is dropped."""

    @abstractmethod
    def heartbeat_runs(self, run_ids: Iterable[str], now: float) -> None: ...

    @abstractmethod
    def stale_running_runs(self, heartbeat_before: float) -> list[RunRecord]:
        """Runs still marked running whose process stopped beating (killed, crashed)."""

    # -- attempts and cooldown ------------------------------------------------------
    @abstractmethod
    def finish_attempt(self, attempt_id: str, outcome: AttemptOutcome, at: float) -> None: ...

    @abstractmethod
    def attempts_since(self, runbook: str, target: str, since: float) -> list[Attempt]:
        """Attempts started at or after ``since`` (the cooldown window), oldest first."""

    @abstractmethod
    def last_failed_attempt(self, runbook: str, target: str) -> Attempt | None: ...

    @abstractmethod
    def attempt_keys_since(self, since: float) -> set[tuple[str, str]]:
        """(runbook, target) pairs with an attempt started or finished since ``since``:
        the only pairs a cooldown can be active for."""

    # -- approvals ------------------------------------------------------------------
    @abstractmethod
    def add_approval(self, approval: Approval) -> None: ...

    @abstractmethod
    def get_approval(self, run_id: str) -> Approval | None: ...

    @abstractmethod
    def list_approvals(self, status: str | None = "pending") -> list[Approval]: ...

    @abstractmethod
    def decide_approval(
        self, run_id: str, *, status: str, by: str | None, reason: str, at: float,
        expect: str = "pending",
    ) -> Approval | None:
        """Move an approval out of ``expect``; None if someone else decided first."""

    @abstractmethod
    def due_approvals(self, now: float) -> list[Approval]:
        """Pending approvals past their expiry."""

    # -- locks ------------------------------------------------------------------------
    @abstractmethod
    def acquire_lock(
        self, target: str, holder: str, ttl: float, *, run_id: str | None = None,
        component: str | None = None,
    ) -> Lock | None:
        """The lease if free (or expired), else None. Tokens grow: fencing."""

    @abstractmethod
    def renew_lock(self, target: str, token: int, ttl: float) -> bool: ...

    @abstractmethod
    def release_lock(self, target: str, token: int) -> bool: ...

    @abstractmethod
    def get_lock(self, target: str) -> Lock | None:
        """The live lock on ``target`` (expired ones are not returned)."""

    @abstractmethod
    def break_lock(self, target: str) -> Lock | None: ...

    @abstractmethod
    def list_locks(self) -> list[Lock]: ...

    # -- kill switches ------------------------------------------------------------------
    @abstractmethod
    def add_switch(self, switch: Switch) -> None: ...

    @abstractmethod
    def remove_switches(self, component: str | None, target: str | None) -> list[Switch]:
        """Remove the switches of exactly this scope (``enable`` undoes a ``disable``)."""

    @abstractmethod
    def active_switches(self, now: float) -> list[Switch]: ...

    # -- degraded modes -------------------------------------------------------------------
    @abstractmethod
    def add_degraded(self, reason: DegradedReason) -> None: ...

    @abstractmethod
    def clear_degraded(
        self, *, mode: str | None = None, target: str | None = None, manual: bool | None = False
    ) -> list[DegradedReason]:
        """Remove reasons (``manual=None``: automatic and manual alike)."""

    @abstractmethod
    def degraded_reasons(self, mode: str | None = None) -> list[DegradedReason]: ...

    # -- metrics ----------------------------------------------------------------------------
    @abstractmethod
    def record_outcome(
        self, component: str, strategy: str, outcome: str, duration: float | None
    ) -> None: ...

    @abstractmethod
    def counters(self) -> list[CounterRow]: ...

    @abstractmethod
    def durations(self) -> list[DurationRow]: ...

    # -- intake queue (the webhook journals here before answering 200) --------------------
    @abstractmethod
    def enqueue_alerts(self, items: list[tuple[str, dict[str, Any]]], *,
                       repeat_after: float | None = None,
                       wait: float | None = None) -> tuple[int, int]:
        """Journal (dedup_key, payload) pairs; return (accepted, duplicates). With
        ``repeat_after``, a firing duplicate last journaled longer ago than that is
        journaled again (a repeat is a signal), still counted as a duplicate. Waits for
        the store ``wait`` seconds at most (default: the store's own bound), then raises
        StoreUnavailable."""

    @abstractmethod
    def claim_intake(self, holder: str, limit: int, lease: float) -> list[IntakeItem]: ...

    @abstractmethod
    def intake_claims(self, now: float) -> list[tuple[str, float]]:
        """The claims on the intake not lapsed at ``now``: one (holder, claimed_until)
        per claim (a batch claimed at once shares its ``claimed_until``)."""

    @abstractmethod
    def release_intake(self, claims: Iterable[tuple[str, float]]) -> int:
        """Give the items of these claims (as ``intake_claims`` names them) back to the
        queue, at their place in it; how many items."""

    @abstractmethod
    def ack_intake(self, ids: Iterable[int], deliveries: Iterable[Delivery] = ()) -> None:
        """Drop processed items from the queue, and keep what was made of them
        (``deliveries``) in the same transaction: one kept delivery per dedup key, a
        repeat counted on it (see ``Delivery``), a payload only on the newest firing
        delivery of each fingerprint."""

    @abstractmethod
    def deliveries(self, *, fingerprint: str | None = None, incident_id: str | None = None,
                   limit: int | None = 100) -> list[Delivery]:
        """Kept deliveries, the latest processed first (pruned with the history,
        ``delete_before``, once their latest delivery is older)."""

    @abstractmethod
    def intake_depth(self, now: float) -> tuple[int, float]:
        """(entries waiting, age in seconds of the oldest)."""

    @abstractmethod
    def mark_resolved(self, fingerprint: str, ends_at: str, at: float) -> None:
        """Remember that an episode of ``fingerprint`` resolved, ending at ``ends_at``
        (the latest such time is kept); kept until ``delete_before`` passes ``at``."""

    @abstractmethod
    def resolved_until(self, fingerprint: str) -> tuple[str, float] | None:
        """(when the last resolved episode of this fingerprint ended, when that resolve
        was processed), if any."""

    # -- audit events and housekeeping ------------------------------------------------------
    @abstractmethod
    def add_event(self, event: AuditEvent) -> None: ...

    @abstractmethod
    def list_events(self, limit: int = 100) -> list[AuditEvent]: ...

    @abstractmethod
    def delete_before(self, before: float) -> list[str]:
        """Drop what ended before ``before``: runs (their ids are returned, for their
        artifacts), closed incidents, finished attempts, decided approvals, events, the
        intake's dedup keys, resolve marks and kept deliveries."""

    @abstractmethod
    def set_value(self, key: str, value: Any) -> None: ...

    @abstractmethod
    def get_value(self, key: str) -> Any: ...

    @abstractmethod
    def update_value(self, key: str, update: Callable[[Any], Any]) -> Any:
        """Replace the value with ``update(old)`` (old: None when absent) atomically
        against every other writer; returns the new value."""

    def claim_due(self, key: str, now: float, interval: float) -> bool:
        """True for exactly one caller per ``interval`` (whatever process asks): the time
        of the last claim is kept under ``key``."""
        claimed = False

        def take(last: Any) -> Any:
            nonlocal claimed
            claimed = last is None or now - float(last) >= interval
            return now if claimed else last

        self.update_value(key, take)
        return claimed

    @abstractmethod
    def ping(self, *, write: bool = False, wait: float | None = None) -> None:
        """Raise StoreUnavailable if the store cannot be read (``write``: written now, by
        a real write within ``wait`` seconds: an empty transaction proves nothing)."""

    def maintain(self) -> None:  # noqa: B027 - optional for backends
        """Housekeeping a worker runs between passes, off the path of any request."""

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release connections."""
