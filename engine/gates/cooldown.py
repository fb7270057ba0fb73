"""Has this (runbook, target) had enough attempts for now?

At most ``max_attempts`` attempts per ``window``, and ``after_failure`` seconds of rest
after a failed one. Only the first step of an attempt asks (later steps belong to the
same attempt); check-mode runs never count. A manual ``--force`` passes, on the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.gates.base import Decision, Gate, GateContext, when

if TYPE_CHECKING:
    from engine.runbooks.model import Runbook
    from engine.store.gate_state import Cooldowns


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
            return self.allow(f"{reason}; passed by --force", forced=True)
        return self.defer(reason, until)

    @staticmethod
    def _cooling(ctx: GateContext) -> tuple[str, float] | None:
        return cooldown_state(ctx.store, ctx.runbook, ctx.target, ctx.now)


def cooldown_state(store: Cooldowns, runbook: Runbook, target: str,
                   now: float) -> tuple[str, float] | None:
    """Why, and until when, the next attempt of ``runbook`` on ``target`` would be deferred
    by the cooldown at ``now``; None if it may start. The gate and the metrics both ask this,
    so ``infra_recovery_cooldown_active`` says exactly what the gate would do."""
    cd = runbook.cooldown
    recent, failed = store.cooldown_history(runbook.name, target, now - cd.window)
    if len(recent) >= cd.max_attempts:
        until = recent[0].started_at + cd.window
        return (f"cooldown: {len(recent)} attempts on {target} within "
                f"{int(cd.window)}s (max {cd.max_attempts}); next at {when(until)}", until)
    if failed and failed.finished_at and failed.finished_at + cd.after_failure > now:
        until = failed.finished_at + cd.after_failure
        return (f"cooldown: last attempt on {target} failed at "
                f"{when(failed.finished_at)}; next at {when(until)}", until)
    return None
