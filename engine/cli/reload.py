"""``recovery reload``: validate the runbooks, playbooks and inventory as one set and put
it in force in the running service (engine.runbooks.reload)."""

from __future__ import annotations

import argparse

from engine.cli.common import command, operator
from engine.cli.exits import OK, USAGE
from engine.cli.output import emit_json, err, out, when
from engine.context import EngineContext

HELP = """\
Validate the runbooks, the playbooks (ansible-playbook --syntax-check) and the
inventory as one set and, only if all of it is valid, put it in force: it is copied
under RECOVERY_HOME/sets/ and recorded in the store (its hash, when, who), and every
process of a running service switches to it before its next claim or request; a step
already running finishes on the set it started with. A set with any problem is refused
whole, each problem printed, and the set in force stays. Where no service runs, the set
is recorded all the same (`recovery status` shows it); `recovery serve` puts the files
on disk in force when it starts. SIGHUP to `recovery serve` and POST /api/v1/reload do
the same.

exit codes: 0 in force (or already was), 2 refused: something is invalid (each problem
printed), or the configuration cannot be read.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "reload", parents,
                help="validate runbooks, playbooks, inventory; put them in force",
                description=HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_reload)


def cmd_reload(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.runbooks.loaded_set import describe
    from engine.runbooks.reload import reload_set

    done = reload_set(ctx, operator(args))
    if args.json:
        emit_json(done.to_dict())
        return OK if done.ok else USAGE
    summary = done.validation.summary if done.validation else ""
    for line in done.problems:
        out(line)
    for line in done.validation.warnings if done.validation else []:
        err(f"warning: {line}")
    if not done.ok:
        out(f"refused: {summary + ': ' if summary else ''}the set on disk is not valid "
            f"as a whole; in force still: {describe(done.record)}")
        return USAGE
    record, previous = done.record, done.previous
    if done.unchanged:
        out(f"unchanged: the files on disk are the set in force ({describe(record)}); "
            f"{summary}")
        return OK
    out(f"reloaded: set {record.sha256[:12]} in force ({summary}), loaded "
        f"{when(record.loaded_at)} by {record.loaded_by}"
        + (f"; it replaces {describe(previous)}" if previous else ""))
    out("a running service's processes switch to it before their next claim or request; "
        "steps already running finish on the set they started with")
    return OK
