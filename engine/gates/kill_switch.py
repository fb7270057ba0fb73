"""Is auto-recovery switched off here? (``recovery disable``, a key with an expiry.)"""

from __future__ import annotations

from engine.gates.base import Decision, Gate, GateContext, when


class KillSwitchGate(Gate):
    name = "kill_switch"

    def check(self, ctx: GateContext) -> Decision:
        switches = [s for s in ctx.store.active_switches(ctx.now)
                    if s.covers(ctx.component, ctx.target)]
        if not switches:
            return self.allow()
        s = switches[0]
        until = f"until {when(s.until)}" if s.until else "until enabled again"
        who = f" by {s.created_by}" if s.created_by else ""
        why = f": {s.reason}" if s.reason else ""
        described = f"auto-recovery disabled for {s.scope()} {until}{who}{why}"
        if ctx.check_mode:
            return self.allow(f"{described} (check mode changes nothing)")
        if ctx.forced and ctx.trigger == "manual":
            return self.allow(f"{described}; passed by --force", forced=True)
        return self.refuse(described)
