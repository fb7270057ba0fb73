"""Who may call what: the webhook token posts alerts, named operators do the rest.

``require_webhook_token`` lets only the webhook token through (an operator token is
refused with 403: it is a credential, just not this one). ``require_operator`` lets only a
named operator through and puts the name on ``flask.g.operator`` for the record; the
webhook token gets a 403 there, anything else a 401 with a ``WWW-Authenticate`` challenge.
The comparisons themselves (constant time) live in ``engine.credentials``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, g, jsonify, request

from webhook.state import state

F = TypeVar("F", bound=Callable[..., Any])
REALM = "infra-recovery"


def unauthorized(reason: str) -> Response:
    response = jsonify(error=reason)
    response.status_code = 401
    response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}"')
    response.headers.add("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    return response


def forbidden(reason: str) -> Response:
    response = jsonify(error=reason)
    response.status_code = 403
    return response


def operator_refusal() -> Response | None:
    """None when a named operator is calling (``g.operator`` set), else the answer to give."""
    creds = state().credentials
    header = request.headers.get("Authorization")
    name = creds.operator(header)
    if name is not None:
        g.operator = name
        return None
    if creds.webhook_ok(header):
        return forbidden("the webhook token can only post alerts: use an operator token")
    if not header:
        return unauthorized("credentials required: an operator token (Bearer, or basic auth "
                            "with the operator's name)")
    return unauthorized("invalid credentials")


def webhook_refusal() -> Response | None:
    """None when the webhook token is presented, else the answer to give."""
    creds = state().credentials
    header = request.headers.get("Authorization")
    if creds.webhook_ok(header):
        return None
    if not header:
        return unauthorized("credentials required: the webhook token (Bearer, or as the "
                            "basic-auth password)")
    if creds.operator(header) is not None:
        return forbidden("only the webhook token may post alerts")
    return unauthorized("invalid credentials")


def require_webhook_token(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        refusal = webhook_refusal()
        return refusal if refusal is not None else view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def require_operator(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        refusal = operator_refusal()
        return refusal if refusal is not None else view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
