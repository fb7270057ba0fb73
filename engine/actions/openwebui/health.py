"""``openwebui.health``: the server is up (GET /health), not that a model answers."""

from __future__ import annotations

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult, no_endpoint
from engine.actions.openwebui.api import base_url, http_client


class Health(Action):
    """GET /health answers 200. Says the server is up, not that a model answers."""

    name = "openwebui.health"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import httpx

        url = base_url(ctx)
        if not url:
            return no_endpoint(ctx, "openwebui_url")
        try:
            with http_client(timeout=3) as http:
                response = http.get(url + "/health")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"health check failed: {exc}")
        return ActionResult(response.status_code == 200, f"/health {response.status_code}")

    plan = run
