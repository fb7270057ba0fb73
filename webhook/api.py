"""The operators' HTTP API: ``/api/v1/*`` but the webhook. Each route states its access
(engine.security.roles): reading (``status``, ``strategies``, ``degraded``, ``runs``,
``approvals``) needs
``Access.READ``, a decision (approve, reject, acknowledge, reload) ``Access.OPERATE``;
today the ``operator`` role holds both. ``g.operator`` names who, for the record.

The same answers as the CLI, from the same functions: ``status`` is
``engine.reporting.reports.status_report``, ``strategies`` (or ``status?by=strategy``) is
``engine.reporting.strategies.strategy_report``, ``degraded`` is
``engine.reporting.reports.degraded_modes``, a run is its index row plus its artifacts
(``engine.reporting.run_account.read_run``: its directory, or the account another replica
kept in the store), and a decision goes through
``engine.orchestration.approvals``. Nothing here decides anything itself. Answers: 400 for a
bad query or body (with the reason), 404 for an unknown run, approval or incident, 409 when
a decision cannot be taken (already decided, expired, incident closed; no exhausted alert to
acknowledge; ``{"error": "runbook_changed"|"runbook_not_loaded", "reason"}`` when the step's
runbook is not the one it was asked under), 503 when the store is down.

Every request acts on one set of runbooks, playbooks and inventory: before it, this
process switches to the set in force (engine.runbooks.loaded_set) and keeps that set for the
whole request. ``POST /api/v1/reload`` validates the files on disk and puts them in force
(200), or refuses them whole (409 ``{"error": "invalid_set", "problems": [...]}``); it
syntax-checks every playbook within the request, so a very large playbooks folder is
better reloaded with ``recovery reload`` (gunicorn's ``request_timeout`` bounds a request).
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack

from flask import Blueprint, g, jsonify, request

from engine.alerts.alert import normalize_time
from engine.durations import parse_duration
from engine.lifecycle import RunStatus
from engine.orchestration.approvals import DecisionError, approve, reject
from engine.orchestration.exhaustion import AckRefused, UnknownIncident, acknowledge
from engine.reporting.reports import degraded_modes, status_report
from engine.reporting.run_account import read_run
from engine.reporting.strategies import strategy_report
from engine.runbooks.reload import reload_set
from engine.security.roles import Access
from webhook.auth import requires
from webhook.state import context_in_force, state

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIMIT = 1000
MAX_REASON = 2000
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_EPOCH = re.compile(r"\d+(\.\d+)?")


class BadQuery(ValueError):
    """A query or body the API cannot use: a 400 with this reason."""


@bp.errorhandler(BadQuery)
def _bad_query(exc: BadQuery):
    return jsonify(error=str(exc)), 400


@bp.before_request
def _on_the_set_in_force():
    """Switch to the set a reload put in force, then keep it for this request."""
    g.set_pin = ExitStack()
    g.set_pin.enter_context(context_in_force().pinned())


@bp.teardown_request
def _unpin(exc: BaseException | None) -> None:
    pin = g.pop("set_pin", None)
    if pin is not None:
        pin.close()


@bp.post("/reload")
@requires(Access.OPERATE)
def reload():
    ctx = state().context
    done = reload_set(ctx, g.operator)
    if not done.ok:
        invalid = done.validation is not None and not done.validation.ok
        return jsonify(error="invalid_set" if invalid else "reload_failed",
                       **done.to_dict()), 409 if invalid else 500
    ctx.refresh()
    return jsonify(done.to_dict())


@bp.get("/status")
@requires(Access.READ)
def get_status():
    by = request.args.get("by")
    if by == "strategy":
        return get_strategies()
    if by:
        raise BadQuery(f"by: {by!r} is not a grouping (by=strategy, or none)")
    return jsonify(status_report(state().context))


@bp.get("/strategies")
@requires(Access.READ)
def get_strategies():
    """``recovery status --by-strategy``: ``?window=1h`` (default ``status_window``)."""
    window = request.args.get("window")
    try:
        seconds = parse_duration(window) if window else None
    except ValueError as exc:
        raise BadQuery(f"window: {exc}") from None
    if seconds is not None and seconds <= 0:
        raise BadQuery("window: must be longer than 0")
    return jsonify(strategy_report(state().context, seconds))


@bp.get("/degraded")
@requires(Access.READ)
def get_degraded():
    ctx = state().context
    problems = []
    try:
        runbooks = list(ctx.runbooks)
    except Exception as exc:  # noqa: BLE001 - RunbookError and friends: say so, answer anyway
        runbooks = []
        problems.append(f"runbooks do not load: {exc}")
    modes = degraded_modes(ctx.store, ctx.config.degraded_modes, runbooks)
    return jsonify(active=[m["mode"] for m in modes if m["active"]], modes=modes,
                   problems=problems)


@bp.get("/runs")
@requires(Access.READ)
def list_runs():
    args = request.args
    status = args.get("status") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        known = ", ".join(s.value for s in RunStatus)
        raise BadQuery(f"status: unknown run status {status!r} (one of {known})")
    runs = state().context.store.query_runs(
        component=args.get("component") or None,
        since=parse_since(args.get("since")),
        status=status,
        target=args.get("target") or None,
        incident_id=args.get("incident") or None,
        limit=_limit(args.get("limit")),
    )
    return jsonify(runs=[r.to_dict() for r in runs])


@bp.get("/runs/<run_id>")
@requires(Access.READ)
def get_run(run_id: str):
    ctx = state().context
    if not _RUN_ID.fullmatch(run_id):
        return jsonify(error=f"no run {run_id[:64]!r}"), 404
    view = read_run(ctx, run_id)
    if view is None:
        return jsonify(error=f"no run {run_id}"), 404
    return jsonify(run=view.record.to_dict() if view.record else None,
                   run_json=view.run_json, status=view.status, rc=view.rc,
                   events=view.events, artifacts=view.where())


@bp.get("/approvals")
@requires(Access.READ)
def list_approvals():
    wanted = request.args.get("status") or "pending"
    known = ("pending", "approved", "rejected", "expired", "canceled", "all")
    if wanted not in known:
        raise BadQuery(f"status: one of {', '.join(known)}")
    rows = state().context.store.list_approvals(None if wanted == "all" else wanted)
    return jsonify(approvals=[a.to_dict() for a in rows])


@bp.post("/approvals/<run_id>")
@requires(Access.OPERATE)
def decide(run_id: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadQuery('expected a JSON object: {"decision": "approve"|"reject", '
                       '"reason": "..."}')
    decision = body.get("decision")
    if decision not in ("approve", "reject"):
        raise BadQuery('decision: "approve" or "reject"')
    reason = body.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise BadQuery(f"reason: a string of at most {MAX_REASON} characters")
    ctx = state().context
    if not _RUN_ID.fullmatch(run_id) or ctx.store.get_approval(run_id) is None:
        return jsonify(error=f"no approval for run {run_id[:64]!r}"), 404
    try:
        if decision == "approve":
            decided = approve(ctx, run_id, by=g.operator, reason=reason)
        else:
            decided = reject(ctx, run_id, by=g.operator, reason=reason)
    except DecisionError as exc:
        if exc.code:
            return jsonify(error=exc.code, reason=str(exc)), 409
        return jsonify(error=str(exc)), 409
    return jsonify(approval=decided.approval.to_dict(),
                   run=decided.run.to_dict() if decided.run else None)


@bp.post("/incidents/<incident_id>/ack")
@requires(Access.OPERATE)
def acknowledge_incident(incident_id: str):
    """``recovery ack``: the exhausted alert of this incident resolves, recorded with who."""
    if not _RUN_ID.fullmatch(incident_id):
        return jsonify(error=f"no incident {incident_id[:64]!r}"), 404
    try:
        gone = acknowledge(state().context, incident_id, by=g.operator)
    except UnknownIncident as exc:
        return jsonify(error=str(exc)), 404
    except AckRefused as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(acknowledged=gone.to_dict(), by=g.operator)


# -- query values ---------------------------------------------------------------------


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """Epoch seconds (``1700000000``), a duration back from now (``24h``), or an RFC 3339
    time; None when absent."""
    if not value:
        return None
    text = value.strip()
    if _EPOCH.fullmatch(text):
        return float(text)
    if "T" in text:
        try:
            normalized = normalize_time(text)
        except ValueError:
            normalized = None
        if normalized:
            from datetime import datetime

            return datetime.fromisoformat(normalized.replace("Z", "+00:00")).timestamp()
    try:
        back = parse_duration(text)
    except ValueError:
        raise BadQuery(f"since: {text[:64]!r} is neither epoch seconds, a duration like "
                       "24h, nor an RFC 3339 time") from None
    return (time.time() if now is None else now) - back


def _limit(value: str | None) -> int:
    if not value:
        return 100
    try:
        limit = int(value)
    except ValueError:
        raise BadQuery(f"limit: {value[:32]!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit: between 1 and {MAX_LIMIT}")
    return limit
