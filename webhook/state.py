"""What one app serves with, kept on ``app.extensions`` (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from engine.config import Config
from engine.context import EngineContext
from engine.credentials import Credentials

EXTENSION = "infra_recovery"


@dataclass(frozen=True)
class WebhookState:
    config: Config
    context: EngineContext
    credentials: Credentials
    settings: dict[str, Any] = field(default_factory=dict)   # checked `webhook:` keys


def attach(app: Flask, state: WebhookState) -> None:
    app.extensions[EXTENSION] = state


def state() -> WebhookState:
    """The state of the app handling the current request."""
    return current_app.extensions[EXTENSION]
