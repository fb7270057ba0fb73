"""The console's forms (``Access.OPERATE``, CSRF-checked by webhook.console.session):
approve or reject a parked step, cancel an incident, a kill switch on or off, a lock
broken. Each calls the engine function the CLI calls (engine.orchestration.approvals,
engine.orchestration.switches), records the operator's name, and answers 303 back to
the page it came from with a flash message saying what happened."""

from __future__ import annotations

import time

from flask import abort, flash, g, redirect, request, url_for

from engine.cli.output import when
from engine.orchestration import switches
from engine.orchestration.approvals import DecisionError, approve, cancel, reject
from engine.security.roles import Access
from webhook.auth import requires
from webhook.console import session
from webhook.console.blueprint import bp
from webhook.console.pages import RUN_ID
from webhook.state import state

MAX_TEXT = 2000
DONE, REFUSED = "done", "refused"      # flash categories


@bp.post("/approvals/<run_id>")
@requires(Access.OPERATE, session.refusal)
def decide(run_id: str):
    ctx = state().context
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        abort(400, 'decision: "approve" or "reject"')
    reason = _text("reason")
    if not RUN_ID.fullmatch(run_id) or ctx.store.get_approval(run_id) is None:
        abort(404, f"no approval for run {run_id[:64]!r}")
    try:
        decided = (approve if decision == "approve" else reject)(
            ctx, run_id, by=g.operator, reason=reason)
    except DecisionError as exc:
        flash(f"run {run_id} not {decision}d: {exc}", REFUSED)
    else:
        a = decided.approval
        after = (" (queued: a worker runs it after asking every gate again)"
                 if decision == "approve" else "")
        flash(f"{decision}d run {a.run_id} ({a.strategy} on {a.target}, {a.runbook}) as "
              f"{g.operator}{after}", DONE)
    return redirect(url_for("console.approvals"), 303)


@bp.post("/incidents/<incident_id>/cancel")
@requires(Access.OPERATE, session.refusal)
def cancel_incident(incident_id: str):
    ctx = state().context
    if not RUN_ID.fullmatch(incident_id) or ctx.store.get_incident(incident_id) is None:
        abort(404, f"no incident {incident_id[:64]!r}")
    try:
        flash(cancel(ctx, incident_id, by=g.operator), DONE)
    except DecisionError as exc:
        flash(f"incident {incident_id} not canceled: {exc}", REFUSED)
    return _back()


@bp.post("/switches/disable")
@requires(Access.OPERATE, session.refusal)
def disable():
    ctx = state().context
    now = time.time()
    try:
        until = switches.expiry(_text("for") or "1h", now)
    except ValueError as exc:
        return _refused(f"for: {exc}")
    try:
        component, target, notes = _scope()
    except switches.UnknownComponent as exc:
        return _refused(str(exc))
    done = switches.disable(ctx, component, target, until, by=g.operator,
                            reason=_text("reason"),
                            cancel_running=request.form.get("cancel_running") == "yes",
                            now=now)
    s = done.switch
    length = f"until {when(until)}" if until else "until enabled"
    flash(f"auto-recovery disabled for {s.scope()} {length}, by {g.operator} (switch {s.id})"
          + "".join(f"; {line}" for line in notes + done.said), DONE)
    return _back()


@bp.post("/switches/enable")
@requires(Access.OPERATE, session.refusal)
def enable():
    component, target = _text("component") or None, _text("target") or None
    if not any((s.component, s.target) == (component, target)    # a switch's own button
               for s in state().context.store.active_switches(time.time())):
        try:
            component, target, _ = _scope()
        except switches.UnknownComponent as exc:
            return _refused(str(exc))
    removed = switches.enable(state().context, component, target, by=g.operator)
    if removed:
        flash("removed " + ", ".join(f"switch {s.id} ({s.scope()})" for s in removed)
              + f", by {g.operator}", DONE)
    else:
        flash("no kill switch for exactly that scope", REFUSED)
    return _back()


@bp.post("/locks/unlock")
@requires(Access.OPERATE, session.refusal)
def unlock():
    target = _text("target")
    if not target:
        abort(400, "target: which host's lock")
    target, broken = switches.unlock_named(state().context, target, component=None,
                                           by=g.operator)
    if broken is None:
        flash(f"no lock on {target}", REFUSED)
    else:
        run = f", run {broken.run_id}" if broken.run_id else ""
        flash(f"broke the lock on {target} (held by {broken.holder}{run}), recorded as "
              f"{g.operator}", DONE)
    return _back()


def _text(name: str) -> str:
    value = request.form.get(name, "").strip()
    if len(value) > MAX_TEXT:
        abort(400, f"{name}: at most {MAX_TEXT} characters")
    return value


def _scope() -> tuple[str | None, str | None, list[str]]:
    """The form's component and target as switches keep them and the gates compare
    them (a runbook name names its component, an alias or address its host), with a
    note when the target is no inventory host; ``UnknownComponent`` for a component no
    runbook has (taken as given when the runbooks do not load)."""
    ctx = state().context
    component = switches.scope_component(ctx, _text("component") or None)
    target, note = switches.scope_target(ctx, _text("target") or None)
    return component, target, [note] if note else []


def _refused(message: str):
    flash(message, REFUSED)
    return _back()


def _back():
    return redirect(url_for("console.now"), 303)
