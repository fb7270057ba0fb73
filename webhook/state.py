"""What one app serves with, kept on ``app.extensions`` (no module-level state)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app, g

from engine.config import Config
from engine.context import EngineContext
from engine.outages import OutageLog
from engine.security.credentials import Credentials
from engine.store.base import StoreUnavailable
from webhook.write_probe import WriteProbe

EXTENSION = "infra_recovery"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookState:
    config: Config
    context: EngineContext
    credentials: Credentials
    settings: dict[str, Any] = field(default_factory=dict)   # checked `webhook:` keys
    write_probe: WriteProbe = field(default_factory=WriteProbe)   # for /readyz
    # The store down fails every request: said when that begins and ends, not each time.
    outages: OutageLog = field(default_factory=lambda: OutageLog(log, "webhook"))


def attach(app: Flask, state: WebhookState) -> None:
    app.extensions[EXTENSION] = state


def state() -> WebhookState:
    """The state of the app handling the current request."""
    return current_app.extensions[EXTENSION]


def context_in_force() -> EngineContext:
    """The app's context, first switched to the set of runbooks, playbooks and inventory
    a reload put in force since the last request (engine.runbooks.loaded_set). A store that cannot
    be read leaves the set as it is: the route answers what it can."""
    ctx = state().context
    try:
        ctx.refresh()
    except StoreUnavailable as exc:
        state().outages.failed(exc, "reading the set in force")
    return ctx


def pin_set_per_request(bp: Blueprint) -> None:
    """Every request ``bp`` serves switches to the set in force (``context_in_force``)
    first, then keeps that set until it ends: one request, one set."""
    @bp.before_request
    def _on_the_set_in_force() -> None:
        g.set_pin = ExitStack()
        g.set_pin.enter_context(context_in_force().pinned())

    @bp.teardown_request
    def _unpin(exc: BaseException | None) -> None:
        pin = g.pop("set_pin", None)
        if pin is not None:
            pin.close()
