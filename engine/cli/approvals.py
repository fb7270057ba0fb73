"""``recovery pending``, ``approve`` and ``cancel``: what a person decides about a step."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli.common import FAILED, OK, REFUSED, CliError, now, operator
from engine.cli.output import ago, emit_json, err, out, table, when
from engine.cli.recover import Foreground, approve_hint, outcome
from engine.context import EngineContext
from engine.lifecycle import RunStatus

APPROVE_HELP = """\
Approve (or --reject) a step parked for approval. Approving queues it: the service's
workers run it after asking every gate again; --now runs it here, in the foreground,
where no service runs (exit codes then as `recovery recover`). The decision records
who (--as, RECOVERY_OPERATOR, or cli:$USER) and the reason.

exit codes: 0 decided (and, with --now, recovered), 1 failed, 3 the next step waits for
approval, 4 the decision cannot be taken (unknown run, already decided, expired) or a
gate refused or deferred the step.
"""

CANCEL_HELP = """\
Cancel a run or an incident. A running step is asked to stop (playbooks stop at the next
task boundary; python actions cannot be interrupted and finish); a parked or queued step
is canceled; an open incident is closed as canceled.

exit codes: 0 done (or nothing left to cancel), 4 no such run or incident.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pending", parents=parents, help="steps waiting for approval")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_pending)

    p = sub.add_parser("approve", parents=parents, help="approve or reject a parked step",
                       description=APPROVE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--reject", action="store_true", help="say no instead")
    p.add_argument("--reason", "-r", default="", metavar="R", help="why (recorded)")
    p.add_argument("--now", action="store_true",
                   help="run the approved step here, in the foreground")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("cancel", parents=parents, help="cancel a run or an incident",
                       description=CANCEL_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ident", metavar="RUN_ID|INCIDENT_ID")
    p.set_defaults(func=cmd_cancel)


def plan_summary(plan: dict[str, Any]) -> str:
    if not plan:
        return ""
    if plan.get("playbook"):
        what = f"playbook {plan['playbook']}"
        values = plan.get("extravars") or {}
    else:
        what = f"action {plan.get('action')}"
        values = plan.get("params") or {}
    if values:
        what += " " + ", ".join(f"{k}={v}" for k, v in values.items())
    if plan.get("verify"):
        what += f"; verify {plan['verify'].get('action')}"
    return what


def cmd_pending(ctx: EngineContext, args: argparse.Namespace) -> int:
    t = now()
    approvals = ctx.store.list_approvals("pending")
    if args.json:
        emit_json([{**a.to_dict(), "age": t - a.requested_at,
                    "expires_in": a.expires_at - t} for a in approvals])
        return OK
    out(table(approvals, [
        ("RUN", lambda a: a.run_id),
        ("INCIDENT", lambda a: a.incident_id),
        ("COMPONENT", lambda a: a.component),
        ("STRATEGY", lambda a: a.strategy),
        ("TARGET", lambda a: a.target),
        ("REQUESTED BY", lambda a: a.requested_by),
        ("AGE", lambda a: ago(a.requested_at, t)),
        ("EXPIRES", lambda a: ago(a.expires_at, t) if a.expires_at > t else "expired"),
        ("PLAN", lambda a: plan_summary(a.plan)),
    ], empty="no step waits for approval"))
    if approvals:
        out(f"\n{len(approvals)} waiting: recovery approve RUN_ID [--now] | "
            "recovery approve RUN_ID --reject --reason R")
    return OK


def cmd_approve(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.approvals import DecisionError, approve, expire_due, reject

    who = operator(args)
    if args.reject and args.now:
        raise CliError("--now runs an approved step; it cannot go with --reject")
    # Nobody may approve what has expired, even where no service runs to expire it.
    current = ctx.store.get_approval(args.run_id)
    if current is not None and current.status == "pending" and current.expires_at <= now():
        expire_due(ctx)
        err(f"the approval for run {args.run_id} expired at {when(current.expires_at)}; "
            "run `recovery recover` again to ask anew")
        return REFUSED
    try:
        if args.reject:
            decided = reject(ctx, args.run_id, by=who, reason=args.reason)
        else:
            decided = approve(ctx, args.run_id, by=who, reason=args.reason)
    except DecisionError as exc:
        err(str(exc))
        return REFUSED
    a = decided.approval
    what = f"run {a.run_id} ({a.strategy} on {a.target}, {a.runbook})"
    if args.reject:
        incident = ctx.store.get_incident(a.incident_id or "")
        after = ""
        if incident is not None:
            after = f"; incident {incident.id} is {incident.state.value}"
            if incident.state.value == "open":
                after += " (a worker goes on with the next strategy)"
        out(f"rejected {what} as {who}{after}")
        return OK
    out(f"approved {what} as {who}, requested by {a.requested_by} at {when(a.requested_at)}")
    if not args.now:
        out("queued: a running service runs it after asking every gate again; "
            f"or run it here: recovery{approve_hint(args)} approve {a.run_id} --now "
            "(once queued, use `recovery show` to follow it)")
        return OK
    return _run_now(ctx, args, who)


def _run_now(ctx: EngineContext, args: argparse.Namespace, who: str) -> int:
    from engine.orchestrator import advance

    run = ctx.store.get_run(args.run_id)
    if run is None or run.status != RunStatus.QUEUED:
        state = run.status.value if run else "gone"
        err(f"run {args.run_id} is {state}, not queued: a worker may have taken it")
        return REFUSED
    if not run.incident_id:
        err(f"run {run.id} belongs to no incident: nothing to resume")
        return FAILED
    with Foreground(ctx, who) as fg:
        fg.incident_id = run.incident_id
        incident = advance(ctx, run.incident_id, resume=run, on_run=fg.on_run)
        if fg.interrupted:
            fg.cancel_incident()
            return FAILED
    after = ctx.store.get_run(run.id)
    if after is not None and after.status == RunStatus.CANCELED:
        err(f"run {run.id} canceled: {after.reason}")
        return FAILED
    code, words = outcome(ctx, incident, approve_hint(args))
    (out if code in (OK, 3) else err)(words)
    return code


def cmd_cancel(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.approvals import DecisionError, cancel

    try:
        said = cancel(ctx, args.ident, by=operator(args))
    except DecisionError as exc:
        err(str(exc))
        return REFUSED
    out(said)
    return OK
