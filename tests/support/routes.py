"""Every route of the service and the roles that may call it, as docs/operations.md
states them: the table the access tests check the app and a real service against."""

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
}
