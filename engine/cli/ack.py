"""``recovery ack INCIDENT_ID``: an operator has seen an exhausted target.

``RecoveryExhausted`` fires until the target recovers; an acknowledgement stops it
sooner, recorded with who, until the target's next incident is exhausted too.
"""

from __future__ import annotations

import argparse

from engine.cli.common import CliError, command, operator
from engine.cli.exits import OK, REFUSED, USAGE
from engine.cli.output import err, out, when
from engine.context import EngineContext

ACK_HELP = """\
Acknowledge the exhausted alert (RecoveryExhausted) of an incident: the alert resolves
now instead of when the target recovers, recorded with who (--as, RECOVERY_OPERATOR, or
cli:$USER). Give the incident the alert names (its `incident` annotation). Nothing is
run or canceled: an incident still open for the target goes on, and if it is exhausted
too the alert fires again.

exit codes: 0 acknowledged, 2 no such incident, 4 no exhausted alert fires for it.
"""


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "ack", parents, help="acknowledge an exhausted alert", description=ACK_HELP)
    p.add_argument("incident_id", metavar="INCIDENT_ID")
    p.set_defaults(func=cmd_ack)


def cmd_ack(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.orchestration.exhaustion import AckRefused, UnknownIncident, acknowledge

    who = operator(args)
    try:
        gone = acknowledge(ctx, args.incident_id, by=who)
    except UnknownIncident as exc:
        raise CliError(f"{exc} (`recovery incidents` lists them)", USAGE) from None
    except AckRefused as exc:
        err(str(exc))
        return REFUSED
    out(f"acknowledged: {gone.runbook} exhausted on {gone.target} since {when(gone.since)} "
        f"(incident {gone.incident_id}), as {who}; RecoveryExhausted resolves at the next "
        "worker pass")
    return OK
