"""Incidents: the list (``recovery incidents``, with ``open``, ``component``, ``target``,
``state`` and ``limit``), one incident with its attempts (its runs grouped by the attempt
they belong to), its runs and its story (engine.reporting.timeline, as ``recovery show``),
and ``ack`` (``recovery ack``: its exhausted alert resolves, recorded with who)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from engine.lifecycle import IncidentState
from engine.orchestration.exhaustion import AckRefused, UnknownIncident, acknowledge
from engine.records import RunRecord
from engine.reporting.timeline import timeline
from engine.security.roles import Access
from webhook.api.blueprint import ID, BadQuery, bp, limit_of, not_found
from webhook.auth import requires
from webhook.state import state

TRUE, FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


@bp.get("/incidents")
@requires(Access.READ)
def list_incidents():
    args = request.args
    wanted = (args.get("open") or "").lower()
    if wanted not in TRUE + FALSE:
        raise BadQuery("open: true or false")
    incident_state = args.get("state") or None
    if incident_state is not None and incident_state not in {s.value for s in IncidentState}:
        known = ", ".join(s.value for s in IncidentState)
        raise BadQuery(f"state: unknown incident state {incident_state!r} (one of {known})")
    found = state().context.store.list_incidents(
        open_only=wanted in TRUE, component=args.get("component") or None,
        target=args.get("target") or None, state=incident_state,
        limit=limit_of(args.get("limit")))
    return jsonify(incidents=[i.to_dict() for i in found])


@bp.get("/incidents/<incident_id>")
@requires(Access.READ)
def get_incident(incident_id: str):
    ctx = state().context
    incident = ctx.store.get_incident(incident_id) if ID.fullmatch(incident_id) else None
    if incident is None:
        return not_found("incident", incident_id)
    runs = ctx.store.query_runs(incident_id=incident.id, limit=None)
    story = timeline(ctx, incident.id)
    return jsonify(incident=incident.to_dict(), attempts=attempts_of(runs),
                   runs=[r.to_dict() for r in runs],
                   timeline=[e.to_dict() for e in story.entries] if story else [])


def attempts_of(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """The incident's attempts, oldest first, each with the ids of its runs (a run no
    attempt took up, a refusal or a deferral before one began, belongs to none)."""
    attempts: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: (r.started_at, r.id)):
        if run.attempt_id is None:
            continue
        one = attempts.setdefault(run.attempt_id, {
            "id": run.attempt_id, "started_at": run.started_at, "finished_at": None,
            "runs": [], "last_status": None})
        one["runs"].append(run.id)
        one["last_status"] = run.status.value
        if run.finished_at is not None:
            one["finished_at"] = max(one["finished_at"] or 0.0, run.finished_at)
    return list(attempts.values())


@bp.post("/incidents/<incident_id>/ack")
@requires(Access.OPERATE)
def acknowledge_incident(incident_id: str):
    """``recovery ack``: the exhausted alert of this incident resolves, recorded with who."""
    if not ID.fullmatch(incident_id):
        return not_found("incident", incident_id)
    try:
        gone = acknowledge(state().context, incident_id, by=g.operator)
    except UnknownIncident as exc:
        return jsonify(error=str(exc)), 404
    except AckRefused as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(acknowledged=gone.to_dict(), by=g.operator)
