"""``recovery incidents``, ``history`` and ``show``: reading the record.

``history`` reads the runs index only (one indexed query, no artifacts per row), so it
stays fast over a large history; ``show`` reads one run's artifacts directory, or, for a
run another replica ran, the account it kept in the store (engine.reporting.run_account).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from engine.cli.common import command, duration_arg, now, positive_int
from engine.cli.exits import OK, USAGE
from engine.cli.output import (
    ago,
    emit_json,
    emit_json_line,
    err,
    indented,
    indented_table,
    key_values,
    out,
    span,
    table,
    when,
)
from engine.context import EngineContext
from engine.lifecycle import RunStatus

SHOW_HELP = """\
A run id: its record (run.json), its events in order (each event's output), then its
stdout. --follow keeps printing new events until the run has ended (a run waiting for
approval is followed until it is decided and done, or until its incident closes: then it
will never go on); Ctrl-C stops following (exit 0).

An incident id or an alert's fingerprint: its timeline, in order, to see why something
did or did not happen: every delivery of the alert and what the intake made of it,
the incident opening and ending, every gate's answer (refusals, deferrals, approvals
asked), each run and its verify, and the kill switches that covered it.

exit codes: 0 shown, 2 no run, incident or alert fingerprint by that name.
"""
POLL = 0.5


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("incidents", parents=parents, help="incidents, newest first")
    p.add_argument("--open", action="store_true", help="open ones only")
    p.add_argument("--component", "-c", metavar="C")
    p.add_argument("--limit", "-n", type=positive_int, default=50, metavar="N")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_incidents)

    p = sub.add_parser("history", parents=parents, help="runs, newest first")
    p.add_argument("--component", "-c", metavar="C")
    p.add_argument("--last", type=duration_arg, metavar="DURATION",
                   help="only runs started within this (e.g. 24h, 30m; default: all)")
    p.add_argument("--status", metavar="S", choices=[s.value for s in RunStatus],
                   help="only runs with this status")
    p.add_argument("--target", "-t", metavar="T", help="only runs on this host")
    p.add_argument("--limit", "-n", type=positive_int, default=50, metavar="N",
                   help="at most N runs (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_history)

    p = command(sub, "show", parents,
                help="one run (record, events, output), or an incident's or an alert's "
                "timeline", description=SHOW_HELP)
    p.add_argument("run_id", metavar="RUN_ID|INCIDENT_ID|FINGERPRINT")
    p.add_argument("--follow", "-f", action="store_true", help="print new events until done")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output (with --follow: one JSON object per line)")
    p.set_defaults(func=cmd_show)


def cmd_incidents(ctx: EngineContext, args: argparse.Namespace) -> int:
    t = now()
    incidents = ctx.store.list_incidents(open_only=args.open, component=args.component,
                                         limit=args.limit)
    if args.json:
        emit_json([i.to_dict() for i in incidents])
        return OK
    out(table(incidents, [
        ("INCIDENT", lambda i: i.id),
        ("RUNBOOK", lambda i: i.runbook),
        ("TARGET", lambda i: i.target),
        ("STATE", lambda i: i.state.value),
        ("OPENED", lambda i: f"{when(i.opened_at)} ({ago(i.opened_at, t)})"),
        ("TOOK", lambda i: span(i.closed_at - i.opened_at) if i.closed_at else
         f"open {span(t - i.opened_at)}"),
        ("ATTEMPTS", lambda i: i.attempts),
        ("BY", lambda i: i.requested_by or i.trigger),
        ("REASON", lambda i: i.reason),
    ], empty="no incidents" + (" open" if args.open else "")))
    return OK


def cmd_history(ctx: EngineContext, args: argparse.Namespace) -> int:
    t = now()
    runs = ctx.store.query_runs(component=args.component,
                                since=t - args.last if args.last is not None else None,
                                status=args.status, target=args.target, limit=args.limit)
    if args.json:
        emit_json([r.to_dict() for r in runs])
        return OK
    out(table(runs, [
        ("STARTED", lambda r: when(r.started_at)),
        ("RUN", lambda r: r.id),
        ("COMPONENT", lambda r: r.component),
        ("STRATEGY", lambda r: r.strategy),
        ("TARGET", lambda r: r.target),
        ("STATUS", lambda r: r.status.value + (" (check)" if r.check_mode else "")),
        ("TOOK", lambda r: span(r.duration) if r.duration is not None else ""),
        ("TRIGGER", lambda r: r.trigger),
        ("BY", lambda r: _who(r)),
        ("REASON", lambda r: f"{r.count}x (the first:) {readable_reason(r.reason)}"
         if r.count > 1 else readable_reason(r.reason)),
    ], empty="no runs"))
    return OK


# A program's own log prefix at the start of its words (after "rc 1: " and the like):
# redis's "12294:C 06 Dec 2026 19:07:31.123 # ", or an ISO time stamp with a level.
_LOG_PREFIX = re.compile(
    r"(?:(?<=^)|(?<=: )|(?<=; ))"
    r"(?:\d+:[A-Z] \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)? [.*#-] "
    r"|\[?\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]? "
    r"(?:\[?(?:DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|FATAL|CRITICAL)\]?:? )?)")


def readable_reason(reason: str | None) -> str | None:
    """A run's reason for a person's table: log prefixes of the programs it quotes
    (process id, time stamp, level) dropped, so their own words come before the table
    cuts the line. The record (``--json``, ``show``) keeps the words as they were."""
    return _LOG_PREFIX.sub("", reason) if reason else reason


def _who(run: Any) -> str:
    who = run.requested_by or ""
    if run.approved_by:
        who += f", approved by {run.approved_by}"
    if run.forced:
        who += ", forced"
    return who.strip(", ")


def cmd_show(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.reporting.run_account import read_run

    try:
        view = read_run(ctx, args.run_id)
    except ValueError:   # no run is named so: an incident or a fingerprint may be
        return _show_timeline(ctx, args)
    if view is None:
        return _show_timeline(ctx, args)
    record = view.record
    if args.json and not args.follow:
        emit_json({"run": record.to_dict() if record else None, "run_json": view.run_json,
                   "status": view.status, "rc": view.rc, "events": view.events,
                   "stdout": view.stdout, "artifacts": view.where()})
        return OK
    if args.json:
        emit_json_line({"type": "run", "run": record.to_dict() if record else None,
                        "run_json": view.run_json, "artifacts": view.where()})
    else:
        _print_record(record, view.run_json)
        if view.note:
            out(f"  artifacts: {view.note}")
        out("\nevents:")
        if not view.events and not args.follow:
            out("  (none)")
    last = 0
    for event in view.events:
        _print_event(event, args.json)
        last = max(last, int(event.get("counter") or 0))
    if args.follow:
        return _follow(ctx, args, last)
    out("\nstdout:")
    text = view.stdout
    out(indented(text.rstrip("\n")) if text.strip() else "  (empty)")
    return OK


def _show_timeline(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.reporting.timeline import timeline

    found = timeline(ctx, args.run_id)
    if found is None:
        err(f"no run, incident or alert fingerprint {args.run_id}")
        return USAGE
    if args.follow:
        err("--follow follows a run: give a RUN_ID (the timeline lists them)")
        return USAGE
    if args.json:
        emit_json(found.to_dict())
        return OK
    t = now()
    if "fingerprint" in found.subject:
        out(f"alert {found.subject['fingerprint']}: "
            f"{len(found.incidents)} incident(s)")
    for incident in found.incidents:
        later = (f" (next try {when(incident.next_try_at)})"
                 if incident.state.value == "open" and incident.next_try_at else "")
        out(f"incident {incident.id} ({incident.runbook} on {incident.target}): "
            f"{incident.state.value}{later} — {incident.reason}")
    out("")
    for entry in found.entries:
        out(f"{when(entry.at)}  {entry.kind:<9} {entry.what}")
    if not found.entries:
        out("(nothing recorded)")
    out(f"\n(now {when(t)}; `recovery show RUN_ID` for a run's record and output)")
    return OK


def _follow(ctx: EngineContext, args: argparse.Namespace, last: int) -> int:
    from engine.artifacts import RunArtifacts

    artifacts = RunArtifacts(ctx.artifacts_dir, args.run_id)
    try:
        while True:
            # The status first, then the events: every event written before the run
            # ended is read in this same pass, so stopping on a final status loses none.
            record = ctx.store.get_run(args.run_id)
            final = record is None or record.status.is_final
            stuck = None if final else cannot_progress(ctx, record)
            for event in _events_after(ctx, artifacts, last):
                _print_event(event, args.json)
                last = max(last, int(event.get("counter") or 0))
            if final or stuck:
                break
            time.sleep(POLL)
    except KeyboardInterrupt:
        return OK
    status = record.status.value if record else artifacts.read_status()
    reason = stuck or (record.reason if record else "")
    if args.json:
        emit_json_line({"type": "end", "status": status, "reason": reason,
                        "run": record.to_dict() if record else None})
    else:
        out(f"\nended: {status}" + (f": {reason}" if reason else ""))
    return OK


def _events_after(ctx: EngineContext, artifacts: Any, last: int) -> list[dict[str, Any]]:
    """The run's events numbered after ``last``: from its directory here, else (a run of
    another replica) from the account it keeps in the store once it has ended."""
    if artifacts.exists():
        return list(artifacts.read_events(after=last))
    account = ctx.store.get_run_account(artifacts.run_id) or {}
    return [e for e in account.get("events") or [] if int(e.get("counter") or 0) > last]


def cannot_progress(ctx: EngineContext, run: Any) -> str | None:
    """Why a run waiting for approval (or queued after it) will never go on: its incident
    has closed; None while it may still run."""
    if run.status not in (RunStatus.PENDING_APPROVAL, RunStatus.QUEUED) or not run.incident_id:
        return None
    incident = ctx.store.get_incident(run.incident_id)
    if incident is not None and incident.state.is_open:
        return None
    state = incident.state.value if incident else "gone"
    why = f" ({incident.reason})" if incident is not None and incident.reason else ""
    return f"its incident {run.incident_id} is {state}{why}: this run will not go on"


def _print_record(record: Any, run_json: dict[str, Any]) -> None:
    merged = {**run_json, **(record.to_dict() if record else {})}
    t = now()
    main = [
        ("run", merged.get("id")),
        ("status", merged.get("status")),
        ("component", merged.get("component")),
        ("runbook", merged.get("runbook")),
        ("strategy", f"{merged.get('strategy')} ({merged.get('kind', 'action')})"),
        ("target", merged.get("target")),
        ("incident", merged.get("incident_id")),
        ("trigger", merged.get("trigger")),
        ("requested by", merged.get("requested_by")),
        ("approved by", merged.get("approved_by")),
        ("forced", "yes (--force)" if merged.get("forced") else "no"),
        ("check mode", "yes" if merged.get("check_mode") else "no"),
        ("started", _when(merged.get("started_at"), t)),
        ("finished", _when(merged.get("finished_at"), t)),
        ("duration", span(merged.get("duration")) if merged.get("duration") is not None
         else None),
        ("reason", merged.get("reason")),
        ("fingerprint", merged.get("fingerprint")),
        ("counted", _counted(merged)),
        ("runbook sha256", merged.get("runbook_sha256")),
        ("playbook sha256", merged.get("playbook_sha256")),
    ]
    out("run.json:")
    out(key_values(main, "  "))
    for gate in run_json.get("gates") or []:
        until = f" until {when(gate['until'])}" if gate.get("until") else ""
        out(f"  gate {gate.get('gate')}: {gate.get('verdict')}{until}"
            + (f" — {gate['reason']}" if gate.get("reason") else ""))
    hosts = merged.get("hosts") or []
    if hosts:
        out("  hosts:")
        out(indented_table(hosts, [("HOST", lambda h: h.get("host")),
                                   ("OUTCOME", lambda h: h.get("outcome")),
                                   ("REASON", lambda h: h.get("reason"))],
                           "    ", last_width=0))   # reasons whole, as recorded
    if run_json.get("labels"):
        out("  labels: " + ", ".join(f"{k}={v}" for k, v in run_json["labels"].items()))
    if run_json.get("plan"):
        out("  plan: " + json.dumps(run_json["plan"], default=str))
    if run_json.get("approval"):
        a = run_json["approval"]
        out(f"  approval: {a.get('status')} by {a.get('decided_by')} at "
            f"{_when(a.get('decided_at'), t)}" + (f": {a['reason']}" if a.get("reason") else ""))
    if run_json.get("result"):
        out("  result: " + json.dumps(run_json["result"], default=str))


def _counted(record: dict[str, Any]) -> str | None:
    """A refusal record that stands for several (engine.orchestration.refusals): how many, which."""
    count = record.get("count") or 1
    if count <= 1:
        return None
    listed = record.get("fingerprints") or []
    more = f" (the first {len(listed)} listed)" if len(listed) < count else ""
    return (f"{count} refusals of this minute, the first's fields above; fingerprints"
            f"{more}: {', '.join(listed) or '-'}")


def _when(ts: Any, t: float) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return f"{when(ts)} ({ago(ts, t)})"


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json_line({"type": "event", **event})
        return
    created = str(event.get("created", ""))[:19].replace("T", " ")
    head = f"  #{event.get('counter')}  {created}Z  {event.get('event')}"
    stdout = str(event.get("stdout") or "").strip("\n")
    if not stdout:
        out(head)
    elif "\n" not in stdout:
        out(f"{head}  {stdout}")
    else:
        out(head)
        out(indented(stdout, "      "))
