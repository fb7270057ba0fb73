"""``recovery test``: what would happen for a component or an alert, changing nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.cli.common import CliError, command, loaded_set_note, runbooks
from engine.cli.exits import OK, USAGE
from engine.cli.output import emit_json, err, indented, indented_table, out, when
from engine.context import EngineContext

HELP = """\
Plan only: which runbook, which target (or why it is refused), which failure type,
which strategies apply, what every gate answers now, and what would happen
(allow, defer, park for approval, refuse). Nothing is run or recorded. A first step
whose approval depends on facts of its plan (`approval: {when: ...}`) is planned (its
action's plan, its playbook under --check) so the plan can say whether approval would be
asked, and why: the fact, its value and the rule.

--alert FILE reads an Alertmanager webhook notification (with `alerts`) or one alert
object (with `labels`), as JSON, and plans each alert; when several runbooks match it,
each is listed with why the first one wins (priority, then file name).

The plan reads the files on disk afresh; where a running service has another set in
force (`recovery reload` not run since they changed), a note on stderr says so.

exit codes: 0 the plan was printed (whatever it says), 2 unreadable file or usage error.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "test", parents, help="plan only: what would happen", description=HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--component", "-c", metavar="C", help="component or runbook name")
    which.add_argument("--alert", metavar="FILE", help="Alertmanager webhook JSON ('-': stdin)")
    p.add_argument("--failure-type", "-f", metavar="F", help="with --component")
    p.add_argument("--target", "-t", metavar="T",
                   help="with --component: a host, group or pattern, as for `recover` "
                        "(default: localhost)")
    p.add_argument("--strategy", "-s", metavar="S", help="with --component: one strategy")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_test, housekeeping=False)  # plan only: writes nothing


def read_alerts(path: str) -> list[dict[str, Any]]:
    """The alerts in a webhook notification or a single alert object."""
    import sys

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("alerts"), list):
        alerts = data["alerts"]
    elif isinstance(data, dict) and isinstance(data.get("labels"), dict):
        alerts = [data]
    elif isinstance(data, list) and all(isinstance(a, dict) and "labels" in a for a in data):
        alerts = data
    else:
        raise CliError(f"{path}: neither an Alertmanager notification (with `alerts`) nor an "
                       "alert (with `labels`)")
    good = [a for a in alerts if isinstance(a, dict) and isinstance(a.get("labels"), dict)]
    if not good:
        raise CliError(f"{path}: no alert with `labels` in it")
    return good


