"""Who may call what: every route states the one access it needs; a credential's role
(engine.security.roles) grants it or not.

``requires(access)`` wraps a view: without credentials (or with ones that match none)
the answer is a 401 with a ``WWW-Authenticate`` challenge; a valid credential whose role
does not grant the access gets a 403 that names its role and the roles that would do;
otherwise the view runs with ``flask.g.credential`` set and ``flask.g.operator`` holding
its name, for the record. ``requires(Access.OPEN)`` states that a route needs nothing.
``access_of(view)`` reads the statement back (the tests check every route has one). The
comparisons themselves (constant time) live in ``engine.security.credentials``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, g, jsonify, request

from engine.security.roles import Access, allows, roles_for
from webhook.state import state

F = TypeVar("F", bound=Callable[..., Any])
REALM = "infra-recovery"
_ACCESS = "required_access"


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


def refusal(access: Access) -> Response | None:
    """None when the request's credential may do ``access`` (``g.credential`` and
    ``g.operator`` then set), else the answer to give."""
    if access is Access.OPEN or (access is Access.READ_METRICS
                                 and not state().settings.get("metrics_auth", True)):
        return None                  # webhook.metrics_auth: false opens /metrics
    header = request.headers.get("Authorization")
    credential = state().credentials.identify(header)
    if credential is not None and allows(credential.role, access):
        g.credential = credential
        g.operator = credential.name
        return None
    needed = " or ".join(_token_of(role) for role in roles_for(access))   # words to refuse
    if credential is None:
        if header:
            return unauthorized("invalid credentials")
        return unauthorized(f"credentials required: {needed} (Bearer, or basic auth: "
                            "the token as the password, a named token's name as the user)")
    who = ("the webhook token can only post alerts: it" if credential.role == "webhook"
           else f"{credential.name!r} (role {credential.role})")
    return forbidden(f"{who} may not {access.value}: that takes {needed}")


def _token_of(role: str) -> str:
    if role == "webhook":
        return "the webhook token"
    return f"{'an' if role[0] in 'aeiou' else 'a'} {role} token"


def requires(access: Access, refuse: Callable[[Access], Response | None] = refusal
             ) -> Callable[[F], F]:
    """The route needs a credential whose role grants ``access`` (OPEN: none).
    ``refuse`` says who is asking and what to answer otherwise: by default the
    ``Authorization`` header (``refusal``); the console passes its session's."""
    def wrap(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            refused = refuse(access)
            return refused if refused is not None else view(*args, **kwargs)

        setattr(wrapped, _ACCESS, access)
        return wrapped  # type: ignore[return-value]

    return wrap


def access_of(view: Callable[..., Any]) -> Access | None:
    """The access a view stated with ``requires``; None when it stated none."""
    return getattr(view, _ACCESS, None)
