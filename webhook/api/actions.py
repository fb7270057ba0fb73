"""What an operator (or, for its one component, an app) does over HTTP, with the
semantics of the CLI command of the same name and the same engine functions:

- ``POST /recover`` (``recovery recover``; Access.TRIGGER): 202 ``{incident_id, run_id,
  outcome}`` once the gates have answered (the step runs on the engine workers, never in
  the request: engine.orchestration.manual), 409 ``{gate, reason, retry_at}`` when a gate
  refuses or defers it (or its attempt is under way elsewhere), 400 for bad usage;
  ``check: true`` starts a check-mode run. An ``app`` credential may trigger only the
  component its token names (403 naming it otherwise), as a probe does: no ``force``, and
  the kill switch refuses it.
- ``POST /cancel/<id>`` (``recovery cancel``), ``GET|POST /switches`` and
  ``DELETE /switches/<id>`` (``recovery disable|enable``: an expiry is required, 1h by
  default, ``"never"`` said out loud), ``POST /unlock`` (``recovery unlock``), ``POST
  /reload`` (``recovery reload``): each recorded with who.
"""

from __future__ import annotations

import time

from flask import g, jsonify, request

from engine.context import UnknownRunbook
from engine.inventory import UnknownTarget
from engine.lifecycle import IncidentState, RunStatus
from engine.orchestration.approvals import DecisionError, cancel
from engine.orchestration.manual import check_in_background, first_answer, hand_to_workers
from engine.orchestration.switches import (
    HeldElsewhere,
    UnknownComponent,
    disable,
    enable,
    expiry,
    scope_component,
    scope_target,
    unlock_named,
)
from engine.orchestration.triggers import TriggerRequest
from engine.records import Incident, RunRecord
from engine.runbooks.reload import reload_set
from engine.security.roles import Access
from webhook.api.blueprint import (
    ID,
    MAX_REASON,
    BadQuery,
    bp,
    flag_field,
    json_body,
    not_found,
    text_field,
)
from webhook.auth import forbidden, requires
from webhook.state import state

ANSWER_WAIT = 10.0    # seconds a recover request waits for the gates' first answer
RECOVER_FIELDS = ("component", "strategy", "target", "check", "force")
SWITCH_FIELDS = ("component", "target", "for", "reason", "cancel_running")


def _only(body: dict, fields: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadQuery(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(fields)})")


@bp.post("/recover")
@requires(Access.TRIGGER)
def recover():
    body = json_body('{"component": "C", "strategy": "S", "target": "host", '
                     '"check": false, "force": false}')
    _only(body, RECOVER_FIELDS)
    name = text_field(body, "component", required=True)
    strategy = text_field(body, "strategy")
    target = text_field(body, "target") or "localhost"
    check, force = flag_field(body, "check"), flag_field(body, "force")
    ctx = state().context
    try:
        rb = ctx.runbook(name)
    except UnknownRunbook as exc:
        raise BadQuery(str(exc.args[0])) from None
    app = g.credential.role == "app"
    if app and rb.component != g.credential.component:
        return forbidden(f"{g.credential.name!r} (role app) may trigger component "
                         f"{g.credential.component!r} only, not {rb.component!r}")
    if app and force:
        return forbidden(f"{g.credential.name!r} (role app) may not force a run: its "
                         "trigger is a probe's (the kill switch and cooldowns hold)")
    if strategy and rb.strategy(strategy) is None:
        names = ", ".join(s.name for s in rb.strategies)
        raise BadQuery(f"runbook {rb.name} has no strategy {strategy!r} (it has: {names})")
    if check:
        return _check(rb.name, target, strategy)
    handed = hand_to_workers(ctx, TriggerRequest(
        runbook=rb.name, target=target, trigger="probe" if app else "manual",
        requested_by=g.operator, strategy=strategy, force=force))
    opened = handed.opened
    if opened.refusal:
        if opened.refused_run is None:   # bad usage that open_incident caught
            raise BadQuery(opened.refusal)
        return _refused("target", opened.refusal, None, run_id=opened.refused_run)
    incident = opened.incident
    assert incident is not None
    if not handed.handed:
        return _refused(_gate_of(incident), opened.note, incident.next_try_at,
                        incident_id=incident.id)
    incident, run = first_answer(ctx, handed, ANSWER_WAIT)
    if incident is None:
        return jsonify(error="the incident vanished (pruned?)"), 500
    if run is None and _refused_before_a_run(incident):
        run = _counted_refusal(incident)   # counted into an earlier record of its minute
        return _refused(run.gate if run and run.gate else "gate", incident.reason, None,
                        incident_id=incident.id, run_id=run.id if run else None)
    if run is None:
        outcome = "queued" if incident.state.is_open else incident.state.value
        return jsonify(incident_id=incident.id, run_id=None, outcome=outcome,
                       reason=incident.reason), 202
    if run.status in (RunStatus.REFUSED, RunStatus.DEFERRED):
        retry_at = _retry_at(incident) if run.status == RunStatus.DEFERRED else None
        return _refused(run.gate or "gate", run.reason, retry_at, incident_id=incident.id,
                        run_id=run.id)
    return jsonify(incident_id=incident.id, run_id=run.id, outcome=run.status.value,
                   reason=run.reason), 202


def _check(runbook: str, target: str, strategy: str | None):
    ctx = state().context
    try:
        if ctx.inventory.get(target) is None:
            target = ctx.inventory.resolve_instance(target).name
    except UnknownTarget as exc:
        return _refused("target", f"unknown target: {exc.reason}", None)
    run = check_in_background(ctx, runbook, target, strategy=strategy,
                              requested_by=g.operator, wait=ANSWER_WAIT)
    return jsonify(incident_id=None, run_id=run.id if run else None, outcome="check",
                   reason="check mode: nothing is changed"), 202


