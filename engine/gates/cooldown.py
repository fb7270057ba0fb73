"""Has this (runbook, target) had enough attempts for now?

At most ``max_attempts`` attempts per ``window``, and ``after_failure`` seconds of rest
after a failed one. Only the first step of an attempt asks (later steps belong to the
same attempt); check-mode runs never count. A manual ``--force`` passes, on the record.
"""

from __future__ import annotations

from engine.gates.base import Decision, Gate, GateContext, when


class CooldownGate(Gate):
    name = "cooldown"

    def check(self, ctx: GateContext) -> Decision:
        if not ctx.starts_attempt or ctx.check_mode:
            return self.allow()
        answer = self._cooling(ctx)
        if answer is None:
            return self.allow()
        reason, until = answer
        if ctx.forced and ctx.trigger == "manual":
            return self.allow(f"{reason}; passed by --force")
        return self.defer(reason, until)

    @staticmethod
    def _cooling(ctx: GateContext) -> tuple[str, float] | None:
        cd = ctx.runbook.cooldown
        recent = ctx.store.attempts_since(ctx.runbook.name, ctx.target, ctx.now - cd.window)
        if len(recent) >= cd.max_attempts:
            until = recent[0].started_at + cd.window
            return (f"cooldown: {len(recent)} attempts on {ctx.target} within "
                    f"{int(cd.window)}s (max {cd.max_attempts}); next at {when(until)}", until)
        failed = ctx.store.last_failed_attempt(ctx.runbook.name, ctx.target)
        if failed and failed.finished_at and failed.finished_at + cd.after_failure > ctx.now:
            until = failed.finished_at + cd.after_failure
            return (f"cooldown: last attempt on {ctx.target} failed at "
                    f"{when(failed.finished_at)}; next at {when(until)}", until)
        return None
