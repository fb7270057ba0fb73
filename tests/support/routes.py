"""Every route of the service and the roles that may call it, as docs/operations.md
states them: the table the access tests check the app and a real service against."""

from __future__ import annotations

OPEN = "open"
CREDENTIALS = ("none", "webhook", "metrics", "operator")
# Every route, and the roles that may call it, as docs/operations.md states them.
ROUTES: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): {"metrics", "viewer", "operator"},
    ("POST", "/api/v1/alerts"): {"webhook"},
    ("GET", "/api/v1/status"): {"viewer", "operator"},
    ("GET", "/api/v1/strategies"): {"viewer", "operator"},
    ("GET", "/api/v1/degraded"): {"viewer", "operator"},
    ("GET", "/api/v1/runs"): {"viewer", "operator"},
    ("GET", "/api/v1/runs/<run_id>"): {"viewer", "operator"},
    ("GET", "/api/v1/approvals"): {"viewer", "operator"},
    ("POST", "/api/v1/approvals/<run_id>"): {"operator"},
    ("POST", "/api/v1/incidents/<incident_id>/ack"): {"operator"},
    ("POST", "/api/v1/reload"): {"operator"},
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
