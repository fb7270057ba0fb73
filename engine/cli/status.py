"""``recovery status`` (engine.reporting.reports, shared with the HTTP API), its
``--by-strategy`` figures (engine.reporting.strategies) and ``recovery metrics``."""

from __future__ import annotations

import argparse

from engine.cli.common import CliError, duration_arg, now
from engine.cli.exits import FAILED, OK
from engine.cli.output import ago, emit_json, err, indented_table, out, span, when
from engine.cli.report_parts import capability_words, refused_table
from engine.context import EngineContext


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", parents=parents,
                       help="health, success rate, MTTR; cooldowns, locks, switches",
                       description="Per component: health, success rate and mean time to "
                       "recover over `status_window`, open incidents; alerts a kill switch "
                       "refused that still fire (health `refused`); then cooldowns, locks, "
                       "degraded modes, kill switches and approvals waiting. First: the set of "
                       "runbooks, playbooks and inventory in force on this replica (its hash, when "
                       "and by whom it was loaded) and whether the files on disk differ from "
                       "it; the replicas sharing the store, each one's set and when it was "
                       "last seen, with a warning when live ones run different sets. "
                       "--by-strategy: per component and strategy instead (docs/operations.md, "
                       "Figures per strategy).")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--by-strategy", action="store_true",
                   help="per component and strategy: attempts, success rate, median and "
                   "p95 time to recover, last failure; failing strategies first")
    p.add_argument("--window", type=duration_arg, metavar="DURATION",
                   help="with --by-strategy: the window (default: status_window)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("metrics", parents=parents, help="Prometheus metrics (text or --json)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_metrics)


