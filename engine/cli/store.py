"""``recovery store migrate --to redis://...``: an install's SQLite state moved to a Redis
store, so that replicas sharing it keep its history and safety state
(engine.store.migrate; docs/operations.md, Moving to Redis)."""

from __future__ import annotations

import argparse

from engine.cli.common import CliError, command
from engine.cli.exits import FAILED, OK, REFUSED, USAGE
from engine.cli.output import emit_json, err, out
from engine.context import EngineContext

MIGRATE_HELP = """\
Copy this install's state from its SQLite store (the configured state_url, or --from)
into a Redis store (--to; a password from RECOVERY_REDIS_PASSWORD, never shown): open
incidents and their attempts (cooldowns go on counting), approvals pending and decided,
kill switches, degraded modes, every run with its hosts and refusal counts, metrics,
kept deliveries, resolve marks, the audit log and shared values. Locks are not copied
(the leases of the stopped service). The source is only read.

Refused, nothing written: while a service works on the source (runs running, alerts
journaled and not processed: stop the service and let the journal drain); when the
target already holds state under its prefix (--replace drops it first; nothing is ever
merged); when the target server's settings would lose state. The target is marked
incomplete until every kind's count, read back, equals the source's: `recovery status`
on it says so, and a rerun needs --replace.

exit codes: 0 copied and verified (or --check: would copy), 1 failed midway (target
marked incomplete) or the target unreachable, 2 wrong source or target, unsafe server
settings, 4 refused (service running, target holds state).
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("store", help="the state store: migrate it to Redis")
    verbs = group.add_subparsers(dest="store_command", metavar="VERB", required=True)
    p = command(verbs, "migrate", parents, help="copy a SQLite store's state into Redis",
                description=MIGRATE_HELP)
    p.add_argument("--to", required=True, metavar="URL",
                   help="the Redis store: redis://host:port/db[?prefix=P] (or rediss://)")
    p.add_argument("--from", dest="source", metavar="URL",
                   help="the SQLite store: sqlite:///PATH (default: the configured state_url)")
    p.add_argument("--check", action="store_true",
                   help="dry run: count what would be copied, check both ends, write nothing")
    p.add_argument("--replace", action="store_true",
                   help="drop whatever the target holds under its prefix first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_migrate, housekeeping=False)   # the source is only read


def cmd_migrate(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.store.migrate import (
        MigrationFailed,
        MigrationRefused,
        migrate,
        sqlite_source,
    )

    try:
        source = sqlite_source(args.source or ctx.config.state_url, ctx.config.base_dir)
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    try:
        report = migrate(source, args.to, replace=args.replace, check=args.check,
                         lease=ctx.config.lock_ttl)
    except MigrationRefused as exc:
        err("recovery store migrate: refused, nothing written: " + "; ".join(exc.reasons))
        return USAGE if exc.usage else REFUSED
    except MigrationFailed as exc:
        err(f"recovery store migrate: failed, the target is marked incomplete: {exc}")
        return FAILED
    if args.json:
        emit_json({"source": report.source, "target": report.target, "check": args.check,
                   "copied": report.copied, "counts": report.counts,
                   "read_back": report.read_back, "replaced_keys": report.replaced_keys,
                   "held_keys": report.held_keys})
        return OK
    verb = "would copy" if args.check else "copied"
    out(f"{verb} {report.source} -> {report.target}")
    for kind, n in report.counts.items():
        back = "" if args.check else f"  (read back: {report.read_back.get(kind)})"
        out(f"  {kind:<20} {n}{back}")
    if report.replaced_keys:
        out(f"replaced: {report.replaced_keys} keys the target held were dropped first")
    if args.check:
        held = (f"; the target holds {report.held_keys} keys: --replace would drop them"
                if report.held_keys else "")
        out(f"check only: nothing written{held}")
    else:
        out("verified: every count read back from the target equals the source's; "
            "locks were not copied")
    return OK
