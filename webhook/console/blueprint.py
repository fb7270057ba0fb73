"""The console's blueprint: its pages act on the set in force (pinned per request, as
the API's), say their errors in HTML, and every template knows who is looking, the
CSRF token its forms carry and how many approvals wait (the title's count)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, g
from werkzeug.exceptions import HTTPException

from engine.cli.output import ago, span, when
from engine.security.roles import Access, allows
from engine.store.base import StoreUnavailable
from webhook.console import session
from webhook.console.errors import error_page
from webhook.state import pin_set_per_request, state

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, template_folder="templates", static_folder=None)


pin_set_per_request(bp)


# Nothing but this site's own stylesheet and forms; never framed (a button under another
# site's page), never cached (a page shows who is logged in and what waits).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def unrouted_error(exc: HTTPException) -> Response:
    """A console address no route answers (a mistyped page, a form's address by GET):
    its HTML page with the console's headers, as the pages' own errors."""
    response = error_page(exc.code or 500, exc.description or exc.name)
    if "Allow" in exc.get_response().headers:      # a 405 says what is allowed
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return _headers(response)


def is_console_path(path: str) -> bool:
    """Whether ``path`` is the console's (the API, health and metrics answer JSON)."""
    return path.strip("/").split("/")[0] not in ("api", "healthz", "readyz", "metrics")


@bp.context_processor
def _page_context() -> dict[str, Any]:
    credential = g.get("credential")
    pending = None
    if credential is not None:
        try:
            pending = len(state().context.store.list_approvals("pending"))
        except StoreUnavailable:       # the page says so; its title goes without
            pending = None
    return {"who": credential, "pending_count": pending, "csrf_token": session.csrf_token,
            "can_operate": credential is not None and allows(credential.role,
                                                             Access.OPERATE),
            "now": time.time()}


@bp.app_template_filter("when")
def _when(ts: float | None) -> str:
    return when(ts)


@bp.app_template_filter("ago")
def _ago(ts: float | None) -> str:
    return ago(ts)


@bp.app_template_filter("span")
def _span(seconds: float | None) -> str:
    return span(seconds)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return error_page(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable):
    state().outages.failed(exc, "the console")
    return error_page(503, "the store is unavailable: reload this page in a moment")


@bp.errorhandler(Exception)
def _internal_error(exc: Exception):
    log.exception("console: internal error: %s", type(exc).__name__)
    return error_page(500, "internal error (the service's log has the rest)")
