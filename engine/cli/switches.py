"""Operator switches: ``disable``/``enable`` (kill switch), ``unlock``, ``degraded``.

Each records who did it (an AuditEvent in the store), since none of them is a run.
They work even when a runbook does not load: an operator disabling auto-recovery
during an incident must never be stopped by a typo in a YAML file.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli.common import CliError, command, now, operator
from engine.cli.exits import OK
from engine.cli.output import (
    ago,
    alert_text,
    emit_json,
    err,
    indented_table,
    out,
    when,
    when_ago,
)
from engine.cli.report_parts import capability_words, refused_table
from engine.context import EngineContext
from engine.notify_due import post_soon
from engine.records import AuditEvent, DegradedReason, Switch

DISABLE_HELP = """\
Stop auto-recovery (alerts and probes) for everything, a component, a target, or a
component on a target, for a while (--for, default 1h; `--for never` until enabled
again). Manual `recovery recover --force` still runs. Recorded with who and why.

--cancel-running is the emergency stop: in the same step, every approval waiting in
that scope is rejected and every run in flight there is canceled (a running step is
asked to stop: a playbook at its next task, a python action when it returns; its
incident is canceled; an approved step still queued is canceled), recorded with who.
"""
ENABLE_HELP = """\
Remove the kill switches of exactly this scope (what `disable` with the same
--component/--target added). Says what was removed and what still applies, and lists
the alerts a kill switch refused in this scope that still fire (the intake journal: the
newest delivery of the alert was firing, no resolve came after it), which nothing
would run until Alertmanager repeats them. --replay re-queues those: each goes the
normal way (every gate asked again, trigger alert, credited to the alert, replayed by
you), once per refusal.
"""
UNLOCK_HELP = """\
Break the lock on a target (one run at a time per target), e.g. one left by a killed
process before its lease runs out. The run holding it, if still alive, notices at its
next heartbeat and says so in its record. Recorded with who.

exit codes: 0 broken, or no lock to break (says "no lock on TARGET"); 4 the lock is
held for another component than --component (left alone).
"""
DEGRADED_HELP = """\
List degraded modes (configured ones and any switched on): on/off, the reasons that
keep each on (incident, target, manual, who, since) and its capability matrix.
--on MODE switches one on by hand (it stays on until switched off by hand);
--off MODE clears every reason of that mode, automatic and manual alike.

exit codes: 0 done, 2 unknown mode.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "disable", parents, help="kill switch: stop auto-recovery",
                description=DISABLE_HELP)
    p.add_argument("--component", "-c", metavar="C")
    p.add_argument("--target", "-t", metavar="T")
    p.add_argument("--for", dest="duration", default="1h", metavar="DURATION",
                   help="how long (default 1h; 'never' = until `recovery enable`)")
    p.add_argument("--reason", "-r", default="", metavar="R")
    p.add_argument("--cancel-running", action="store_true",
                   help="also cancel the runs in flight and reject the approvals waiting "
                   "in this scope")
    p.set_defaults(func=cmd_disable)

    p = command(sub, "enable", parents, help="remove kill switches of a scope",
                description=ENABLE_HELP)
    p.add_argument("--component", "-c", metavar="C")
    p.add_argument("--target", "-t", metavar="T")
    p.add_argument("--replay", action="store_true",
                   help="re-queue the refused alerts of this scope that still fire")
    p.set_defaults(func=cmd_enable)

    p = command(sub, "unlock", parents, help="break a target's lock (recorded)",
                description=UNLOCK_HELP)
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--component", "-c", metavar="C",
                   help="only if the lock is held for this component")
    p.set_defaults(func=cmd_unlock)

    p = command(sub, "degraded", parents, help="degraded modes: list or switch",
                description=DEGRADED_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--on", metavar="MODE", help="switch a mode on by hand")
    which.add_argument("--off", metavar="MODE", help="switch a mode off (every reason)")
    p.add_argument("--reason", "-r", default="", metavar="R")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_degraded)


# -- scope helpers ----------------------------------------------------------------------------

def _loaded_runbooks(ctx: EngineContext) -> list[Any] | None:
    """The runbooks, or None (with a warning) when they do not load."""
    from engine.runbooks.loader import RunbookError

    try:
        return ctx.runbooks
    except RunbookError as exc:
        err(f"warning: runbooks do not load ({exc}); not checking names against them")
        return None


