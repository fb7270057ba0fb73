"""What every command shares: who is acting, the one EngineContext, how a command ends
with an error (``CliError``; its exit codes are engine.cli.exits)."""

from __future__ import annotations

import argparse
import getpass
import os
import time
from typing import TYPE_CHECKING

from engine.cli.exits import USAGE
from engine.durations import parse_duration
from engine.store.urls import redacted

if TYPE_CHECKING:
    from engine.context import EngineContext
    from engine.runbooks.model import Runbook

class CliError(Exception):
    """Ends the command with a one-line message on stderr and an exit code."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def command(sub: argparse._SubParsersAction, name: str, parents: list[argparse.ArgumentParser],
            *, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` prints its description as written (paragraphs,
    lists, examples), not refilled."""
    return sub.add_parser(name, parents=parents, help=help, description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def operator(args: argparse.Namespace) -> str:
    """Who acts: ``--as``, else RECOVERY_OPERATOR, else ``cli:$USER``."""
    name = getattr(args, "operator", None) or os.environ.get("RECOVERY_OPERATOR")
    if name:
        return name
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


def build_context(args: argparse.Namespace) -> EngineContext:
    """Config, store, action registry; every start-up problem is a CliError (exit 2)."""
    from engine.config import ConfigError, load_config
    from engine.context import EngineContext
    from engine.runbooks.loader import RunbookError
    from engine.store import StoreUnavailable

    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}") from None
    try:
        config.ensure_home()
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}") from None
    except OSError as exc:
        raise CliError(f"cannot use RECOVERY_HOME {config.home}: {exc}") from None
    # `recovery serve` starts with its store down (and answers 503 until it is back);
    # every other command needs the store now.
    waits = getattr(args, "store_may_be_down", False)
    try:
        ctx = EngineContext(config, retry_store_open=waits)
    except StoreUnavailable as exc:
        raise CliError(f"store unavailable: {exc}") from None
    except ValueError as exc:  # e.g. an unsupported state URL
        raise CliError(f"configuration error: {config.path}: {exc}") from None
    except ImportError as exc:
        raise CliError(f"configuration error: {config.path}: action_modules: cannot import "
                       f"{exc.name or exc}: {exc}") from None
    except RunbookError as exc:
        raise CliError(f"runbook error: {exc}") from None
    except OSError as exc:
        raise CliError(f"store unavailable: {redacted(config.state_url)}: {exc}") from None
    if waits:
        return ctx
    try:
        ctx.store.ping()
    except StoreUnavailable as exc:
        ctx.store.close()
        raise CliError(f"store unavailable: {exc}") from None
    return ctx


def housekeeping(ctx: EngineContext) -> None:
    """What a worker would do, done by every command where no service runs: expire
    unanswered approvals (so listings, status and metrics see them expired and their
    incidents closed), prune old artifacts (at most hourly, the last time is in the
    store) and remove the private data dirs of runs whose process died (secrets in clear:
    engine.executors.private_dirs). None may break the command: a problem is one warning
    line on stderr."""
    from engine.cli.output import err
    from engine.executors.private_dirs import sweep
    from engine.orchestration.approvals import expire_due
    from engine.service.retention import prune_if_due
    from engine.store import StoreUnavailable

    try:
        ctx.store.ping()
    except StoreUnavailable:   # `recovery serve` starting while its store is down: its
        return                 # workers do all this once the store answers

    for what, chore in (("expiring approvals", expire_due),
                        ("pruning old artifacts", prune_if_due),
                        ("removing dead runs' private data dirs",
                         lambda c: sweep(redactor=c.redactor))):
        try:
            chore(ctx)
        except Exception as exc:  # noqa: BLE001 - housekeeping never breaks a command
            text = " ".join(str(exc).split()) or type(exc).__name__
            err(f"recovery: warning: {what} failed: {text}")


def runbooks(ctx: EngineContext) -> list[Runbook]:
    """The loaded runbooks; a bad one stops the command with its file:line: reason."""
    from engine.runbooks.loader import RunbookError

    try:
        return ctx.runbooks
    except RunbookError as exc:
        raise CliError(f"runbook error: {exc} (see `recovery validate`)") from None


def runbook(ctx: EngineContext, name: str) -> Runbook:
    from engine.context import UnknownRunbook

    runbooks(ctx)
    try:
        return ctx.runbook(name)
    except UnknownRunbook as exc:
        raise CliError(str(exc.args[0])) from None


def components(ctx: EngineContext) -> list[str]:
    return sorted({rb.component for rb in runbooks(ctx)})


def duration_arg(text: str) -> float:
    """argparse type for ``--last 24h`` and friends."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def now() -> float:
    return time.time()


def loaded_set_note(ctx: EngineContext) -> str | None:
    """A line for commands that read the files afresh while a service may run another set:
    None when no set is recorded or the files on disk are that set."""
    from engine.runbooks.loaded_set import describe, disk_differs, recorded_set

    try:
        record = recorded_set(ctx.store, ctx.replica)
    except Exception:  # noqa: BLE001 - a note must not break the command
        return None
    differs, _sha = disk_differs(ctx.config, record)
    if not differs:
        return None
    return (f"note: the files on disk differ from the set in force in the service "
            f"({describe(record)}): `recovery reload` validates them and puts them in force")
