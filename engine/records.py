"""The rows the store keeps: incidents, runs, attempts, approvals, locks, switches.

Plain dataclasses, so gates and the orchestrator can be tested on values alone.
A run's full account lives in its artifacts directory; ``RunRecord`` is the index.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.lifecycle import AttemptOutcome, IncidentState, RunStatus


class AsDict:
    """A record whose dict form (the API's and the CLI's JSON) is its fields as they are."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_id(prefix: str) -> str:
    """Sortable, unique ids: prefix, milliseconds, randomness (``run-0193f...-a1b2c3``)."""
    return f"{prefix}-{int(time.time() * 1000):012x}-{secrets.token_hex(4)}"


# ``requested_by`` of the incidents a group step's fan-out opens for the other hosts
# (engine.orchestration.fanout), followed by the asking incident's id.
FANNED_FROM = "fan-out of incident "


def fanned_from(requested_by: str) -> str | None:
    """The id of the incident a fanned-out incident came from; None for any other."""
    if not requested_by.startswith(FANNED_FROM):
        return None
    return requested_by[len(FANNED_FROM):].split(" ", 1)[0] or None


@dataclass
class Incident:
    id: str
    runbook: str
    component: str
    target: str
    state: IncidentState = IncidentState.OPEN
    failure_type: str | None = None
    trigger: str = "manual"              # alert | manual | probe
    requested_by: str = ""
    fingerprint: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    opened_at: float = 0.0
    updated_at: float = 0.0
    closed_at: float | None = None
    reason: str = ""                     # the last decision, in words
    next_try_at: float | None = None     # deferred: when a worker may go on
    step: int = 0                        # index of the next strategy in the runbook
    only_strategy: str | None = None     # a manual `recover --strategy S`
    forced: bool = False                 # the attempt in hand was asked with --force
                                         # (dropped when it ends, pauses or is taken up)
    approved_step: int | None = None     # approval already granted for this step
    approved_by: str | None = None
    attempt_id: str | None = None        # the attempt under way, if any
    attempts: int = 0
    verify_until: float | None = None    # recovered: a still-firing alert after this reopens
    starts_at: str | None = None         # alert: startsAt of the episode that opened it
    held_by: str | None = None           # the worker process whose pool is to advance it
    interrupted_run: str | None = None   # its step's run that was interrupted: what it did
                                         # is not known, so the step's verify is asked
                                         # before that step runs again
    # What an application said with its trigger (engine.embedded): JSON data, recorded
    # only (with the incident and in its runs' run.json), never rendered nor passed on.
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d


@dataclass
class RunRecord:
    id: str
    component: str
    runbook: str
    strategy: str
    target: str
    status: RunStatus
    trigger: str = "manual"
    incident_id: str | None = None
    attempt_id: str | None = None
    kind: str = "action"                 # action | playbook
    started_at: float = 0.0
    finished_at: float | None = None
    check_mode: bool = False
    fingerprint: str | None = None
    requested_by: str = ""
    approved_by: str | None = None
    forced: bool = False
    reason: str = ""
    runbook_sha256: str = ""
    playbook_sha256: str | None = None
    gate: str | None = None              # refused, deferred or parked: the gate that said so
    # A refusal stands for every refusal of its (reason, runbook, target) in its minute
    # (engine.orchestration.refusals): how many, and the first fingerprints among them; its other
    # fields (reason, requested_by, incident_id, times, run.json) are the first's.
    count: int = 1
    fingerprints: list[str] = field(default_factory=list)
    # What it did to each host it acted on, [{host, outcome, reason}] (outcome a
    # lifecycle.HostOutcome); empty for a run that acted on none (refused, deferred...).
    hosts: list[dict[str, str]] = field(default_factory=list)
    # The replica (engine.replica) whose process ran it and holds its artifacts directory.
    replica: str | None = None

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["duration"] = self.duration
        if not self.fingerprints and self.fingerprint:
            d["fingerprints"] = [self.fingerprint]   # the alerts it stands for, always
        return d


@dataclass
class Attempt:
    id: str
    incident_id: str
    runbook: str
    target: str
    started_at: float
    finished_at: float | None = None
    outcome: AttemptOutcome = AttemptOutcome.RUNNING


@dataclass
class Approval(AsDict):
    run_id: str
    incident_id: str | None
    runbook: str
    component: str
    strategy: str
    target: str
    status: str = "pending"              # pending | approved | rejected | expired | canceled
    requested_by: str = ""
    requested_at: float = 0.0
    expires_at: float = 0.0
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str = ""
    plan: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lock(AsDict):
    target: str
    holder: str
    token: int                           # fencing: grows with every acquisition
    acquired_at: float
    expires_at: float
    run_id: str | None = None
    component: str | None = None


@dataclass
class Switch(AsDict):
    """A kill switch: auto-recovery off for everything, a component, a target, or both."""

    id: str
    component: str | None
    target: str | None
    until: float | None                  # None: until enabled again by hand
    reason: str = ""
    created_by: str = ""
    created_at: float = 0.0

    @classmethod
    def scope_of(cls, component: str | None, target: str | None) -> Switch:
        """A scope (a component, a target, both, or everything when both are None) as a
        switch has one, without being one: to ask what it ``covers`` and name it."""
        return cls("-", component, target, None)

    def covers(self, component: str, target: str | None) -> bool:
        return (self.component in (None, component)) and (
            self.target is None or self.target == target
        )

    def scope(self) -> str:
        parts = [f"component={self.component}" if self.component else "",
                 f"target={self.target}" if self.target else ""]
        return " ".join(p for p in parts if p) or "everything"


@dataclass
class DegradedReason(AsDict):
    mode: str
    key: str                             # what keeps it on: incident:<id>, manual, ...
    target: str | None = None
    incident_id: str | None = None
    manual: bool = False
    reason: str = ""
    created_by: str = ""
    since: float = 0.0


@dataclass
class Delivery(AsDict):
    """A journaled alert delivery and what the intake made of it: the part of "why
    didn't it act?" that no run records (attached, a late copy, nothing to close...).

    The store keeps one per (fingerprint, startsAt, status), as the webhook deduplicates:
    Alertmanager's repeats of a firing alert add to ``count`` and replace the latest
    fields, the first delivery's times and outcome stay. Only the newest firing delivery
    of a fingerprint keeps its ``payload`` (what ``enable --replay`` re-queues)."""

    fingerprint: str
    status: str                          # firing | resolved
    starts_at: str | None
    received_at: float                   # journaled: when the webhook answered 200 (latest)
    processed_at: float                  # (latest)
    outcome: str                         # what the intake did, in words (latest)
    incident_id: str | None = None       # (the latest it belonged to)
    run_id: str | None = None            # the refusal recorded at the door, if any (latest)
    replayed_by: str | None = None       # re-queued by an operator (`enable --replay`)
    payload: dict[str, Any] = field(default_factory=dict)   # the alert as journaled
    id: int | None = None
    count: int = 1                       # deliveries of this key processed
    first_received_at: float | None = None
    first_processed_at: float | None = None
    first_outcome: str | None = None

    @property
    def dedup_key(self) -> str:
        """(fingerprint, startsAt, status), spelled as ``Alert.dedup_key``."""
        return f"{self.fingerprint}|{self.starts_at or '-'}|{self.status}"


@dataclass
class AuditEvent:
    """An operator action that is not a run: unlock, disable, enable, degraded by hand."""

    at: float
    actor: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)
