"""What a person switches by hand: a kill switch on (``disable``) or off (``enable``), a
target's lock broken (``unlock``). Each is recorded as an AuditEvent naming who, since
none of them is a run. The CLI (``recovery disable/enable/unlock``), the console and the
HTTP API (``/api/v1/switches``, ``/api/v1/unlock``) call these; the words around them
(lines printed, answers given) are theirs. What they share before acting is here too:
an expiry read (``expiry``: ``never`` only when said), a scope's component and target
named as switches store them, a lock named by an alias and held for a component.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.durations import parse_duration
from engine.records import AuditEvent, Lock, Switch, new_id

if TYPE_CHECKING:
    from engine.context import EngineContext

NEVER = ("never", "forever", "inf")


def expiry(text: str, now: float) -> float | None:
    """When a switch asked ``--for text`` ends: None for ``never``; ValueError for a
    duration that is not one, or not more than 0."""
    if text.strip().lower() in NEVER:
        return None
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be more than 0 (or 'never')")
    return now + seconds


class UnknownComponent(ValueError):
    """A scope names a component no loaded runbook has."""


def scope_component(ctx: EngineContext, name: str | None) -> str | None:
    """A component (or runbook) name as switches store it: the component. When the
    runbooks do not load, the name as given: an operator disabling auto-recovery during
    an incident is never stopped by a typo in a YAML file."""
    from engine.runbooks.loader import RunbookError

    if name is None:
        return None
    try:
        loaded = ctx.runbooks
    except RunbookError:
        return name
    for rb in loaded:
        if name in (rb.component, rb.name):
            return rb.component
    known = ", ".join(sorted({rb.component for rb in loaded})) or "none"
    raise UnknownComponent(f"no component {name!r} (components: {known})")


def scope_target(ctx: EngineContext, name: str | None) -> tuple[str | None, str | None]:
    """A host name, alias or address as the inventory names the host, else as given
    (an application's registered name), with a note saying so."""
    from engine.inventory import UnknownTarget

    if name is None:
        return None, None
    try:
        if ctx.inventory.get(name) is not None:
            return name, None
        return ctx.inventory.resolve_instance(name).name, None
    except UnknownTarget as exc:
        return name, (f"{exc.reason}; using {name!r} as given (an application's "
                      "registered name)")


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


class HeldElsewhere(Exception):
    """The lock is held for another component than the one named: left alone."""


def unlock_named(ctx: EngineContext, name: str, *, component: str | None, by: str,
                 now: float | None = None) -> tuple[str, Lock | None]:
    """``recovery unlock NAME [--component C]``: the lock of the host ``name`` names (an
    alias or address names its host's) broken; the target as the inventory names it and
    the lock (None: there was none). ``HeldElsewhere`` when ``component`` is given and
    the lock is another's."""
    from engine.inventory import UnknownTarget

    target = name
    held = ctx.store.get_lock(target)
    if held is None and ctx.inventory.get(target) is None:
        try:
            target = ctx.inventory.resolve_instance(target).name
            held = ctx.store.get_lock(target)
        except UnknownTarget:
            pass
    if held is not None and component and held.component not in (None, component):
        raise HeldElsewhere(f"the lock on {target} is held for component {held.component}, "
                            f"not {component}: left alone")
    return target, unlock(ctx, target, by=by, now=now)
