"""The safety gates, asked in order before every step; the first answer that is not
``allow`` wins. Each gate is one file with one question."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.gates.approval import ApprovalGate
from engine.gates.base import Decision, Gate, GateContext, Verdict
from engine.gates.cooldown import CooldownGate
from engine.gates.fleet import FleetGate
from engine.gates.kill_switch import KillSwitchGate
from engine.gates.lock import Lease, LeaseKeeper, LockGate, release_all
from engine.gates.observe import ObserveModeGate
from engine.gates.silence import SilenceGate

if TYPE_CHECKING:
    from engine.config import Config

__all__ = ["Decision", "FleetGate", "Gate", "GateChain", "GateContext", "Lease",
           "LeaseKeeper", "SilenceGate", "Verdict", "default_gates"]
log = logging.getLogger(__name__)


def default_gates(config: Config | None = None) -> list[Gate]:
    """Refusals first, then deferrals, then approval; the lock and the fleet limits last,
    since they take leases (what they took is released when a later gate holds the step
    back). The fleet gate comes after the lock: it counts the hosts whose lock is held,
    its own target's lock already taken, so two steps racing for the last room in a group
    cannot both pass. The silence gate joins when Alertmanagers are configured."""
    gates: list[Gate] = [KillSwitchGate(), ObserveModeGate()]
    if config is not None and config.alertmanagers:
        gates.append(SilenceGate(config.alertmanagers, timeout=config.alertmanager_timeout,
                                 when_unreachable=config.silence_unreachable))
    fleet = FleetGate(config.fleet) if config is not None else FleetGate()
    return [*gates, CooldownGate(), ApprovalGate(), LockGate(), fleet]


class GateChain:
    def __init__(self, gates: Sequence[Gate]) -> None:
        self.gates = list(gates)

    def decide(self, ctx: GateContext) -> tuple[Decision, list[Decision]]:
        """The deciding answer, and every answer asked on the way (for the record)."""
        asked: list[Decision] = []
        for gate in self.gates:
            try:
                decision = gate.check(ctx)
            except Exception:
                _give_back(ctx, asked)   # a gate that fails holds the step back too
                raise
            asked.append(decision)
            if decision.verdict != Verdict.ALLOW and not (ctx.dry or ctx.check_mode):
                _give_back(ctx, asked)
                return decision, asked
        final = next((d for d in asked if d.verdict != Verdict.ALLOW), asked[-1])
        return final, asked


def _give_back(ctx: GateContext, asked: list[Decision]) -> None:
    """A step held back holds nothing: the leases earlier gates took for it (the target's
    lock, a fleet slot) are released at once, not left to lapse."""
    taken = [lock for d in asked for lock in d.locks]
    if not taken:
        return
    try:
        release_all(ctx.store, taken)
    except Exception as exc:  # noqa: BLE001 - the store down: the leases lapse by themselves
        log.warning("leases of a step held back not released (they lapse): %s", exc)
