"""Every route of the service and the roles that may call it, as docs/operations.md
states them: the table the access tests check the app and a real service against, and
the harmless call each walk makes of a route."""

from __future__ import annotations

OPEN = "open"
CREDENTIALS = ("none", "webhook", "metrics", "viewer", "app", "operator")
# Every route, and the roles that may call it, as docs/operations.md states them.
ROUTES: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): {"metrics", "viewer", "operator"},
    ("POST", "/api/v1/alerts"): {"webhook"},
    ("GET", "/api/v1/status"): {"viewer", "operator"},
    ("GET", "/api/v1/strategies"): {"viewer", "operator"},
    ("GET", "/api/v1/degraded"): {"viewer", "app", "operator"},
    ("GET", "/api/v1/openapi.json"): OPEN,
    ("GET", "/api/v1/incidents"): {"viewer", "operator"},
    ("GET", "/api/v1/incidents/<incident_id>"): {"viewer", "operator"},
    ("GET", "/api/v1/runs"): {"viewer", "operator"},
    ("GET", "/api/v1/runs/<run_id>"): {"viewer", "operator"},
    ("GET", "/api/v1/approvals"): {"viewer", "operator"},
    ("POST", "/api/v1/approvals/<run_id>"): {"operator"},
    ("POST", "/api/v1/incidents/<incident_id>/ack"): {"operator"},
    ("POST", "/api/v1/reload"): {"operator"},
    ("POST", "/api/v1/recover"): {"app", "operator"},
    ("POST", "/api/v1/cancel/<ident>"): {"operator"},
    ("GET", "/api/v1/switches"): {"viewer", "operator"},
    ("POST", "/api/v1/switches"): {"operator"},
    ("DELETE", "/api/v1/switches/<switch_id>"): {"operator"},
    ("POST", "/api/v1/unlock"): {"operator"},
    # The console (webhook.console): a session from /login, not an Authorization header;
    # without one a page answers 303 to /login.
    ("GET", "/login"): OPEN,
    ("POST", "/login"): OPEN,
    ("GET", "/console.css"): OPEN,
    ("POST", "/logout"): {"viewer", "operator"},
    ("GET", "/"): {"viewer", "operator"},
    ("GET", "/approvals"): {"viewer", "operator"},
    ("GET", "/history"): {"viewer", "operator"},
    ("GET", "/runs/<run_id>"): {"viewer", "operator"},
    ("GET", "/charts"): {"viewer", "operator"},
    ("POST", "/approvals/<run_id>"): {"operator"},
    ("POST", "/incidents/<incident_id>/cancel"): {"operator"},
    ("POST", "/switches/disable"): {"operator"},
    ("POST", "/switches/enable"): {"operator"},
    ("POST", "/locks/unlock"): {"operator"},
}


def is_console(path: str) -> bool:
    """Whether ``path`` is a console route (a session's, not an Authorization header's)."""
    return not path.startswith("/api/") and path not in ("/healthz", "/readyz", "/metrics")


PLACEHOLDERS = {"<run_id>": "run-nope", "<incident_id>": "inc-nope", "<ident>": "run-nope",
                "<switch_id>": "sw-nope"}


def harmless_call(route: tuple[str, str]) -> tuple[str, str, dict | None]:
    """The route's method, a path with ids that name nothing, and a body that changes
    nothing (an unknown component, an expiry that is none): an allowed credential gets a
    4xx about the request, never a 401 or 403."""
    method, path = route
    for placeholder, value in PLACEHOLDERS.items():
        path = path.replace(placeholder, value)
    bodies = {"/api/v1/recover": {"component": "no-such-component"},
              "/api/v1/switches": {"for": "not-a-duration"},
              "/api/v1/unlock": {},
              "/api/v1/approvals/run-nope": {"decision": "reject", "reason": "access"}}
    if path == "/api/v1/alerts":
        from tests.support.alerts import notification

        return method, path, notification()
    return method, path, bodies.get(path) if method == "POST" else None


def answered(route: tuple[str, str], credential: str) -> str:
    allowed = ROUTES[route]
    if allowed == OPEN or credential in allowed:
        return "allowed"
    return "401" if credential == "none" else "403"
