"""``recovery pending``, ``approve`` and ``cancel``: what a person decides about a step."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli.common import CliError, command, loaded_set_note, now, operator
from engine.cli.exits import FAILED, OK, PARKED, REFUSED, USAGE
from engine.cli.output import ago, emit_json, err, out, table, when
from engine.cli.recover import Foreground, approve_hint, outcome
from engine.context import EngineContext
from engine.lifecycle import IncidentState, RunStatus
from engine.records import Approval

APPROVE_HELP = """\
Approve (or --reject) a step parked for approval. Approving queues it: the service's
workers run it after asking every gate again; --now runs it here, in the foreground,
where no service runs (exit codes then as `recovery recover`). --now also runs a step
that was approved earlier and waits queued. The decision records who (--as,
RECOVERY_OPERATOR, or cli:$USER) and the reason.

An approval is bound to the runbook text it was asked under: when the runbook has
changed since (a reload, or the file here), approving is refused, the parked run is
canceled (runbook_changed) and the step is planned again under the new text (with
--now: here, so it parks again at once, exit 3 with the new run to approve).

exit codes: 0 decided (and, with --now, recovered), 1 failed (or ended degraded),
2 no such run, 3 the next step waits for approval, 4 the decision cannot be taken (the
step is not waiting for approval: already decided, expired, canceled; or its incident
is closed; or a worker holds it; or its runbook changed or is not loaded) or a gate
refused or deferred the step.
"""

CANCEL_HELP = """\
Cancel a run or an incident. A running step is asked to stop (playbooks stop at the next
task boundary; python actions cannot be interrupted and finish); a parked or queued step
is canceled; an open incident is closed as canceled.

exit codes: 0 done (or nothing left to cancel), 2 no such run or incident.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pending", parents=parents, help="steps waiting for approval")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_pending)

    p = command(sub, "approve", parents, help="approve or reject a parked step",
                description=APPROVE_HELP)
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--reject", action="store_true", help="say no instead")
    p.add_argument("--reason", "-r", default="", metavar="R", help="why (recorded)")
    p.add_argument("--now", action="store_true",
                   help="run the approved step here, in the foreground")
    p.set_defaults(func=cmd_approve)

    p = command(sub, "cancel", parents, help="cancel a run or an incident", description=CANCEL_HELP)
    p.add_argument("ident", metavar="RUN_ID|INCIDENT_ID")
    p.set_defaults(func=cmd_cancel)


def plan_summary(plan: dict[str, Any]) -> str:
    if not plan:
        return ""
    if plan.get("effect"):         # what the playbook will run there, not its extravars
        what = f"playbook {plan['playbook']}: " + "; ".join(e["text"] for e in plan["effect"])
        values = {}
    elif plan.get("playbook"):
        what = f"playbook {plan['playbook']}"
        values = plan.get("extravars") or {}
    else:
        what = f"action {plan.get('action')}"
        values = plan.get("params") or {}
    if values:
        what += " " + ", ".join(f"{k}={v}" for k, v in values.items())
    if plan.get("verify"):
        what += f"; verify {plan['verify'].get('action')}"
    return what + judged_summary(plan.get("judged"))


def judged_summary(judged: dict[str, Any] | None) -> str:
    """What the step's plan found when it parked, and what an approved run is held to
    (engine.orchestration.step_facts); or that no plan could be made."""
    if not judged:
        return ""
    if judged.get("error"):
        return (f"; NOT PLANNED ({judged['error']}): approved, it runs as the runbook says, "
                "held to nothing counted here")
    said = ", ".join(f"{k}={v}" for k, v in (judged.get("facts") or {}).items())
    pins = ", ".join(f"{k}={v}" for k, v in (judged.get("pins") or {}).items())
    return (f"; plan found {said or 'nothing to report'}"
            + (f"; approved, it is held to {pins}" if pins else ""))


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
    from engine.orchestration.approvals import DecisionError, RunbookChanged, approve, reject

    who = operator(args)
    if args.reject and args.now:
        raise CliError("--now runs an approved step; it cannot go with --reject")
    if args.now and (note := loaded_set_note(ctx)) is not None:   # it runs the files here
        err(note)
    current = ctx.store.get_approval(args.run_id)
    run = ctx.store.get_run(args.run_id)
    if current is None and run is None:
        raise CliError(f"no run {args.run_id} (`recovery pending` lists what waits)", USAGE)
    if current is None:
        err(f"run {args.run_id} never waited for approval (it is {run.status.value})")
        return REFUSED
    if current.status == "pending" and current.expires_at <= now():
        # Nobody may approve what has expired, even where no service runs to expire it.
        from engine.orchestration.approvals import expire_due

        expire_due(ctx)
        current = ctx.store.get_approval(args.run_id) or current
    if current.status == "expired":
        err(f"the approval for run {args.run_id} expired at "
            f"{when(current.decided_at or current.expires_at)}; run `recovery recover` "
            "again to ask anew")
        return REFUSED
    if current.status == "approved" and args.now and not args.reject:
        # Approved earlier (without --now) and queued: run it here.
        if run is None or run.status != RunStatus.QUEUED:
            state = run.status.value if run else "gone"
            err(f"run {args.run_id} was approved by {current.decided_by} and is {state}, "
                "not queued: nothing to run here")
            return REFUSED
        if (closed := _closed_incident(ctx, current)) is not None:
            err(f"run {args.run_id} was approved, but {closed}: nothing to run "
                f"(`recovery cancel {args.run_id}` clears it)")
            return REFUSED
        out(f"run {args.run_id} ({current.strategy} on {current.target}, {current.runbook}) "
            f"was approved by {current.decided_by} at {when(current.decided_at)}; "
            "running it here")
        return _run_now(ctx, args, who)
    if current.status != "pending":
        hint = ""
        if current.status == "approved" and run is not None and run.status == RunStatus.QUEUED:
            hint = (f"; it is queued: run it here with recovery{approve_hint(args)} approve "
                    f"{args.run_id} --now, or drop it with `recovery cancel {args.run_id}`")
        by = f" by {current.decided_by}" if current.decided_by else ""
        err(f"run {args.run_id} is not waiting for approval (approval {current.status}{by})"
            + hint)
        return REFUSED
    if not args.reject and (closed := _closed_incident(ctx, current)) is not None:
        err(f"run {args.run_id} cannot be approved: {closed} "
            f"(`recovery approve {args.run_id} --reject` or `recovery cancel` clears it)")
        return REFUSED
    if not args.now:
        # Queued, the step runs in the service: it is bound to the text in force there,
        # not to the files here (which `recovery reload` has maybe not put in force yet).
        ctx.follow_set_in_force()
    try:
        if args.reject:
            decided = reject(ctx, args.run_id, by=who, reason=args.reason)
        else:
            decided = approve(ctx, args.run_id, by=who, reason=args.reason)
    except RunbookChanged as exc:
        err(str(exc))
        if args.now and current.incident_id:
            return _plan_again(ctx, args, who, current.incident_id)
        err("a running service plans it again at once: `recovery pending` shows the new "
            "run to approve (with --now, this command plans it here)")
        return REFUSED
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


