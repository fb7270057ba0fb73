"""``recovery``: the operator's command line (docs/operations.md).

One small module per command group; each registers its subcommands and gets one
``EngineContext`` built from the configuration (``--config``, else RECOVERY_CONFIG,
else ./recovery.yml). Exit codes: 0 done and verified, 1 failed, 2 usage or
configuration error, 3 parked for approval, 4 refused or deferred by a gate.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from engine.cli import (
    ack,
    approvals,
    history,
    import_config,
    plan,
    recover,
    reload,
    serve,
    status,
    store,
    switches,
    token,
    validate,
)
from engine.cli.common import CliError, build_context, housekeeping
from engine.cli.exits import FAILED, OK, USAGE
from engine.cli.output import err

DESCRIPTION = """\
InfraFabric Recovery: run, approve, audit and switch automated recoveries.

exit codes: 0 done and verified, 1 failed (an incident that ended degraded is not
verified: 1), 2 usage or configuration error (also an invalid runbook, an unknown run
id), 3 parked for approval, 4 refused or deferred by a gate (cooldown, disabled, lock,
unknown target). Every listing command takes --json (machine output only on stdout).
The operator recorded for approvals, switches and manual runs is --as NAME, else
RECOVERY_OPERATOR, else cli:$USER.
"""
MODULES = (recover, plan, history, approvals, ack, switches, status, validate, reload, serve,
           token, import_config, store)


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="recovery.yml (default: $RECOVERY_CONFIG, else ./recovery.yml)")
    parser.add_argument("--as", dest="operator", metavar="NAME", default=default,
                        help="who acts (default: $RECOVERY_OPERATOR, else cli:$USER)")
    parser.add_argument("--verbose", "-v", action="count",
                        default=argparse.SUPPRESS if suppress else 0,
                        help="log more (to stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recovery", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, suppress=False)
    # The same options after the subcommand (`recovery status --config x.yml`); SUPPRESS
    # keeps a subcommand from overwriting what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in MODULES:
        module.register(sub, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from engine.config import keep_files_private

    previous = keep_files_private()   # before anything is written (a service's files too)
    try:
        return _command(argv)
    finally:
        os.umask(previous)            # an in-process caller (a test) gets its own back


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else USAGE
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        err("recovery: a command is required (recovery --help lists them)")
        return USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else
                        logging.INFO if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from engine.runbooks.loader import RunbookError
    from engine.store.base import StoreUnavailable

    ctx = None
    try:
        ctx = build_context(args)
        if getattr(args, "housekeeping", True):  # `validate` only reads files
            housekeeping(ctx)
        return int(args.func(ctx, args))
    except CliError as exc:
        err(f"recovery {args.command}: {_one_line(exc.message)}")
        return exc.code
    except RunbookError as exc:
        err(f"recovery {args.command}: runbook error: {exc} (see `recovery validate`)")
        return USAGE
    except StoreUnavailable as exc:
        err(f"recovery {args.command}: store unavailable: {_one_line(str(exc))}")
        return FAILED
    except KeyboardInterrupt:
        err(f"recovery {args.command}: interrupted")
        return FAILED
    except BrokenPipeError:  # `recovery history | head`: the reader left
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return OK
    finally:
        if ctx is not None:
            ctx.store.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())
