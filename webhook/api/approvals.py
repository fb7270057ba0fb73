"""Approvals: the list (``?status=pending`` by default) and a decision on one, through
``engine.orchestration.approvals`` (409 ``{"error": "runbook_changed"|"runbook_not_loaded",
"reason"}`` when the step's runbook is not the one it was asked under, or a plain 409 when
it is decided, expired or its incident closed)."""

from __future__ import annotations

from flask import g, jsonify, request

from engine.orchestration.approvals import DecisionError, approve, reject
from engine.security.roles import Access
from webhook.api.blueprint import ID, MAX_REASON, BadQuery, bp, json_body
from webhook.auth import requires
from webhook.state import state

STATUSES = ("pending", "approved", "rejected", "expired", "canceled", "all")


@bp.get("/approvals")
@requires(Access.READ)
def list_approvals():
    wanted = request.args.get("status") or "pending"
    if wanted not in STATUSES:
        raise BadQuery(f"status: one of {', '.join(STATUSES)}")
    rows = state().context.store.list_approvals(None if wanted == "all" else wanted)
    return jsonify(approvals=[a.to_dict() for a in rows])


@bp.post("/approvals/<run_id>")
@requires(Access.OPERATE)
def decide(run_id: str):
    body = json_body('{"decision": "approve"|"reject", "reason": "..."}')
    decision = body.get("decision")
    if decision not in ("approve", "reject"):
        raise BadQuery('decision: "approve" or "reject"')
    reason = body.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise BadQuery(f"reason: a string of at most {MAX_REASON} characters")
    ctx = state().context
    if not ID.fullmatch(run_id) or ctx.store.get_approval(run_id) is None:
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
