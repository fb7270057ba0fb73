"""The safety gates, asked in order before every step; the first answer that is not
``allow`` wins. Each gate is one file with one question."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.gates.approval import ApprovalGate
from engine.gates.base import Decision, Gate, GateContext, Verdict
from engine.gates.cooldown import CooldownGate
from engine.gates.kill_switch import KillSwitchGate
from engine.gates.lock import Lease, LeaseKeeper, LockGate
from engine.gates.observe import ObserveModeGate
from engine.gates.silence import SilenceGate

if TYPE_CHECKING:
    from engine.config import Config

__all__ = ["Decision", "Gate", "GateChain", "GateContext", "Lease", "LeaseKeeper",
           "SilenceGate", "Verdict", "default_gates"]


def default_gates(config: Config | None = None) -> list[Gate]:
    """Refusals first, then deferrals, then approval; the lock last, since it takes the
    lease. The silence gate joins when Alertmanagers are configured."""
    gates: list[Gate] = [KillSwitchGate(), ObserveModeGate()]
    if config is not None and config.alertmanagers:
        gates.append(SilenceGate(config.alertmanagers, timeout=config.alertmanager_timeout,
                                 when_unreachable=config.silence_unreachable))
    return [*gates, CooldownGate(), ApprovalGate(), LockGate()]


class GateChain:
    def __init__(self, gates: Sequence[Gate]) -> None:
        self.gates = list(gates)

    def decide(self, ctx: GateContext) -> tuple[Decision, list[Decision]]:
        """The deciding answer, and every answer asked on the way (for the record)."""
        asked: list[Decision] = []
        for gate in self.gates:
            decision = gate.check(ctx)
            asked.append(decision)
            if decision.verdict != Verdict.ALLOW and not (ctx.dry or ctx.check_mode):
                return decision, asked
        final = next((d for d in asked if d.verdict != Verdict.ALLOW), asked[-1])
        return final, asked
