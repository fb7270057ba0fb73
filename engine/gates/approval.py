"""Does a person have to say yes first? (``approval: required``, or ``mode: approve``.)"""

from __future__ import annotations

from engine.gates.base import Decision, Gate, GateContext
from engine.runbook import Mode


class ApprovalGate(Gate):
    name = "approval"

    def check(self, ctx: GateContext) -> Decision:
        needed = ctx.strategy.approval or ctx.runbook.mode == Mode.APPROVE
        if not needed:
            return self.allow()
        if ctx.approved_by:
            return self.allow(f"approved by {ctx.approved_by}")
        if ctx.check_mode:
            return self.allow("needs approval; check mode only plans")
        return self.park(f"{ctx.strategy.name} on {ctx.target} needs approval")
