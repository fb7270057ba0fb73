"""The console's pages (``Access.READ``): Now, Approvals, History, a run, Charts. Each
reads what the CLI reads, from the same functions (engine.reporting, the store,
engine.reporting.run_account.read_run); nothing here decides anything."""

from __future__ import annotations

import re
import time
from typing import Any

from flask import abort, render_template, request

from engine.cli.approvals import judged_summary, plan_summary
from engine.lifecycle import RunStatus
from engine.records import Approval, Incident
from engine.reporting.reports import status_report
from engine.reporting.run_account import read_run
from engine.runbooks.loader import RunbookError
from engine.security.roles import Access
from webhook.auth import requires
from webhook.console import charts, session
from webhook.console.blueprint import bp
from webhook.state import state

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
HISTORY_LIMIT = 200
STATUSES = [s.value for s in RunStatus]


@bp.get("/")
@requires(Access.READ, session.refusal)
def now():
    ctx = state().context
    t = time.time()
    report = status_report(ctx, t)
    incidents = [_incident_row(i) for i in ctx.store.list_incidents(open_only=True,
                                                                    limit=200)]
    return render_template("now.html", title="Now", report=report, incidents=incidents,
                           approvals=[_approval_view(a) for a in _pending()],
                           components=_components())


@bp.get("/approvals")
@requires(Access.READ, session.refusal)
def approvals():
    return render_template("approvals.html", title="Approvals",
                           approvals=[_approval_view(a) for a in _pending()])


@bp.get("/history")
@requires(Access.READ, session.refusal)
def history():
    from webhook.api import BadQuery, parse_since

    args = request.args
    filters = {k: (args.get(k) or "").strip()[:200]
               for k in ("component", "status", "target", "since")}
    problem = None
    since = None
    try:
        since = parse_since(filters["since"])
    except BadQuery as exc:
        problem = str(exc)
    if filters["status"] and filters["status"] not in STATUSES:
        problem = f"status: unknown run status {filters['status']!r}"
    runs = [] if problem else state().context.store.query_runs(
        component=filters["component"] or None, since=since,
        status=filters["status"] or None, target=filters["target"] or None,
        limit=HISTORY_LIMIT)
    return render_template("history.html", title="History", runs=runs, filters=filters,
                           statuses=STATUSES, components=_components(), problem=problem,
                           limit=HISTORY_LIMIT), 400 if problem else 200


@bp.get("/runs/<run_id>")
@requires(Access.READ, session.refusal)
def run(run_id: str):
    if not RUN_ID.fullmatch(run_id):
        abort(404, f"no run {run_id[:64]!r}")
    view = read_run(state().context, run_id)
    if view is None:
        abort(404, f"no run {run_id}")
    merged = {**view.run_json, **(view.record.to_dict() if view.record else {})}
    return render_template("run.html", title=f"Run {run_id}", run_id=run_id, view=view,
                           run=merged, gates=view.run_json.get("gates") or [],
                           hosts=merged.get("hosts") or [],
                           alert=_alert_of(view.run_json, merged),
                           status=merged.get("status") or view.status or "unknown")


@bp.get("/charts")
@requires(Access.READ, session.refusal)
def charts_page():
    days = request.args.get("days", "")
    window = int(days) if days in {str(d) for d in charts.WINDOWS} else charts.DEFAULT_DAYS
    return render_template("charts.html", title="Charts", days=window,
                           windows=charts.WINDOWS,
                           figures=charts.figures(state().context.store, window, time.time()))


# -- what the pages show -------------------------------------------------------------------


def _pending() -> list[Approval]:
    return sorted(state().context.store.list_approvals("pending"),
                  key=lambda a: a.requested_at)


def _approval_view(a: Approval) -> dict[str, Any]:
    """An approval as the page shows it: ``recovery pending``'s plan in words, and what
    the step's check-mode plan found (and, when one was kept, its diff)."""
    plan = a.plan or {}
    summary = plan_summary({k: v for k, v in plan.items() if k != "judged"})
    found = judged_summary(plan.get("judged")).lstrip("; ")
    diff = plan.get("diff")
    diff_text = "\n".join(x for x in (str(diff) if diff else "", found) if x)
    return {"approval": a, "plan": summary, "diff": diff_text}


def _incident_row(incident: Incident) -> dict[str, Any]:
    """An open incident and the step it is at: its newest run's strategy and status."""
    runs = state().context.store.query_runs(incident_id=incident.id, limit=1)
    latest = runs[0] if runs else None
    hosts = [h.get("host") for h in (latest.hosts if latest else []) if h.get("host")]
    return {"incident": incident, "run": latest, "hosts": hosts,
            "strategy": latest.strategy if latest else (incident.only_strategy or "-"),
            "status": (f"{incident.state.value}: {latest.status.value}" if latest
                       else incident.state.value)}


def _alert_of(run_json: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    labels = run_json.get("labels") or {}
    return {"alertname": labels.get("alertname"), "labels": labels,
            "annotations": run_json.get("annotations") or {},
            "fingerprint": merged.get("fingerprint"),
            "failure_type": run_json.get("failure_type"), "trigger": merged.get("trigger")}


def _components() -> list[str]:
    try:
        return sorted({rb.component for rb in state().context.runbooks})
    except RunbookError:
        return []
