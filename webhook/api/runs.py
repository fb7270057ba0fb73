"""Runs: the run index with filters (``recovery history``) and one run: its index row,
what it did to each host (``hosts``: outcome and reason), its story (``timeline``: each
gate's answer, the approval, the verify, the end; engine.reporting.timeline) and its job
events and artifacts (``engine.reporting.run_account.read_run``: its directory, or the
account another replica kept in the store)."""

from __future__ import annotations

from flask import jsonify, request

from engine.lifecycle import RunStatus
from engine.reporting.run_account import read_run
from engine.reporting.timeline import run_timeline
from engine.security.roles import Access
from webhook.api.blueprint import ID, BadQuery, bp, limit_of, not_found, parse_since
from webhook.auth import requires
from webhook.state import state


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
        limit=limit_of(args.get("limit")),
    )
    return jsonify(runs=[r.to_dict() for r in runs])


@bp.get("/runs/<run_id>")
@requires(Access.READ)
def get_run(run_id: str):
    ctx = state().context
    if not ID.fullmatch(run_id):
        return not_found("run", run_id)
    view = read_run(ctx, run_id)
    if view is None:
        return not_found("run", run_id)
    record = view.record
    return jsonify(run=record.to_dict() if record else None,
                   hosts=record.hosts if record else [],
                   timeline=[e.to_dict() for e in run_timeline(ctx, record)] if record else [],
                   run_json=view.run_json, status=view.status, rc=view.rc,
                   events=view.events, artifacts=view.where())
