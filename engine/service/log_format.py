"""How every process of ``recovery serve`` writes its log lines: as text for people (the
default) or one JSON object a line for a machine (``--log-format json``, ``logging.format``).

The parent (``serve``), the engine workers (``worker``) and gunicorn's master and workers
(``http``, through gunicorn's ``logconfig_dict``: its own lines and the webhook's) all
write to stderr in the one format the parent chose; the parent tells its children in the
environment (FORMAT_ENV, REPLICA_ENV, beside RECOVERY_LOG_LEVEL). A JSON line:

    {"time": "2026-12-07T16:58:01.042Z", "level": "INFO", "logger": "engine...",
     "message": "...", "process": 4242, "role": "worker", "replica": "host-a",
     "run_id": "run-...", "incident_id": "inc-...", "fingerprint": "...",
     "exception": "Traceback ..."}

the ids only where the line is about one (engine.log_context), ``exception`` only with one.
A text line: ``<time> recovery-<role>[<pid>] LEVEL logger: message``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from engine.log_context import IDS, LogIds

LOG_FORMATS = ("text", "json")
FORMAT_ENV = "RECOVERY_LOG_FORMAT"
REPLICA_ENV = "RECOVERY_LOG_REPLICA"
LEVEL_ENV = "RECOVERY_LOG_LEVEL"
ACCESS_LOG_ENV = "RECOVERY_ACCESS_LOG"   # "1": gunicorn's access log on (service.access_log)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's newlines are escaped)."""

    def __init__(self, role: str = "", replica: str = "") -> None:
        super().__init__()
        self.role = role
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if self.role:
            entry["role"] = self.role
        if self.replica:
            entry["replica"] = self.replica
        for name in IDS:
            if value := getattr(record, name, None):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(role: str, fmt: str = "text", replica: str = "") -> logging.Formatter:
    """The formatter of a process of the service (``role``: serve, worker, http)."""
    if fmt == "json":
        return JsonFormatter(role, replica)
    return logging.Formatter(
        f"%(asctime)s recovery-{role}[%(process)d] %(levelname)s %(name)s: %(message)s")


def chosen_format(environ: dict[str, str] | None = None) -> str:
    """The format the parent chose for its children (text when none or unknown)."""
    fmt = (os.environ if environ is None else environ).get(FORMAT_ENV, "text")
    return fmt if fmt in LOG_FORMATS else "text"


def configure(role: str, *, fmt: str | None = None, level: str | None = None,
              replica: str | None = None) -> None:
    """This process's root logger: one stderr handler in the format (default: the
    parent's, from the environment) that puts the ids on each line. ``level`` None
    leaves the root's level as it is."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(role, fmt or chosen_format(),
                                   os.environ.get(REPLICA_ENV, "") if replica is None
                                   else replica))
    handler.addFilter(LogIds())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(getattr(logging, level.upper(), logging.WARNING))
    said_through_logging()


def said_through_logging() -> None:
    """Python's warnings and uncaught exceptions (of the process and of its threads)
    become log lines, so that nothing the process writes to stderr escapes the format."""
    logging.captureWarnings(True)
    uncaught = logging.getLogger("uncaught")

    def on_exception(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        uncaught.critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        uncaught.error("uncaught in thread %s: %s: %s",
                       args.thread.name if args.thread else "?", args.exc_type.__name__,
                       args.exc_value,
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception


def gunicorn_logconfig(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict`` under ``recovery serve``: its error log and the
    application's loggers to stderr, its access log (only with ``ACCESS_LOG_ENV``) to
    stdout (the parent's stderr), all in the parent's format with the ids."""
    env = os.environ if environ is None else environ
    level = env.get(LEVEL_ENV, "WARNING").upper()

    def stream(to: str) -> dict[str, Any]:
        return {"class": "logging.StreamHandler", "stream": f"ext://sys.{to}",
                "formatter": "service", "filters": ["ids"]}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": LogIds}},
        "formatters": {"service": {"()": formatter, "role": "http",
                                   "fmt": chosen_format(env),
                                   "replica": env.get(REPLICA_ENV, "")}},
        "handlers": {"stderr": stream("stderr"), "stdout": stream("stdout")},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "DEBUG" if level == "DEBUG" else "INFO",
                               "handlers": ["stderr"], "propagate": False},
            # gunicorn logs every request once it has a logging config: off unless the
            # service's access_log setting asked for it (the supervisor says so)
            "gunicorn.access": ({"level": "INFO", "handlers": ["stdout"], "propagate": False}
                                if env.get(ACCESS_LOG_ENV) == "1" else
                                {"level": "CRITICAL", "handlers": [], "propagate": False}),
        },
    }