def _closed_incident(ctx: EngineContext, approval: Approval) -> str | None:
    """Words for why the approval's incident takes no step any more, or None if open."""
    if not approval.incident_id:
        return None
    incident = ctx.store.get_incident(approval.incident_id)
    if incident is None:
        return f"its incident {approval.incident_id} is gone"
    if incident.state.is_open:
        return None
    return (f"its incident {incident.id} is {incident.state.value}"
            + (f" ({incident.reason})" if incident.reason else ""))


def _run_now(ctx: EngineContext, args: argparse.Namespace, who: str) -> int:
    """Claim the queued run (so no worker takes it too) and carry its incident on here."""
    from engine.orchestration.approvals import claim
    from engine.orchestration.attempt import advance

    claimed = claim(ctx, args.run_id)
    if claimed is None:
        run = ctx.store.get_run(args.run_id)
        if run is not None and run.status == RunStatus.QUEUED:
            err(f"run {args.run_id} is queued but a worker holds it: follow it with "
                f"`recovery show {args.run_id} --follow`")
        else:
            state = run.status.value if run else "gone"
            err(f"run {args.run_id} is {state}, not queued: a worker may have taken it")
        return REFUSED
    if not claimed.incident_id:
        err(f"run {claimed.id} belongs to no incident: nothing to resume")
        return FAILED
    with Foreground(ctx, who) as fg:
        fg.incident_ids.append(claimed.incident_id)
        incident = advance(ctx, claimed.incident_id, resume=claimed, on_run=fg.on_run)
        if fg.interrupted:
            fg.cancel_incident()
            return FAILED
    after = ctx.store.get_run(claimed.id)
    if after is not None and after.status == RunStatus.CANCELED:
        err(f"run {claimed.id} canceled: {after.reason}")
        return FAILED
    code, words = outcome(ctx, incident, approve_hint(args))
    (out if code in (OK, PARKED) else err)(words)
    return code


def _plan_again(ctx: EngineContext, args: argparse.Namespace, who: str,
                incident_id: str) -> int:
    """``approve --now`` of a step whose runbook changed: plan the step again here, under
    the new text (it parks again where it needs approval: exit 3 with the new run)."""
    from engine.orchestration.attempt import advance

    # Taken back as it was handed over (engine.orchestration.approvals.replan_changed): the same
    # request, its step, --strategy and --force; approving is not asking for a new one.
    if ctx.store.update_incident(incident_id, expect=[IncidentState.OPEN],
                                 state=IncidentState.REMEDIATING, next_try_at=None) is None:
        current = ctx.store.get_incident(incident_id)
        if current is None or not current.state.is_open:   # the step is gone: said above
            return REFUSED
        err(f"incident {incident_id} was taken up by a worker: `recovery pending` shows "
            "the step once it is parked again")
        return REFUSED
    with Foreground(ctx, who) as fg:
        fg.incident_ids.append(incident_id)
        incident = advance(ctx, incident_id, on_run=fg.on_run)
        if fg.interrupted:
            fg.cancel_incident()
            return FAILED
    code, words = outcome(ctx, incident, approve_hint(args))
    (out if code in (OK, PARKED) else err)(words)
    return code


def cmd_cancel(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.orchestration.approvals import DecisionError, cancel

    if ctx.store.get_run(args.ident) is None and ctx.store.get_incident(args.ident) is None:
        raise CliError(f"no run or incident {args.ident} (`recovery history` and "
                       "`recovery incidents` list them)", USAGE)
    try:
        said = cancel(ctx, args.ident, by=operator(args))
    except DecisionError as exc:
        err(str(exc))
        return REFUSED
    out(said)
    return OK
