"""The states of incidents, runs and attempts, and the moves allowed between them.

One place per state (as rq's ``JobStatus``): every other module names these
values instead of spelling strings, and the store refuses a transition that is
not listed here, so a bug cannot quietly turn a ``failed`` run into a success.
"""

from __future__ import annotations

from enum import StrEnum


class IncidentState(StrEnum):
    """One failure of one runbook on one target (docs/architecture.md, the words)."""

    OPEN = "open"                # known, no attempt under way (new, deferred, or refused)
    REMEDIATING = "remediating"  # an attempt is running or parked for approval
    RECOVERED = "recovered"
    DEGRADED = "degraded"        # ended by a strategy that only degrades
    FAILED = "failed"            # every strategy tried, none fixed it
    RESOLVED = "resolved"        # the alert resolved
    CANCELED = "canceled"        # refused, rejected, or canceled by an operator

    @property
    def is_open(self) -> bool:
        return self in (IncidentState.OPEN, IncidentState.REMEDIATING)


INCIDENT_TRANSITIONS: dict[IncidentState, frozenset[IncidentState]] = {
    IncidentState.OPEN: frozenset(
        {IncidentState.REMEDIATING, IncidentState.RESOLVED, IncidentState.CANCELED,
         IncidentState.FAILED}
    ),
    IncidentState.REMEDIATING: frozenset(
        {IncidentState.OPEN, IncidentState.RECOVERED, IncidentState.DEGRADED,
         IncidentState.FAILED, IncidentState.RESOLVED, IncidentState.CANCELED}
    ),
    # A recovered incident whose alert still fires after the verify window reopens.
    IncidentState.RECOVERED: frozenset(
        {IncidentState.OPEN, IncidentState.REMEDIATING, IncidentState.RESOLVED}),
    IncidentState.DEGRADED: frozenset({IncidentState.OPEN, IncidentState.RESOLVED}),
    IncidentState.FAILED: frozenset({IncidentState.OPEN, IncidentState.RESOLVED}),
    IncidentState.RESOLVED: frozenset(),
    IncidentState.CANCELED: frozenset(),
}


class RunStatus(StrEnum):
    """One execution of one strategy step (docs/architecture.md, the words)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    PENDING_APPROVAL = "pending_approval"
    QUEUED = "queued"            # approved, waiting for a worker to ask the gates again
    REJECTED = "rejected"
    EXPIRED = "expired"
    REFUSED = "refused"
    DEFERRED = "deferred"
    INTERRUPTED = "interrupted"
    CANCELED = "canceled"
    PARTIAL = "partial"          # several hosts: some ok, some failed or unreachable

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.PENDING_APPROVAL, RunStatus.QUEUED)


RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.INTERRUPTED,
         RunStatus.CANCELED, RunStatus.PARTIAL}
    ),
    RunStatus.PENDING_APPROVAL: frozenset(
        {RunStatus.QUEUED, RunStatus.REJECTED, RunStatus.EXPIRED, RunStatus.CANCELED,
         RunStatus.RUNNING}
    ),
    RunStatus.QUEUED: frozenset(
        {RunStatus.RUNNING, RunStatus.CANCELED, RunStatus.DEFERRED, RunStatus.REFUSED}
    ),
}


class HostOutcome(StrEnum):
    """What one run did to one host of its limit (run.json ``hosts``, the host metric)."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"  # never a success, whatever the play says
    SKIPPED = "skipped"
    NOT_STARTED = "not_started"  # a rollout stopped before this host's batch

    @property
    def succeeded(self) -> bool:
        return self in (HostOutcome.OK, HostOutcome.CHANGED, HostOutcome.SKIPPED)


# A run that names no host outcome (a python action, one host): the run's target's.
HOST_OUTCOME_OF_RUN: dict[RunStatus, HostOutcome] = {
    RunStatus.SUCCEEDED: HostOutcome.OK,
    RunStatus.FAILED: HostOutcome.FAILED,
    RunStatus.INTERRUPTED: HostOutcome.FAILED,
    RunStatus.CANCELED: HostOutcome.FAILED,
    RunStatus.SKIPPED: HostOutcome.SKIPPED,
}


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    RECOVERED = "recovered"
    DEGRADED = "degraded"
    FAILED = "failed"       # exhausted: starts the failure cooldown
    REJECTED = "rejected"   # an approval was rejected or expired and the runbook stops there
    INTERRUPTED = "interrupted"  # its process stopped mid-step: counts in the window, but
                                 # is no failed fix (no after-failure pause)
    CANCELED = "canceled"
    RESOLVED = "resolved"


# What each final run status counts as in infra_recovery_attempts_total{outcome}.
METRIC_OUTCOME: dict[RunStatus, str] = {
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.INTERRUPTED: "failed",
    # A run is a success only when every host is: a partial one counts as failed, so
    # the alerts on failed runs fire for a group whose broken host never recovers
    # (its sound hosts are counted in infra_recovery_host_outcomes_total).
    RunStatus.PARTIAL: "failed",
    RunStatus.REFUSED: "refused",
    RunStatus.DEFERRED: "deferred",
    RunStatus.SKIPPED: "skipped",
    RunStatus.CANCELED: "canceled",
    RunStatus.REJECTED: "canceled",
    RunStatus.EXPIRED: "canceled",
}


class TransitionError(ValueError):
    """A state change that the lifecycle does not allow."""


def check_run_transition(old: RunStatus, new: RunStatus) -> None:
    if new not in RUN_TRANSITIONS.get(old, frozenset()):
        raise TransitionError(f"run cannot go from {old.value} to {new.value}")


def check_incident_transition(old: IncidentState, new: IncidentState) -> None:
    if old == new:
        return
    if new not in INCIDENT_TRANSITIONS[old]:
        raise TransitionError(f"incident cannot go from {old.value} to {new.value}")