def _component(ctx: EngineContext, name: str | None) -> str | None:
    """A component (or runbook) name as switches store it: the component."""
    from engine.orchestration.switches import UnknownComponent, scope_component

    if name is not None:
        _loaded_runbooks(ctx)   # warns when they do not load
    try:
        return scope_component(ctx, name)
    except UnknownComponent as exc:
        raise CliError(str(exc)) from None


def _target(ctx: EngineContext, name: str | None) -> str | None:
    """A host name, alias or address as the inventory names the host; else as given."""
    from engine.orchestration.switches import scope_target

    target, note = scope_target(ctx, name)
    if note:
        err(f"note: {note}")
    return target


def _scope(component: str | None, target: str | None) -> str:
    return Switch.scope_of(component, target).scope()


# -- disable / enable -------------------------------------------------------------------------

def cmd_disable(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.orchestration.switches import disable, expiry

    who = operator(args)
    t = now()
    try:
        until = expiry(args.duration, t)
    except ValueError as exc:
        raise CliError(f"--for: {exc}") from None
    done = disable(ctx, _component(ctx, args.component), _target(ctx, args.target), until,
                   by=who, reason=args.reason, cancel_running=args.cancel_running, now=t)
    switch = done.switch
    length = f"until {when_ago(until, t)}" if until else "until `recovery enable`"
    why = f": {switch.reason}" if switch.reason else ""
    out(f"auto-recovery disabled for {switch.scope()} {length}, by {who}{why} "
        f"(switch {switch.id})")
    for line in done.said:
        out(line)
    out("manual runs still work with `recovery recover --force`")
    return OK


def cmd_enable(ctx: EngineContext, args: argparse.Namespace) -> int:
    who = operator(args)
    t = now()
    from engine.orchestration.switches import enable

    component, target = _component(ctx, args.component), _target(ctx, args.target)
    removed = enable(ctx, component, target, by=who, now=t)
    scope = _scope(component, target)
    if removed:
        for s in removed:
            state = "expired" if s.until is not None and s.until <= t else (
                f"until {when(s.until)}" if s.until else "until enabled")
            out(f"removed switch {s.id} ({s.scope()}, {state}, by {s.created_by or '?'}"
                + (f": {s.reason}" if s.reason else "") + ")")
    else:
        out(f"no kill switch for exactly {scope}")
    still = [s for s in ctx.store.active_switches(t)]
    if still:
        out("still active: " + "; ".join(
            f"{s.scope()} ({s.id}, until {when(s.until) if s.until else 'enabled'})"
            for s in still))
    since = min([t - ctx.config.status_window, *(s.created_at for s in removed)])
    _refused_while_off(ctx, args, who, t, since, component, target, still)
    return OK


def _refused_while_off(ctx: EngineContext, args: argparse.Namespace, who: str, t: float,
                       since: float, component: str | None, target: str | None,
                       still: list[Switch]) -> None:
    """List the alerts of this scope a kill switch refused that still fire; with
    --replay, re-queue them (recorded as the operator's ``replay``)."""
    from engine.alerts.refused import refused_alerts, replay
    from engine.cli.recover import approve_hint

    scope = _scope(component, target)
    found = refused_alerts(ctx.store, since=since, component=component, target=target)
    if not found:
        if args.replay:
            out(f"nothing to replay: no alert refused by a kill switch for {scope} still "
                "fires")
        return
    out(f"\nrefused by a kill switch for {scope}, still firing:")
    out(refused_table([a.to_dict() for a in found], t))
    for a in found:
        covering = [s for s in still if s.covers(a.run.component, a.run.target)]
        if covering:
            out(f"note: {a.run.target} is still covered by {covering[0].scope()} "
                f"({covering[0].id}): a replay of {alert_text(a.fingerprint)} is refused "
                "again")
    if not args.replay:
        flags = "".join(f" --{k} {v}" for k, v in (("component", component),
                                                    ("target", target)) if v)
        out(f"to run them now: recovery{approve_hint(args)} enable{flags} --replay")
        return
    queued = replay(ctx.store, found, by=who)
    if queued:
        ctx.store.add_event(AuditEvent(at=t, actor=who, action="replay", detail={
            "component": component, "target": target,
            "replayed": [{"fingerprint": a.fingerprint, "refused_run": a.run.id}
                         for a in queued]}))
    for a in found:
        if a in queued:
            out(f"replayed {alert_text(a.alertname) or 'alert'} {alert_text(a.fingerprint)} "
                f"on {a.run.target} (refused run {a.run.id}): queued in the intake for the "
                "service's workers (where no service runs, it waits there until one starts)")
        elif a.firing:
            out(f"not replayed {alert_text(a.fingerprint)}: already queued for refusal "
                f"{a.run.id}")
        else:
            out(f"not replayed {alert_text(a.fingerprint)}: not known to fire (no delivery "
                "kept)")


# -- unlock -----------------------------------------------------------------------------------

def cmd_unlock(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.orchestration.switches import HeldElsewhere, unlock_named

    who = operator(args)
    t = now()
    try:
        target, broken = unlock_named(ctx, args.target, component=args.component, by=who,
                                      now=t)
    except HeldElsewhere as exc:
        err(str(exc))
        return 4
    if broken is None:
        out(f"no lock on {target}")
        return OK
    run = f", run {broken.run_id}" if broken.run_id else ""
    comp = f", component {broken.component}" if broken.component else ""
    state = "expired" if broken.expires_at <= t else f"lease until {when(broken.expires_at)}"
    out(f"broke the lock on {target}: held by {broken.holder}{run}{comp} since "
        f"{when_ago(broken.acquired_at, t)} ({state}; token {broken.token}); recorded as {who}")
    return OK


def known_modes(ctx: EngineContext, loaded: list[Any] | None) -> dict[str, dict[str, Any]]:
    """Configured modes, then those runbooks name: mode -> its config (maybe empty)."""
    modes = {name: dict(spec or {}) for name, spec in ctx.config.degraded_modes.items()}
    for rb in loaded or []:
        if rb.degraded_mode is not None:
            modes.setdefault(rb.degraded_mode.name, {})
    return modes


def cmd_degraded(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.reporting.reports import degraded_modes

    who = operator(args)
    t = now()
    loaded = _loaded_runbooks(ctx)
    known = known_modes(ctx, loaded)
    if args.on:
        if args.on not in known:
            raise CliError(f"unknown degraded mode {args.on!r} (known: "
                           f"{', '.join(sorted(known)) or 'none'})")
        reason = DegradedReason(mode=args.on, key="manual", manual=True, created_by=who,
                                reason=args.reason or f"switched on by {who}", since=t)
        ctx.store.add_degraded(reason)
        post_soon(ctx)      # RecoveryDegradedMode goes out at the next worker pass
        ctx.store.add_event(AuditEvent(at=t, actor=who, action="degraded_on",
                                       detail=reason.to_dict()))
        if not args.json:
            out(f"degraded mode {args.on} on, by hand ({who}); it stays on until "
                f"`recovery degraded --off {args.on}`")
    elif args.off:
        present = {r.mode for r in ctx.store.degraded_reasons(args.off)}
        if args.off not in known and args.off not in present:
            raise CliError(f"unknown degraded mode {args.off!r} (known: "
                           f"{', '.join(sorted(known)) or 'none'})")
        cleared = ctx.store.clear_degraded(mode=args.off, manual=None)
        post_soon(ctx)      # ... and resolves at the next one
        ctx.store.add_event(AuditEvent(at=t, actor=who, action="degraded_off", detail={
            "mode": args.off, "cleared": [r.to_dict() for r in cleared],
            "reason": args.reason}))
        if not args.json:
            out(f"degraded mode {args.off} off, by {who}: cleared {len(cleared)} reason(s)"
                + "".join(f"\n  {_reason_words(r, t)}" for r in cleared))
    modes = degraded_modes(ctx.store, ctx.config.degraded_modes, loaded or [])
    if args.json:
        emit_json(modes)
        return OK
    if args.on or args.off:
        return OK
    for i, mode in enumerate(modes):
        if i:
            out()
        state = "ON" if mode["active"] else "off"
        desc = f" — {mode['description']}" if mode.get("description") else ""
        out(f"{mode['mode']}: {state}{desc}")
        if mode.get("capabilities"):
            out(f"  {capability_words(mode)}")
        if mode["reasons"]:
            out(indented_table(mode["reasons"], [
                ("KEY", lambda r: r["key"]),
                ("TARGET", lambda r: r["target"]),
                ("INCIDENT", lambda r: r["incident_id"]),
                ("MANUAL", lambda r: "yes" if r["manual"] else "no"),
                ("BY", lambda r: r["created_by"]),
                ("SINCE", lambda r: f"{when(r['since'])} ({ago(r['since'], t)})"),
                ("REASON", lambda r: r["reason"]),
            ]))
    if not modes:
        out("no degraded modes configured")
    return OK


def _reason_words(r: DegradedReason, t: float) -> str:
    where = f" on {r.target}" if r.target else ""
    return (f"{r.key}{where} ({'manual' if r.manual else 'automatic'}, by {r.created_by or '?'}"
            f", since {when(r.since)}): {r.reason}")
