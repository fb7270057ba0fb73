"""``recovery serve``: the webhook and the engine workers, from one command.

The process model and the shutdown are engine.service.supervisor's; here: the flags, the checks
that stop a start before anything runs (exit 2), and what the first start prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.common import CliError, positive_int
from engine.cli.exits import USAGE
from engine.cli.output import out
from engine.context import EngineContext

if TYPE_CHECKING:
    from engine.config import Config
    from engine.service.store_wait import StoreWait
    from engine.service.supervisor import ServiceSettings


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", parents=parents, help="the webhook and the engine workers (one command)",
        description="Serve the Alertmanager webhook and the HTTP API (gunicorn, gthread "
        "workers) and run the engine workers in processes of their own. The first start "
        "generates the webhook, operator and metrics tokens into RECOVERY_HOME (0600) and "
        "prints them once when stdout is a terminal (elsewhere, as in a journal, only "
        "where they are), with an Alertmanager receiver to paste. SIGTERM or Ctrl-C: stop taking "
        "requests, let running steps finish within webhook.shutdown_grace (30s), mark the "
        "rest interrupted; a second signal stops at once. SIGHUP: `recovery reload` (the "
        "runbooks, playbooks and inventory validated and put in force; never a stop).")
    p.add_argument("--bind", metavar="HOST:PORT",
                   help="where to listen (default: webhook.bind, else 127.0.0.1:9797); off "
                   "loopback only with webhook.tls or webhook.behind_tls_proxy")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="engine worker processes (default: webhook.workers, else 1)")
    p.add_argument("--http-workers", type=positive_int, metavar="N",
                   help="gunicorn worker processes, 8 threads each (default: "
                   "webhook.http_workers, else 2)")
    p.add_argument("--log-format", choices=("text", "json"),
                   help="the log lines of every process of the service on stderr: text "
                   "(for people) or json (one object a line, with run_id, incident_id and "
                   "fingerprint where one applies); default: logging.format, else text")
    p.set_defaults(func=cmd_serve, store_may_be_down=True)


def cmd_serve(ctx: EngineContext, args: argparse.Namespace) -> int:
    from engine.config import ConfigError
    from engine.replica import record_serving_replica
    from engine.security.credentials import load_credentials
    from engine.service.log_format import configure as configure_logging
    from engine.service.supervisor import Service, ServiceError, ServiceSettings

    try:
        settings = ServiceSettings.from_config(ctx.config, bind=args.bind, workers=args.workers,
                                               http_workers=args.http_workers)
    except ServiceError as exc:
        raise CliError(str(exc), USAGE) from None
    # Its name, in RECOVERY_HOME before any child starts: they, and a `recovery reload`
    # run there without RECOVERY_REPLICA, take it (engine.replica).
    ctx.replica = record_serving_replica(ctx.config)
    log_format = args.log_format or ctx.config.log_format
    # every line of the service says when, and in json mode is one object (its children
    # take the format from the environment: engine.service.log_format)
    configure_logging("serve", fmt=log_format, replica=ctx.replica)
    logging.getLogger("engine.service.supervisor").setLevel(logging.INFO)  # starts, deaths, stops
    store_wait = _store_checks_now_or_later(ctx)
    try:
        _credentials, generated = load_credentials(ctx.config, create=True)
    except ConfigError as exc:
        raise CliError(f"credentials: {exc}", USAGE) from None
    if generated:
        say_first_start(settings, generated, ctx.config.home, log_format=log_format)
    if store_wait is None:
        ctx.store.close()  # the parent acts on nothing: its children open their own
    level = ("DEBUG" if args.verbose > 1 else "INFO" if args.verbose else "WARNING")
    for warning in start_warnings(ctx.config, settings):
        logging.getLogger("engine.service.supervisor").warning("%s", warning)
    try:
        return Service(ctx.config, settings, log_level=level, log_format=log_format,
                       store_wait=store_wait).run()
    finally:
        if store_wait is not None:
            ctx.store.close()


def _store_checks(ctx: EngineContext) -> None:
    """What the start asks the store: a half-written migration refuses it, then the set
    on disk is put in force (a runbook that does not load refuses it)."""
    _refuse_incomplete_store(ctx)
    _load_set(ctx)  # a bad runbook stops the start with file:line, not every worker pass


def _store_checks_now_or_later(ctx: EngineContext) -> StoreWait | None:
    """The store's checks now; with the store down, the runbooks on disk are loaded now
    (a bad one still stops the start) and the checks are left to a ``StoreWait``, which
    the service runs until the store answers (None: done now)."""
    from engine.cli.common import runbooks
    from engine.service.store_wait import StoreWait
    from engine.store.base import StoreRefused, StoreUnavailable

    try:
        _store_checks(ctx)
        return None
    except StoreRefused as exc:
        raise CliError(str(exc), USAGE) from None
    except StoreUnavailable as exc:
        runbooks(ctx)
        logging.getLogger("engine.service.supervisor").warning(
            "starting with the store unavailable (%s): the webhook answers 503 "
            "(Alertmanager sends again) and /readyz fails until the store answers; the "
            "engine workers wait for it, and the start-up checks (the store's settings, "
            "an unfinished migration, the set of runbooks in force) run then",
            " ".join(str(exc).split()))
    def check() -> None:
        try:
            _store_checks(ctx)
        except CliError as exc:
            raise ValueError(exc.message) from None

    return StoreWait(check)


def start_warnings(config: Config, settings: ServiceSettings) -> list[str]:
    """What a start says once, in its log, about how it runs: as root, with private
    data dirs an earlier version left, with /metrics open."""
    from engine.executors.private_dirs import earlier_version_dirs
    from engine.security.credentials import metrics_auth
    from engine.service.supervisor import (
        earlier_private_dirs_warning,
        open_metrics_warning,
        root_warning,
    )

    warnings = [root_warning(os.geteuid()),
                earlier_private_dirs_warning(earlier_version_dirs()),
                None if metrics_auth(config) else open_metrics_warning(f"{settings.url}/metrics")]
    return [w for w in warnings if w]


def _refuse_incomplete_store(ctx: EngineContext) -> None:
    """A store a migration did not finish writing (``recovery store migrate``) lacks part
    of the install's state (cooldowns, switches, approvals): the service does not start
    on it (exit 2) until the migration is redone."""
    from engine.store.state_snapshot import MIGRATION_KEY, migration_note

    note = migration_note(ctx.store.get_value(MIGRATION_KEY))
    if note:
        raise CliError(note, USAGE)


def _load_set(ctx: EngineContext) -> None:
    """Put the files on disk in force as the set every process of the service loads (a
    copy: engine.runbooks.loaded_set); a runbook that does not load stops the start (exit 2)."""
    from engine.runbooks.reload import reload_set

    done = reload_set(ctx, f"recovery serve (start, pid {os.getpid()})", start=True)
    if not done.ok:
        what = "runbook error: " if done.validation and not done.validation.ok else ""
        raise CliError(what + "; ".join(done.problems) + " (see `recovery validate`)", USAGE)
    for warning in done.validation.warnings if done.validation else []:
        logging.getLogger("engine.service.supervisor").warning("%s", warning)


def _cli(home) -> str:
    """How to run ``recovery`` from where the service was started: the venv's script
    when it is not on PATH (``make run`` does not activate the venv), with this home
    when it is not the default one."""
    script = Path(sys.executable).with_name("recovery")
    command = "recovery"
    if script.exists() and shutil.which("recovery") != str(script):
        relative = os.path.relpath(script)
        command = relative if not relative.startswith("..") else str(script)
    if os.environ.get("RECOVERY_HOME"):
        command = f"RECOVERY_HOME={shlex.quote(str(home))} {command}"
    return command


def say_first_start(settings, generated: dict[str, str], home, *, log_format: str) -> None:
    """The first start's banner: on stdout for a person; in json mode one log line (what
    collects the output reads JSON lines), naming the token files, never a token."""
    if log_format == "json":
        logging.getLogger("engine.service.supervisor").info(
            "%s", first_start(settings, generated, home, on_terminal=False))
    else:
        out(first_start(settings, generated, home, on_terminal=sys.stdout.isatty()))


def first_start(settings, generated: dict[str, str], home, *, on_terminal: bool) -> str:
    """What a start that generated credentials prints, once: those tokens (and only
    those), a receiver for alertmanager.yml and a scrape job for prometheus.yml for the
    ones generated, and what to try next.

    ``on_terminal``: stdout is a terminal (``make run``), which keeps nothing, so the
    tokens are shown. Anywhere else (systemd's journal, a log file) what is printed is
    kept on disk and readable by others (the ``adm`` and ``systemd-journal`` groups):
    then the banner names the token files (0600, in RECOVERY_HOME) and how to read them,
    never the values."""
    from engine.security.credentials import (
        METRICS_TOKEN_FILE,
        OPERATOR_TOKEN_FILE,
        WEBHOOK_TOKEN_FILE,
    )

    files = {"webhook": Path(home) / WEBHOOK_TOKEN_FILE,
             "operator": Path(home) / OPERATOR_TOKEN_FILE,
             "metrics": Path(home) / METRICS_TOKEN_FILE}

    def value(what: str) -> str:
        """The token itself on a terminal; elsewhere where to find it."""
        return generated[what] if on_terminal else f"<the {what} token, in {files[what]}>"

    def header(what: str) -> str:
        """curl's header argument: the token itself on a terminal, else read from its
        file by the shell."""
        if on_terminal:
            return f"'Authorization: Bearer {generated[what]}'"
        return f'"Authorization: Bearer $(cat {shlex.quote(str(files[what]))})"'

    base = settings.url  # from this machine; Alertmanager reaches the proxy, if any
    if settings.host in ("0.0.0.0", "::"):
        base = base.replace("[::]", "[::1]", 1).replace("0.0.0.0", "127.0.0.1", 1)
    scheme = "https" if settings.tls else "http"
    if settings.behind_tls_proxy:
        scheme, target = "https", "<your TLS proxy>"
        url = f"https://{target}/api/v1/alerts"
    elif settings.host in ("0.0.0.0", "::"):   # every address: say which is for the reader
        target = f"<this host's address>:{settings.port}"
        url = f"{scheme}://{target}/api/v1/alerts"
    else:
        url, target = f"{settings.url}/api/v1/alerts", settings.bind
    webhook = "webhook" in generated
    operator = "operator" in generated
    metrics = "metrics" in generated
    roles = {"webhook": "webhook token (Alertmanager; it can only post alerts",
             "operator": "operator token (operator \"operator\", for /api/v1/* and the "
                         f"console at {base}/",
             "metrics": "metrics token (Prometheus; it can only read /metrics"}
    first = "recovery serve: " + ("first start: " if webhook else "") + "credentials generated"
    if on_terminal:
        lines = [first + f". They are shown this once; they are kept (mode 0600) in {home}/."]
        for what in ("webhook", "operator", "metrics"):
            if what in generated:
                lines += ["", f"  {roles[what]}; {files[what].name}):", f"    {generated[what]}"]
    else:
        lines = [first + f" into {home}/ (mode 0600: this user alone reads them). They are "
                 "not shown here: this output is not a terminal, and a journal or a log "
                 "file would keep them on disk. Read them as this user:"]
        for what in ("webhook", "operator", "metrics"):
            if what in generated:
                lines += ["", f"  {roles[what]}):",
                          f"    cat {shlex.quote(str(files[what]))}"]
    if webhook or operator:
        lines += [
            "",
            "Alertmanager receiver (alertmanager.yml, Alertmanager >= 0.22):",
            "",
            "receivers:",
            "  - name: infra-recovery",
            "    webhook_configs:",
            f"      - url: {url}",
            "        send_resolved: true",
            "        http_config:",
            "          authorization:",
            "            type: Bearer",
            "            credentials: " + (value("webhook") if webhook else
                                          "<the webhook token (RECOVERY_WEBHOOK_TOKEN)>"),
        ]
    if metrics:
        lines += [
            "",
            "Prometheus scrape job (prometheus.yml; /metrics needs a token: put it in a file "
            "only Prometheus reads):",
            "",
            "scrape_configs:",
            "  - job_name: infra-recovery",
            f"    scheme: {scheme}",
            "    static_configs:",
            f"      - targets: [\"{target}\"]",
            "    authorization:",
            "      type: Bearer",
            "      credentials_file: /etc/prometheus/recovery-metrics.token   # the metrics token",
        ]
    lines += ["", "Next:", f"  curl -s {base}/healthz",
              f"  curl -s {base}/readyz                # 200 once an engine worker reports"]
    if metrics:
        lines.append(f"  curl -s -H {header('metrics')} {base}/metrics")
    status = header("operator") if operator else "'Authorization: Bearer <an operator token>'"
    lines += [
        f"  {_cli(home)} status",
        f"  curl -s -H {status} {base}/api/v1/status",
        f"  {_cli(home)} token add NAME --role viewer|operator|app|webhook|metrics"
        "   # more tokens (docs/console.md)",
        "",
    ]
    return "\n".join(lines)
