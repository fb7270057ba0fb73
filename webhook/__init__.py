"""The HTTP face of the engine: Alertmanager's webhook, the operators' API, health.

``create_app(config)`` builds one Flask app (the tutorial's factory: no module-level
state, tests build one per case). What it serves with (the ``EngineContext``, the
``Credentials``) sits on ``app.extensions``. One blueprint per concern:

- ``webhook.alerts``: ``POST /api/v1/alerts`` (the ``webhook`` role only)
- ``webhook.api``: the rest of ``/api/v1``, one module per concern (incidents, runs,
  approvals, actions, the OpenAPI document at ``/api/v1/openapi.json``)
- ``webhook.health``: ``/healthz``, ``/readyz`` (open), ``/metrics`` (``metrics``,
  ``viewer`` or ``operator``)
- ``webhook.request_metrics``: counts the answers of ``POST /api/v1/alerts`` (hooks on the
  ``alerts`` blueprint only), shown by ``/metrics``
- ``webhook.console``: the operator console at ``/`` (HTML pages, a login session; its
  errors are HTML pages, the one exception to the JSON below)

Every route states its access (``webhook.auth.requires``); the roles that grant it are
one table (``engine.security.roles``).

Every answer is JSON, errors included: never an HTML page, never a stack trace (a 500
says only that something went wrong; the log has the rest). A production WSGI server
serves it (``recovery serve``); this package never runs a server itself.

Settings under ``webhook:`` in ``recovery.yml`` read here: ``max_body_bytes`` (4 MiB),
``ready_heartbeat_age`` (30 s), ``metrics_auth`` (true: ``/metrics`` needs a credential of
the ``metrics``, ``viewer`` or ``operator`` role), ``repeat_signal_after`` (60 s: a firing alert
repeated after that long is journaled again, a signal that it still fires),
``store_wait`` (5 s: how long a notification waits for the store before its 503, so
Alertmanager retries rather than times out).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from engine.config import Config, ConfigError, load_config
from engine.context import EngineContext
from engine.durations import parse_duration
from engine.security.credentials import Credentials, load_credentials
from engine.store.base import StoreUnavailable
from webhook.state import EXTENSION, WebhookState, attach, state

__all__ = ["EXTENSION", "create_app"]

log = logging.getLogger(__name__)
DEFAULT_MAX_BODY = 4 * 1024 * 1024


def create_app(config: Config | None = None, *, context: EngineContext | None = None,
               credentials: Credentials | None = None) -> Flask:
    """The app for ``config`` (default: ``load_config()``). ``ConfigError`` when the
    ``webhook:`` settings are wrong or no credentials are configured. Without a
    ``context``, the app is a service's (gunicorn's ``webhook:create_app()``): it acts on
    the set of runbooks, playbooks and inventory recorded in force, not on the files as
    they are on disk now (engine.runbooks.loaded_set)."""
    if config is None:
        config = context.config if context is not None else load_config()
    settings = webhook_settings(config)
    if credentials is None:
        credentials, _ = load_credentials(config)
    if context is None:   # a store down now: the app still comes up, and answers 503
        context = EngineContext(config, follow_loaded_set=True, retry_store_open=True)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings["max_body_bytes"]
    app.json.sort_keys = False
    attach(app, WebhookState(config=config, context=context, credentials=credentials,
                              settings=settings))

    from webhook import alerts, api, console, health, request_metrics

    request_metrics.install(app)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    console.install(app, config)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(StoreUnavailable, _store_unavailable)
    app.register_error_handler(Exception, _internal_error)
    return app


def webhook_settings(config: Config) -> dict[str, Any]:
    """The ``webhook:`` settings this package reads, checked (other keys are left to
    their readers)."""
    raw = config.webhook
    where = f"{config.path or 'recovery.yml'}: webhook"
    limit = raw.get("max_body_bytes", DEFAULT_MAX_BODY)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1024:
        raise ConfigError(f"{where}.max_body_bytes: a whole number of bytes, at least 1024")
    try:
        age = parse_duration(raw.get("ready_heartbeat_age", 30))
    except ValueError as exc:
        raise ConfigError(f"{where}.ready_heartbeat_age: {exc}") from exc
    metrics_auth = raw.get("metrics_auth", True)
    if not isinstance(metrics_auth, bool):
        raise ConfigError(f"{where}.metrics_auth: true or false")
    try:
        repeat = parse_duration(raw.get("repeat_signal_after", 60))
    except ValueError as exc:
        raise ConfigError(f"{where}.repeat_signal_after: {exc}") from exc
    try:
        store_wait = parse_duration(raw.get("store_wait", 5))
    except ValueError as exc:
        raise ConfigError(f"{where}.store_wait: {exc}") from exc
    if store_wait <= 0:
        raise ConfigError(f"{where}.store_wait: more than 0 seconds")
    return {"max_body_bytes": limit, "ready_heartbeat_age": age, "metrics_auth": metrics_auth,
            "repeat_signal_after": repeat, "store_wait": store_wait}


JSON_OR_HTML = ["application/json", "text/html"]   # a tie (*/*, none): JSON


def _http_error(exc: HTTPException):
    from webhook.console.blueprint import is_console_path, unrouted_error

    if (request.blueprint is None and is_console_path(request.path)    # a browser's
            and request.accept_mimetypes.best_match(JSON_OR_HTML) == "text/html"):
        return unrouted_error(exc)
    response = exc.get_response()   # keeps headers such as Allow (405)
    response.data = jsonify(error=exc.description or exc.name).get_data()
    response.content_type = "application/json"
    return response


def _too_large(exc: RequestEntityTooLarge):
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return jsonify(error=f"request body over the limit of {limit} bytes "
                         "(webhook.max_body_bytes)"), 413


def _store_unavailable(exc: StoreUnavailable):
    state().outages.failed(exc, f"{request.method} {request.path}")   # said once
    return jsonify(error="the store is unavailable: retry later"), 503


def _internal_error(exc: Exception):
    log.exception("internal error: %s", type(exc).__name__)
    return jsonify(error="internal error"), 500
