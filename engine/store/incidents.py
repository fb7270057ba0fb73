"""Incidents and their attempts: one open incident per (runbook, target), and the
attempts that work on it.

Every verb that reads then writes is atomic (compare-and-set): several processes race
for the same incident (the webhook's workers, the CLI, an application).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

from engine.lifecycle import AttemptOutcome, IncidentState
from engine.records import Attempt, Incident, RunRecord
from engine.store.fencing import Fence


class Incidents(Protocol):
    """What is wrong where, how far its remediation has come, and each attempt at it."""

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
        self, incident_id: str, *, expect: Iterable[IncidentState] | None = None,
        fence: Fence | None = None, **fields: Any
    ) -> Incident | None:
        """Change fields; with ``expect``, only if the state is one of them (else None);
        with ``fence``, only while no other token holds its lock (else StaleLease,
        nothing written: engine.store.fencing).
        An incident leaving ``remediating`` loses ``forced``: an operator's ``--force``
        belongs to the attempt in hand, and ends when that attempt ends or pauses; unless
        the change names ``forced`` itself (the operator's own step handed back to be
        planned again under a changed runbook keeps its request)."""

    @abstractmethod
    def list_incidents(
        self, *, open_only: bool = False, component: str | None = None,
        target: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Incident]:
        """The newest first; ``target`` and ``state`` (an ``IncidentState`` value) filter
        as ``component`` does."""

    @abstractmethod
    def claim_due_incident(self, now: float) -> Incident | None:
        """Take one deferred incident whose time has come: OPEN -> REMEDIATING, atomically
        (the request is retried as it stands: a deferral dropped its ``--force``, see
        ``update_incident``)."""

    @abstractmethod
    def claim_incident(self, incident_id: str, now: float, *, trigger: str,
                       requested_by: str) -> Incident | None:
        """Take this incident's attempt for a repeated signal: OPEN (and due, if
        deferred) -> REMEDIATING, asked for by ``trigger``/``requested_by`` from now on;
        an operator's ``--force`` or ``--strategy`` of an earlier request is dropped."""

    @abstractmethod
    def begin_step(self, run: RunRecord, attempt: Attempt | None, *,
                   resumed: bool = False) -> Incident | None:
        """A step starts, atomically: the attempt it opens (if any) is recorded and counted
        on the incident, and the run is added (or, ``resumed``, moved to running). If the
        incident is no longer remediating, or a resumed run no longer waits, it raises
        TransitionError and writes nothing."""

    @abstractmethod
    def finish_attempt(self, attempt_id: str, outcome: AttemptOutcome, at: float, *,
                       fence: Fence | None = None) -> None:
        """End a running attempt (once: a later finish changes nothing); with ``fence``,
        StaleLease (nothing written) once another token holds that lock."""
