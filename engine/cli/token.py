"""``recovery token add|list|remove``: credentials with a role, issued by an operator.

``add`` prints the new token once and keeps only its hash (engine.security.tokens, in
``RECOVERY_HOME/tokens.json``); a running service takes it at once, and stops taking a
removed one at once. Each add and remove is an audit event, with who.
"""

from __future__ import annotations

import argparse
import secrets
import time

from engine.cli.common import CliError, command, operator, runbooks
from engine.cli.exits import OK, USAGE
from engine.cli.output import emit_json, err, out, table, when
from engine.context import EngineContext
from engine.security.roles import ROLES

TOKEN_HELP = """\
Credentials with one role each (what it may do, and nothing else):
  webhook    post alerts (Alertmanager's http_config)
  metrics    read /metrics (Prometheus' scrape config)
  viewer     read everything (status, incidents, runs, approvals, degraded modes,
             switches, /metrics), change nothing: a dashboard
  app        trigger the runbook of one component (--component C, required) and read
             degraded modes; never approve: an application
  operator   read everything and act: approve, reject, run by hand, cancel, disable,
             enable, unlock, acknowledge, reload

`add` prints the token once: copy it now, it is kept only as a hash. A running service
takes a new token at once and refuses a removed one at once (no restart). The names
webhook, operator and metrics belong to the tokens of RECOVERY_WEBHOOK_TOKEN,
RECOVERY_API_TOKEN / operator.token and RECOVERY_METRICS_TOKEN / metrics.token; the
names under `operators:` in recovery.yml are taken too.

exit codes: 0 done, 2 a bad or taken name, --role app without a known --component
(or --component with another role), or no token by that name.
"""
RESERVED = ("webhook", "operator", "metrics")


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "token", parents, help="issue, list and revoke credentials",
                description=TOKEN_HELP)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", parents=parents, help="a new token, printed once")
    add.add_argument("name", metavar="NAME", help="who holds it (recorded as who acted)")
    add.add_argument("--role", required=True, choices=list(ROLES), help="what it may do")
    add.add_argument("--component", "-c", metavar="C",
                     help="role app: the one component (or runbook) it may trigger")
    add.add_argument("--json", action="store_true", help="machine-readable output")
    add.set_defaults(func=cmd_add, housekeeping=False)
    listing = verbs.add_parser("list", parents=parents, help="issued tokens (never a token)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_list, housekeeping=False)
    remove = verbs.add_parser("remove", parents=parents, help="revoke a token, at once")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=cmd_remove, housekeeping=False)


def _tokens(ctx: EngineContext):
    from engine.security.tokens import TOKENS_FILE, TokenFile

    ctx.config.ensure_home()
    return TokenFile(ctx.config.home / TOKENS_FILE)


def cmd_add(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.config import ConfigError
    from engine.records import AuditEvent
    from engine.security.credentials import check_name, hash_token
    from engine.security.tokens import IssuedToken

    who = operator(args)
    try:
        check_name(args.name, "token")
    except ConfigError as exc:
        raise CliError(str(exc), USAGE) from None
    if args.name in RESERVED or args.name in ctx.config.operators:
        raise CliError(f"the name {args.name!r} belongs to a configured credential: pick "
                       "another", USAGE)
    component = _component(ctx, args)
    token = secrets.token_urlsafe(32)
    issued = IssuedToken(name=args.name, role=args.role, hash=hash_token(token),
                         created_at=time.time(), created_by=who, component=component)
    try:
        _tokens(ctx).add(issued)
    except ConfigError as exc:
        raise CliError(str(exc), USAGE) from None
    if args.json:
        emit_json({**issued.to_dict(), "token": token})
    else:
        of = f", component {component}" if component else ""
        out(f"token {issued.name!r} (role {issued.role}{of}) added; it is shown this once, "
            "kept only as a hash, and a running service takes it now:\n")
        out(f"  {token}\n")
        out(USE[issued.role].format(token=token, name=issued.name, component=component))
    detail = {"name": issued.name, "role": issued.role}
    if component:
        detail["component"] = component
    _audit(ctx, AuditEvent(at=issued.created_at, actor=who, action="token_add",
                           detail=detail))
    return OK


def _component(ctx: EngineContext, args: argparse.Namespace) -> str | None:
    """The component an app token may trigger (the one of the runbook named, so the
    check is one comparison); None for other roles, which take none."""
    from engine.context import UnknownRunbook

    if args.role != "app":
        if args.component:
            raise CliError("--component is for --role app only", USAGE)
        return None
    if not args.component:
        raise CliError("--role app needs --component C: the one component it may trigger",
                       USAGE)
    if args.component in {rb.component for rb in runbooks(ctx)}:
        return args.component
    try:
        return ctx.runbook(args.component).component
    except UnknownRunbook as exc:
        raise CliError(str(exc.args[0]), USAGE) from None


def _audit(ctx: EngineContext, event) -> None:
    """The audit event of a change already made (and, for an add, shown): a store that
    cannot take it is a warning, never a token lost unseen."""
    from engine.store.base import StoreUnavailable

    try:
        ctx.store.add_event(event)
    except StoreUnavailable as exc:
        err(f"warning: the {event.action} of {event.detail['name']!r} is done but not in "
            f"the audit log: the store is unavailable ({exc})")


USE = {
    "webhook": "Alertmanager (alertmanager.yml, the receiver's webhook_configs):\n"
               "  http_config:\n    authorization: {{type: Bearer, credentials: {token}}}",
    "metrics": "Prometheus (prometheus.yml; the token in a file only Prometheus reads):\n"
               "  scrape_configs:\n    - job_name: infra-recovery\n"
               "      static_configs: [{{targets: ['127.0.0.1:9797']}}]\n"
               "      authorization: {{type: Bearer, credentials_file: "
               "/etc/prometheus/recovery-metrics.token}}\n"
               "(docs/examples/prometheus.yml)",
    "viewer": "curl -H 'Authorization: Bearer {token}' http://127.0.0.1:9797/api/v1/incidents"
              "\n(or basic auth: user {name}, the token as the password)",
    "app": "curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
           "-d '{{\"component\": \"{component}\"}}' http://127.0.0.1:9797/api/v1/recover"
           "\n(or basic auth: user {name}, the token as the password)",
    "operator": "curl -H 'Authorization: Bearer {token}' http://127.0.0.1:9797/api/v1/status"
                "\n(or basic auth: user {name}, the token as the password)",
}


def cmd_list(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.config import ConfigError

    try:
        issued = _tokens(ctx).tokens(strict=True)
    except ConfigError as exc:
        raise CliError(str(exc), USAGE) from None
    if args.json:
        emit_json([{k: v for k, v in t.to_dict().items() if k != "hash"} for t in issued])
        return OK
    out(table(list(issued), [
        ("NAME", lambda t: t.name),
        ("ROLE", lambda t: t.role),
        ("COMPONENT", lambda t: t.component or "-"),
        ("ADDED", lambda t: when(t.created_at)),
        ("BY", lambda t: t.created_by),
    ], empty="no issued tokens (`recovery token add NAME --role ROLE`)"))
    return OK


def cmd_remove(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.records import AuditEvent

    who = operator(args)
    removed = _tokens(ctx).remove(args.name)
    if removed is None:
        err(f"recovery token remove: no issued token named {args.name!r} (`recovery token "
            "list`; configured credentials are changed where they are configured)")
        return USAGE
    out(f"token {removed.name!r} (role {removed.role}) removed: refused from now on")
    _audit(ctx, AuditEvent(at=time.time(), actor=who, action="token_remove",
                           detail={"name": removed.name, "role": removed.role}))
    return OK
