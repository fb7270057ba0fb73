"""What a person switches by hand: a kill switch on (``disable``) or off (``enable``), a
target's lock broken (``unlock``). Each is recorded as an AuditEvent naming who, since
none of them is a run. The CLI (``recovery disable/enable/unlock``) and the console
call these; the words around them (names resolved, lines printed) are theirs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.records import AuditEvent, Lock, Switch, new_id

if TYPE_CHECKING:
    from engine.context import EngineContext


@dataclass
class Disabled:
    """A kill switch put on; ``said``: what stopping the scope's work did (one line
    each), empty unless asked to."""

    switch: Switch
    said: list[str] = field(default_factory=list)


def disable(ctx: EngineContext, component: str | None, target: str | None,
            until: float | None, *, by: str, reason: str = "", cancel_running: bool = False,
            now: float | None = None) -> Disabled:
    """Auto-recovery off for the scope until ``until`` (None: until enabled); with
    ``cancel_running``, the runs in flight there are canceled and the approvals waiting
    there rejected (engine.orchestration.approvals.stop_in_scope)."""
    t = time.time() if now is None else now
    switch = Switch(id=new_id("sw"), component=component, target=target, until=until,
                    reason=reason, created_by=by, created_at=t)
    ctx.store.add_switch(switch)   # first: nothing new starts in the scope from here on
    detail: dict[str, Any] = switch.to_dict()
    done = Disabled(switch)
    if cancel_running:
        from engine.orchestration.approvals import stop_in_scope

        stopped = stop_in_scope(ctx, component, target, by=by, reason=reason)
        detail.update(canceled_runs=stopped.canceled_runs,
                      rejected_approvals=stopped.rejected_approvals,
                      canceled_incidents=stopped.canceled_incidents)
        done.said = stopped.said or [f"nothing running or waiting for approval in "
                                     f"{switch.scope()}"]
    ctx.store.add_event(AuditEvent(at=t, actor=by, action="disable", detail=detail))
    return done


def enable(ctx: EngineContext, component: str | None, target: str | None, *, by: str,
           now: float | None = None) -> list[Switch]:
    """Remove the kill switches of exactly this scope; the ones removed."""
    t = time.time() if now is None else now
    removed = ctx.store.remove_switches(component, target)
    ctx.store.add_event(AuditEvent(at=t, actor=by, action="enable", detail={
        "component": component, "target": target, "removed": [s.to_dict() for s in removed]}))
    return removed


def unlock(ctx: EngineContext, target: str, *, by: str, now: float | None = None
           ) -> Lock | None:
    """Break the lock on ``target`` (recorded); the lock broken, None when none was held."""
    broken = ctx.store.break_lock(target)
    if broken is not None:
        ctx.store.add_event(AuditEvent(at=time.time() if now is None else now, actor=by,
                                       action="unlock",
                                       detail={"target": target, "lock": broken.to_dict()}))
    return broken