def cmd_test(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.orchestration.planner import plan
    from engine.orchestration.triggers import TriggerRequest

    runbooks(ctx)
    if (note := loaded_set_note(ctx)) is not None:   # the plan is of the files, not the service
        err(note)
    plans: list[dict[str, Any]] = []
    if args.alert:
        if args.failure_type or args.target or args.strategy:
            raise CliError("--failure-type, --target and --strategy go with --component")
        for alert in read_alerts(args.alert):
            labels = {str(k): str(v) for k, v in alert["labels"].items()}
            annotations = {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()}
            entry: dict[str, Any] = {"alert": labels.get("alertname", "?"), "labels": labels,
                                     "status": alert.get("status", "firing")}
            if entry["status"] == "resolved":
                entry.update(runbook=None, would="nothing",
                             reason="a resolved alert never starts a remediation (it closes "
                                    "the incident and cancels pending approvals)")
            else:
                entry.update(plan(ctx, TriggerRequest(
                    labels=labels, annotations=annotations, trigger="alert",
                    fingerprint=alert.get("fingerprint") or None)))
            plans.append(_would(entry))
    else:
        from engine.context import UnknownRunbook

        try:
            result = plan(ctx, TriggerRequest(
                runbook=args.component, target=args.target or "localhost",
                failure_type=args.failure_type, strategy=args.strategy, trigger="manual"),
                expand=True)
        except UnknownRunbook as exc:
            raise CliError(str(exc.args[0]), USAGE) from None
        plans.append(_would(result))
    if args.json:
        emit_json(plans if args.alert else plans[0])
        return OK
    for i, entry in enumerate(plans):
        if i:
            out()
        _print(entry)
    return OK


def _would(entry: dict[str, Any]) -> dict[str, Any]:
    """Fill in ``would`` where the planner could not ask the gates."""
    if "would" in entry:
        return entry
    if entry.get("runbook") is None:
        entry["would"] = "nothing"
    elif entry.get("refused"):
        entry["would"] = "refuse"
        entry.setdefault("reason", entry["refused"])
    elif not entry.get("first_step"):
        entry["would"] = "nothing"
        entry.setdefault("reason", f"no strategy handles failure type "
                                   f"{entry.get('failure_type')!r}")
    return entry


def _approval_column(step: dict[str, Any]) -> str:
    """``required``, the conditions that ask (``when snapshot_bytes over 1 GB``), and
    whether the requester may approve it."""
    said = "required" if step["approval"] else ""
    if step.get("approval_when"):
        said = "when " + " or ".join(step["approval_when"])
    if step.get("allow_self") is False:
        said += " (second person)"
    return said


def _print(entry: dict[str, Any]) -> None:
    if "alert" in entry:
        out(f"alert:        {entry['alert']} ({entry.get('status', 'firing')})")
    if entry.get("runbook") is None:
        out(f"runbook:      none — {entry.get('reason', 'no runbook matches')}")
        out(f"would:        {entry['would']}")
        return
    out(f"runbook:      {entry['runbook']} (component {entry['component']}, mode "
        f"{entry['mode']}, {entry['file']})")
    if entry.get("concurrency") == "per_component":
        out(f"concurrency:  per_component: one remediation of {entry['component']} at a "
            f"time, on any target (lock component:{entry['component']})")
    matched = entry.get("matched") or []
    if len(matched) > 1:
        out(f"matched:      {len(matched)} runbooks; the highest priority wins, then the "
            "file name:")
        out(indented_table(matched, [
            ("", lambda m: "->" if m["chosen"] else ""),
            ("RUNBOOK", lambda m: m["runbook"]),
            ("PRIORITY", lambda m: m["priority"]),
            ("FILE", lambda m: Path(m["file"]).name),
            ("WHY NOT", lambda m: m["why"]),
        ]))
    target = entry.get("target") or f"refused — {entry.get('refused')}"
    if entry.get("per_host") is not None or len(entry.get("hosts") or []) > 1:
        target = f"{target} -> {', '.join(entry['hosts'])}"
    out(f"target:       {target}")
    out(f"failure type: {entry.get('failure_type') or '(any)'}")
    if entry.get("open_incident"):
        out(f"incident:     {entry['open_incident']} is open (this would attach to it)")
    out("strategies:")
    rows = entry.get("strategies", [])
    out(indented_table(rows, [
        ("", lambda s: "->" if s["strategy"] == entry.get("first_step") else
         ("  " if s["applies"] else " x")),
        ("STRATEGY", lambda s: s["strategy"]),
        ("KIND", lambda s: s["kind"]),
        ("RUNS", lambda s: s["runs"]),
        ("APPROVAL", _approval_column),
        ("WHEN", lambda s: ", ".join(s["when"]) or "any"),
        ("APPLIES", lambda s: "yes" if s["applies"] else "no"),
    ]))
    for step in rows:
        if step.get("effects"):
            out(f"{step['strategy']} would run (per host, from the inventory):")
            out(indented("\n".join(e["text"] for e in step["effects"])))
    if entry.get("gates"):
        out(f"gates now (first step: {entry.get('first_step')}):")
        out(indented_table(entry["gates"], [
            ("GATE", lambda g: g["gate"]),
            ("ANSWER", lambda g: g["verdict"]),
            ("UNTIL", lambda g: when(g["until"]) if g.get("until") else ""),
            ("REASON", lambda g: g.get("reason", "")),
        ]))
    if entry.get("approval"):
        answer = entry["approval"]
        out(f"approval:     {'would be asked' if answer['asked'] else 'not needed'} — "
            f"{answer['reason']}")
    if entry.get("per_host"):
        out(f"hosts (first step: {entry.get('first_step')}; each its own incident; a host "
            "whose verify passes is left alone unless --include-healthy):")
        out(indented_table(entry["per_host"], [
            ("HOST", lambda h: h["target"]),
            ("WOULD", lambda h: h["would"]),
            ("REASON", lambda h: h.get("reason", "")),
        ]))
    if entry.get("batches"):
        out(f"batches:      {len(entry['batches'])} (one Ansible run each, verified before the "
            f"next; a batch with more than {entry['max_fail_percentage']:g}% of its hosts "
            "failing stops the rest):")
        for n, hosts in enumerate(entry["batches"], 1):
            out(f"  {n}. {', '.join(hosts)}")
    why = f" — {entry['reason']}" if entry.get("reason") and entry["would"] in (
        "nothing", "refuse") else ""
    verdict = {"allow": "allow (run the first step now)", "defer": "defer (ask again later)",
               "park": "park for approval", "refuse": "refuse"}.get(entry["would"],
                                                                   entry["would"])
    out(f"would:        {verdict}{why}")
