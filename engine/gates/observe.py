"""Is this runbook only observing? (``mode: observe`` records the plan, changes nothing.)"""

from __future__ import annotations

from engine.gates.base import Decision, Gate, GateContext
from engine.runbooks.model import Mode


class ObserveModeGate(Gate):
    name = "observe"

    def check(self, ctx: GateContext) -> Decision:
        if ctx.runbook.mode != Mode.OBSERVE or ctx.check_mode:
            return self.allow()
        return self.refuse(
            f"runbook {ctx.runbook.name} is in observe mode: would run "
            f"{ctx.strategy.name}; plan recorded, nothing changed")
