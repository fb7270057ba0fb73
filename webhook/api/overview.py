"""What the engine is doing now: ``status`` (``engine.reporting.reports.status_report``),
``strategies`` (``engine.reporting.strategies.strategy_report``) and ``degraded``
(``engine.reporting.reports.degraded_modes``: each mode, on or off, with its capability
matrix and its reasons; an ``app`` credential may read these, and nothing else here)."""

from __future__ import annotations

from flask import jsonify, request

from engine.durations import parse_duration
from engine.reporting.reports import degraded_modes, status_report
from engine.reporting.strategies import strategy_report
from engine.security.roles import Access
from webhook.api.blueprint import BadQuery, bp
from webhook.auth import requires
from webhook.state import state


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
@requires(Access.READ_DEGRADED)
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
