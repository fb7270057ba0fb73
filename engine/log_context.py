"""The ids a log line carries: the run, the incident and the alert's fingerprint that the
code writing it is working for.

Set where the work is taken up (an alert processed from the journal, an incident
advanced, a step's run begun) and read by ``LogIds``, a logging filter that puts them on
every record, so a line needs no id in its words to be found by one. They are context
variables: each thread (and each asyncio task) has its own, and a thread a pool starts
begins with none, so one incident's ids never reach another's lines.

    with log_context.scope(incident_id=incident.id):
        log_context.note(fingerprint=incident.fingerprint)   # until the scope ends
        log.info("...")    # record.incident_id, record.fingerprint
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

IDS = ("run_id", "incident_id", "fingerprint")

_vars: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"recovery_log_{name}", default=None) for name in IDS}


def current() -> dict[str, str]:
    """The ids set now (only those that are)."""
    return {name: value for name, var in _vars.items() if (value := var.get())}


def note(**ids: str | None) -> None:
    """Set ids until the enclosing ``scope`` ends (None leaves an id as it is)."""
    for name, value in ids.items():
        if value is not None:
            _vars[name].set(value)


@contextmanager
def scope(**ids: str | None) -> Iterator[None]:
    """Set ids for the block; every id is as it was before once it ends, whatever
    ``note`` set inside it."""
    before = [(var, var.get()) for var in _vars.values()]
    note(**ids)
    try:
        yield
    finally:
        for var, value in before:
            var.set(value)


class LogIds(logging.Filter):
    """Puts the ids set now on each record it passes (as attributes; one the call gave
    in ``extra`` is kept). On a handler: records propagated from any logger get them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True