def _refused(gate: str, reason: str, retry_at: float | None, **ids: str | None):
    return jsonify(error="refused" if retry_at is None else "deferred", gate=gate,
                   reason=reason, retry_at=retry_at, **ids), 409


def _refused_before_a_run(incident: Incident) -> bool:
    return (incident.state == IncidentState.CANCELED
            and incident.reason.startswith("refused"))


def _counted_refusal(incident: Incident) -> RunRecord | None:
    """The refusal record a refusal of this runbook and target was counted into."""
    found = state().context.store.query_runs(
        component=incident.component, target=incident.target,
        status=RunStatus.REFUSED.value, limit=1)
    return found[0] if found else None


def _gate_of(incident: Incident) -> str:
    """What holds an incident back: the gate of its last held run, else the incident
    itself (an attempt under way elsewhere)."""
    held = [r for r in state().context.store.query_runs(incident_id=incident.id, limit=5)
            if r.gate and r.status in (RunStatus.REFUSED, RunStatus.DEFERRED)]
    return held[0].gate if held and incident.next_try_at else "incident"


def _retry_at(incident: Incident) -> float | None:
    """A deferral's time: written on the incident just after its run record."""
    store = state().context.store
    deadline = time.monotonic() + 2.0
    while incident.next_try_at is None and incident.state.is_open \
            and time.monotonic() < deadline:
        time.sleep(0.05)
        incident = store.get_incident(incident.id) or incident
    return incident.next_try_at


@bp.post("/cancel/<ident>")
@requires(Access.OPERATE)
def cancel_one(ident: str):
    """``recovery cancel``: a run or an incident (``{"reason": "..."}`` optional)."""
    ctx = state().context
    if (not ID.fullmatch(ident) or (ctx.store.get_run(ident) is None
                                    and ctx.store.get_incident(ident) is None)):
        return not_found("run or incident", ident)
    body = json_body('{"reason": "..."}') if _has_body() else {}
    _only(body, ("reason",))
    why = text_field(body, "reason", limit=MAX_REASON) or ""
    try:
        said = cancel(ctx, ident, by=g.operator, why=why)
    except DecisionError as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(said=said, by=g.operator)


def _has_body() -> bool:
    return bool(request.get_data(cache=True))


@bp.get("/switches")
@requires(Access.READ)
def list_switches():
    """The kill switches in force now."""
    return jsonify(switches=[s.to_dict() for s in
                             state().context.store.active_switches(time.time())])


@bp.post("/switches")
@requires(Access.OPERATE)
def add_switch():
    """``recovery disable``: ``{"component"?, "target"?, "for": "1h"|"never", "reason",
    "cancel_running"?}``; 201 with the switch."""
    body = json_body('{"component": "C", "target": "T", "for": "1h", "reason": "..."}')
    _only(body, SWITCH_FIELDS)
    ctx = state().context
    now = time.time()
    try:
        until = expiry(text_field(body, "for", limit=64) or "1h", now)
    except ValueError as exc:
        raise BadQuery(f"for: {exc}") from None
    try:
        component = scope_component(ctx, text_field(body, "component"))
    except UnknownComponent as exc:
        raise BadQuery(f"component: {exc}") from None
    target, note = scope_target(ctx, text_field(body, "target"))
    done = disable(ctx, component, target, until, by=g.operator,
                   reason=text_field(body, "reason", limit=MAX_REASON) or "",
                   cancel_running=flag_field(body, "cancel_running"), now=now)
    return jsonify(switch=done.switch.to_dict(), said=done.said,
                   notes=[note] if note else []), 201


@bp.delete("/switches/<switch_id>")
@requires(Access.OPERATE)
def remove_switch(switch_id: str):
    """``recovery enable`` for the scope of this switch (every switch of exactly that
    scope goes: they are one kill switch to the gates)."""
    ctx = state().context
    found = next((s for s in ctx.store.active_switches(time.time()) if s.id == switch_id),
                 None)
    if found is None:
        return not_found("kill switch in force", switch_id)
    removed = enable(ctx, found.component, found.target, by=g.operator)
    return jsonify(removed=[s.to_dict() for s in removed], by=g.operator)


@bp.post("/unlock")
@requires(Access.OPERATE)
def unlock_target():
    """``recovery unlock``: ``{"target": "T", "component"?: "C"}``; 409 when the lock is
    held for another component than the one named."""
    body = json_body('{"target": "T", "component": "C"}')
    _only(body, ("target", "component"))
    target = text_field(body, "target", required=True)
    assert target is not None
    try:
        target, broken = unlock_named(state().context, target,
                                      component=text_field(body, "component"), by=g.operator)
    except HeldElsewhere as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(target=target, broken=broken.to_dict() if broken else None,
                   by=g.operator)


@bp.post("/reload")
@requires(Access.OPERATE)
def reload():
    """``recovery reload``: validates the files on disk and puts them in force (200), or
    refuses them whole (409 ``{"error": "invalid_set", "problems": [...]}``); it
    syntax-checks every playbook within the request (gunicorn's ``request_timeout``
    bounds it: a very large playbooks folder is better reloaded with the CLI)."""
    ctx = state().context
    done = reload_set(ctx, g.operator)
    if not done.ok:
        invalid = done.validation is not None and not done.validation.ok
        return jsonify(error="invalid_set" if invalid else "reload_failed",
                       **done.to_dict()), 409 if invalid else 500
    ctx.refresh()
    return jsonify(done.to_dict())