def cmd_status(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.reporting.reports import status_report

    t = now()
    if args.by_strategy:
        return _by_strategy(ctx, args, t)
    if args.window is not None:
        raise CliError("--window goes with --by-strategy (the components' figures use "
                       "status_window)")
    report = status_report(ctx, t)
    if args.json:
        emit_json(report)
        return OK
    store = report["store"]
    out(f"store: {store['backend']} {store['url']} "
        f"({'reachable' if store['reachable'] else 'UNREACHABLE'})")
    loaded = report.get("loaded_set")
    if loaded is not None:
        out(_loaded_set(loaded, t))
    replicas = report.get("replicas")
    if replicas is not None:
        out(_replicas(replicas, t))
        if replicas["warning"]:
            out(f"warning: {replicas['warning']}")
    for problem in report["problems"]:
        out(f"problem: {problem}")
    if not store["reachable"]:
        return FAILED
    out(f"\ncomponents (last {span(report['window'])}):")
    out(indented_table(report["components"], [
        ("COMPONENT", lambda s: s["component"]),
        ("HEALTH", lambda s: s["health"] + (f" ({', '.join(s['degraded_modes'])})"
                                            if s["degraded_modes"] else "")),
        ("SUCCESS", lambda s: f"{s['success_rate'] * 100:.0f}% ({s['succeeded']}/"
         f"{s['succeeded'] + s['failed']})" if s["success_rate"] is not None else "-"),
        ("MTTR", lambda s: span(s["mttr_seconds"]) if s["mttr_seconds"] is not None
         else "-"),
        ("RECOVERED", lambda s: s["recovered"]),
        ("FAILED", lambda s: s["incidents_ended"].get("failed", 0)),
        ("OPEN", lambda s: s["open_incidents"]),
        ("LAST INCIDENT", lambda s: _last(s["last_incident"], t)),
    ], empty="no runbooks loaded"))
    if report["refused_alerts"]:
        out("\nrefused by a kill switch, still firing (`recovery enable ... --replay` runs "
            "them):")
        out(refused_table(report["refused_alerts"], t))
    out("\ncooldowns:")
    out(indented_table(report["cooldowns"], [
        ("RUNBOOK", lambda c: c["runbook"]),
        ("TARGET", lambda c: c["target"]),
        ("ATTEMPTS", lambda c: f"{c['attempts']}/{c['max_attempts']} in {span(c['window'])}"),
        ("NEXT ALLOWED", lambda c: f"{when(c['next_allowed_at'])} ({ago(c['next_allowed_at'], t)})"
         if c["cooling"] else "now"),
        ("REASON", lambda c: c["reason"] or ""),
    ], empty="none"))
    out("\nlocks:")
    out(indented_table(report["locks"], [
        ("TARGET", lambda k: k["target"]),
        ("HOLDER", lambda k: k["holder"]),
        ("RUN", lambda k: k["run_id"]),
        ("COMPONENT", lambda k: k["component"]),
        ("SINCE", lambda k: ago(k["acquired_at"], t)),
        ("LEASE", lambda k: ago(k["expires_at"], t)),
        ("SERIALIZES", lambda k: k.get("serializes", "")),
    ], empty="none"))
    out("\ndegraded modes:")
    for mode in report["degraded_modes"]:
        state = "ON" if mode["active"] else "off"
        why = ""
        if mode["reasons"]:
            why = " — " + "; ".join(
                f"{r['key']}{' on ' + r['target'] if r['target'] else ''} by "
                f"{r['created_by'] or '?'} {ago(r['since'], t)}" for r in mode["reasons"])
        out(f"  {mode['mode']}: {state}{why}")
        if mode["capabilities"]:
            out(f"    {capability_words(mode)}")
    if not report["degraded_modes"]:
        out("  none configured")
    out("\nkill switches:")
    out(indented_table(report["switches"], [
        ("SCOPE", lambda s: s["scope"]),
        ("UNTIL", lambda s: f"{when(s['until'])} ({ago(s['until'], t)})" if s["until"]
         else "until enabled"),
        ("BY", lambda s: s["created_by"]),
        ("REASON", lambda s: s["reason"]),
    ], empty="none (auto-recovery on)"))
    pending = report["pending_approvals"]
    out(f"\npending approvals: {pending}" + (" (recovery pending)" if pending else ""))
    return OK


def _by_strategy(ctx: EngineContext, args: argparse.Namespace, t: float) -> int:
    from engine.reporting.strategies import strategy_report

    report = strategy_report(ctx, args.window, t)
    if args.json:
        emit_json(report)
        return OK
    for problem in report["problems"]:
        out(f"problem: {problem}")
    out(f"strategies (last {span(report['window'])}; {report['failing_rule']}):")
    out(indented_table(report["strategies"], [
        ("COMPONENT", lambda s: s["component"]),
        ("STRATEGY", lambda s: s["strategy"] + ("" if s["loaded"] else " (not loaded)")),
        ("ATTEMPTS", lambda s: s["attempts"]),
        ("SUCCESS", lambda s: f"{s['success_rate'] * 100:.0f}% ({s['succeeded']}/"
         f"{s['attempts']})" if s["success_rate"] is not None else "-"),
        ("MEDIAN", lambda s: span(s["median_seconds"])),
        ("P95", lambda s: span(s["p95_seconds"])),
        ("FLAG", lambda s: "FAILING" if s["failing"] else ""),
        ("LAST FAILURE", lambda s: f"{ago(s['last_failure']['at'], t)}: "
         f"{s['last_failure']['reason']}" if s["last_failure"] else "-"),
    ], empty="no strategies loaded or tried"))
    return OK


def _loaded_set(loaded: dict, t: float) -> str:
    if not loaded["sha256"]:
        return ("loaded set: none recorded (`recovery serve` records one at its start, "
                "`recovery reload` whenever the files change)")
    return (f"loaded set: {loaded['sha256'][:12]} loaded {when(loaded['loaded_at'])} "
            f"({ago(loaded['loaded_at'], t)}) by {loaded['loaded_by']}: "
            f"{len(loaded['runbooks'])} runbooks, {loaded['files']} files"
            + ("; the files on disk DIFFER" if loaded["files_differ"] else
               "; the files on disk are the same"))


def _replicas(replicas: dict, t: float) -> str:
    """This replica's name, then each replica seen: its set, when last seen."""
    lines = [f"replica: {replicas['this']}"]
    for line in replicas["seen"]:
        sha = line["set_sha256"][:12] if line["set_sha256"] else "the files on disk"
        state = "live" if line["live"] else "NOT SEEN LATELY"
        mark = " (this one)" if line["replica"] == replicas["this"] else ""
        lines.append(f"  {line['replica']}{mark}: set {sha}, last seen "
                     f"{ago(line['seen_at'], t)} ({state})")
    if not replicas["seen"]:
        lines.append("  no replica seen (the service's workers write here once running)")
    return "\n".join(lines)


def _last(last: dict | None, t: float) -> str:
    if not last:
        return "-"
    return f"{last['state']} on {last['target']} {ago(last['opened_at'], t)}"


def cmd_metrics(ctx: EngineContext, args: argparse.Namespace) -> int:
    try:
        from engine.reporting import metrics
    except ImportError as exc:
        err(f"metrics are not available in this build: {exc}")
        return FAILED
    if args.json:
        emit_json(metrics.render_json(ctx))
    else:
        text = metrics.render_text(ctx)
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
    return OK
