"""Does a person have to say yes first? (``approval: required``, ``mode: approve``, a
condition of ``approval: {when: ...}`` that the step's plan meets or cannot rule out, or
a step that is not ``idempotent`` about to run again after it was interrupted.)"""

from __future__ import annotations

from engine.gates.base import Decision, Gate, GateContext
from engine.runbooks.approval_rules import approval_need
from engine.runbooks.model import Mode


class ApprovalGate(Gate):
    name = "approval"

    def check(self, ctx: GateContext) -> Decision:
        if ctx.after_interruption and not ctx.strategy.idempotent and not ctx.check_mode:
            # Whatever approved its first run: running it twice is another decision.
            return self.park(f"{ctx.strategy.name} on {ctx.target} is not idempotent and "
                             f"may have done its work: {ctx.after_interruption}; approve "
                             "to run it again")
        needed = ctx.strategy.approval or ctx.runbook.mode == Mode.APPROVE
        because = ""     # why a conditional approval is asked: the fact and the rule
        if not needed and ctx.strategy.approval_when and ctx.check_mode and not ctx.facts:
            # --check runs the plan itself; the run's reason says what it means for approval
            return self.allow("approval depends on the facts of the step's plan: judged "
                              "once check mode has planned it")
        if not needed and ctx.strategy.approval_when:
            facts, error = ctx.facts() if ctx.facts else (None, None)
            need = approval_need(ctx.strategy.approval_when, facts, error)
            if not need.asked:
                return self.allow(f"no approval needed: {need.reason}")
            needed, because = True, f": {need.reason}"
        if not needed:
            return self.allow()
        if ctx.approved_by:
            return self.allow(f"approved by {ctx.approved_by}")
        if ctx.check_mode:
            return self.allow(f"needs approval{because}; check mode only plans")
        return self.park(f"{ctx.strategy.name} on {ctx.target} needs approval{because}")
