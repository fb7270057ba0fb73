"""The typed runbook: what a loaded ``runbooks/*.yml`` file means to the engine.

Loading and validation live in ``engine.runbooks.loader``; this module holds only
the data, so matching, gating and planning stay pure functions of it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from engine.fleet_limits import FleetLimits
from engine.runbooks.approval_rules import FactCondition


class Mode(enum.StrEnum):
    AUTO = "auto"          # run every step that the gates allow
    APPROVE = "approve"    # every step parks for approval
    OBSERVE = "observe"    # plan only: record what would run, change nothing


class Concurrency(enum.StrEnum):
    """How many remediations of one runbook may act at once."""

    PER_TARGET = "per_target"          # one per target (its lock), any number of targets
    PER_COMPONENT = "per_component"    # one per component, serialized (a component lock too)


class Priority(int, enum.Enum):
    """How much a runbook's failure matters, as the original system ranked it: the highest
    wins when several runbooks match an alert, and it picks the ``severity`` label of the
    runbook's outgoing alerts (``alertmanager.severity_by_priority``)."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3
    # Deprecated spellings, accepted with a warning (DEPRECATED_PRIORITIES): same values.
    INFO = 0
    WARNING = 1


# An older spelling -> the priority it means (the loader warns about each use).
DEPRECATED_PRIORITIES = {"warning": "medium", "info": "low"}


@dataclass(frozen=True)
class Verify:
    """A polling check: healthy for ``stable_for`` seconds before ``deadline``."""

    action: str
    params: dict[str, Any] = field(default_factory=dict)
    initial_delay: float = 0.0
    interval: float = 1.0
    deadline: float = 60.0
    stable_for: float = 0.0


@dataclass(frozen=True)
class Probe:
    """A check the workers run by themselves every ``interval`` on the hosts that
    ``targets`` names (an inventory pattern), so recovery works without Alertmanager."""

    targets: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    interval: float = 30.0
    failure_type: str | None = None
    line: int = 0            # of ``targets`` in its file, for ``recovery validate``


@dataclass(frozen=True)
class Cooldown:
    max_attempts: int = 3
    window: float = 3600.0
    after_failure: float = 300.0


@dataclass(frozen=True)
class DegradedModeSpec:
    name: str
    when: str = "exhausted"   # exhausted | failing


@dataclass(frozen=True)
class Strategy:
    """One step of the escalation: a python action or a playbook, never both."""

    name: str
    action: str | None = None
    playbook: str | None = None
    params: dict[str, Any] = field(default_factory=dict)      # `with:` for actions
    extravars: dict[str, Any] = field(default_factory=dict)   # for playbooks
    when: tuple[str, ...] = ()          # failure types; empty means every type
    approval: bool = False              # `approval: required`
    # `approval: {when: [...]}`: asked only when one of these facts of its plan holds
    # (engine.runbooks.approval_rules); `allow_self: false`: its requester cannot approve
    approval_when: tuple[FactCondition, ...] = ()
    allow_self: bool | None = None      # None: recovery.yml's `approval.allow_self`
    on_reject: str = "stop"             # stop | next
    verify: Verify | None = None        # overrides the runbook's verify
    timeout: float = 300.0
    degrades: bool = False              # graceful_degradation: ends the incident `degraded`
    idempotent: bool = True             # false: after an interruption, re-run only approved
    # An inventory group or pattern (``redis``, ``redis:&dc1``): every host it resolves to
    # joins or opens its own incident of the runbook; None: the incident's own target.
    target: str | None = None
    # The batches of a group run, as Ansible's `serial`: host counts (ints) and shares
    # ("25%"), the last repeated until every host is done; None: every host in one batch.
    serial: tuple[int | str, ...] | None = None
    # Failed hosts of a batch, in percent of it, above which the rollout stops (0: any).
    max_fail_percentage: float = 0.0
    line: int = 0                       # where it stands in its file, for messages

    @property
    def kind(self) -> str:
        return "playbook" if self.playbook else "action"

    def applies_to(self, failure_type: str | None) -> bool:
        return not self.when or failure_type is None or failure_type in self.when


@dataclass(frozen=True)
class Matcher:
    """One Alertmanager-style matcher: ``name op "value"`` with op in = != =~ !~."""

    name: str
    op: str
    value: str


@dataclass(frozen=True)
class Runbook:
    name: str
    component: str
    path: str
    sha256: str
    priority: Priority = Priority.MEDIUM
    mode: Mode = Mode.AUTO
    match: tuple[tuple[Matcher, ...], ...] = ()   # any group matches if all its matchers do
    target: str = "{{ labels.instance }}"
    # alertname -> failure type, for well-known alerts that carry no `failure_type` label
    failure_types: dict[str, str] = field(default_factory=dict)
    match_component_label: bool = True   # also match any alert with component="<name>"
    strategies: tuple[Strategy, ...] = ()
    verify: Verify | None = None
    cooldown: Cooldown = field(default_factory=Cooldown)
    degraded_mode: DegradedModeSpec | None = None
    approval_timeout: float = 3600.0
    description: str = ""
    probe: Probe | None = None
    # Its own fleet limits (engine.fleet_limits: parsed values by key), over recovery.yml's.
    fleet: dict[str, Any] = field(default_factory=dict)
    # What the loader accepted but warns about (``file:line: reason``): `recovery validate`
    # prints them; they never make the runbook invalid.
    warnings: tuple[str, ...] = ()
    concurrency: Concurrency = Concurrency.PER_TARGET

    def strategies_for(self, failure_type: str | None) -> list[tuple[int, Strategy]]:
        """The escalation for one failure type, with each step's index in the file."""
        return [(i, s) for i, s in enumerate(self.strategies) if s.applies_to(failure_type)]

    def strategy(self, name: str) -> Strategy | None:
        return next((s for s in self.strategies if s.name == name), None)

    def failure_type_of(self, labels: dict[str, str]) -> str | None:
        """The failure type an alert names: its label, else its alertname's mapping."""
        return labels.get("failure_type") or self.failure_types.get(labels.get("alertname", ""))

    def verify_for(self, strategy: Strategy) -> Verify | None:
        return strategy.verify or self.verify


def fleet_limits(config_limits: FleetLimits, runbook: Runbook) -> FleetLimits:
    """The fleet limits a runbook's steps act under: recovery.yml's, with the runbook's
    own ``fleet:`` values in their place."""
    return config_limits.overridden(runbook.fleet)
