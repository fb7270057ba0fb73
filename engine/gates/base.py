"""A gate answers one question — may this step start now? — with one of four answers.

Allow, defer (until a time, with the reason), park for approval, or refuse (with the
reason). Gates see a ``GateContext`` (the runbook, the step, the target, the incident,
the store) and nothing else; adding a gate touches no other gate.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.inventory import Inventory
    from engine.records import Incident, Lock
    from engine.runbooks.model import Runbook, Strategy
    from engine.store.base import Store


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DEFER = "defer"
    PARK = "park"        # park for approval
    REFUSE = "refuse"


@dataclass
class Decision:
    gate: str
    verdict: Verdict
    reason: str = ""
    until: float | None = None          # DEFER: when to ask again
    # An ALLOW carries the leases it took (the target's lock, a fleet slot): held by the
    # step while it runs, released by the chain if a later gate holds the step back.
    locks: tuple[Lock, ...] = ()
    forced: bool = False                # allowed only because of a manual --force

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"gate": self.gate, "verdict": self.verdict.value,
                             "reason": self.reason}
        if self.until is not None:
            d["until"] = self.until
        if self.forced:
            d["forced"] = True
        return d


@dataclass
class GateContext:
    """What a gate sees of the step that asks, and nothing else."""

    runbook: Runbook
    strategy: Strategy                  # the step that asks
    target: str                         # an inventory host
    store: Store                        # what every gate reads (the lock gate also writes)
    trigger: str = "manual"             # alert | manual | probe
    incident: Incident | None = None    # None for a plan or a check-mode run
    forced: bool = False                # manual --force: passes kill switch and cooldown
    check_mode: bool = False            # --check: changes nothing, counts nothing
    approved_by: str | None = None      # approval already granted for this step
    starts_attempt: bool = True         # the first step of an attempt (cooldown applies)
    dry: bool = False                   # plan only: report answers, take no lock
    holder: str = ""                    # who would hold the target's lock
    run_id: str | None = None
    lock_ttl: float = 30.0
    now: float = field(default_factory=time.time)
    # This step's last run was interrupted and the target still fails its verify (why,
    # in words): a step that is not idempotent is run again only once approved.
    after_interruption: str | None = None
    # The inventory the target belongs to (its groups, for the fleet limits); None: the
    # target is judged alone (an embedding application's resource, a test).
    inventory: Inventory | None = None
    # For an approval with conditions: plans the step (once, when first called) and
    # returns what its plan reported, or None and why it could not tell
    # (engine.orchestration.step_facts). None: nobody can plan it here.
    facts: Callable[[], tuple[dict[str, Any] | None, str | None]] | None = None

    @property
    def component(self) -> str:
        return self.runbook.component


class Gate:
    """One question. Subclasses override ``check``; the name shows in every record."""

    name = "gate"

    def check(self, ctx: GateContext) -> Decision:
        raise NotImplementedError

    def allow(self, reason: str = "", *, forced: bool = False) -> Decision:
        return Decision(self.name, Verdict.ALLOW, reason, forced=forced)

    def defer(self, reason: str, until: float) -> Decision:
        return Decision(self.name, Verdict.DEFER, reason, until=until)

    def park(self, reason: str) -> Decision:
        return Decision(self.name, Verdict.PARK, reason)

    def refuse(self, reason: str) -> Decision:
        return Decision(self.name, Verdict.REFUSE, reason)


def when(ts: float) -> str:
    """A time an operator reads: UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))
