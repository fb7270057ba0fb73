"""OpenWebUI actions. ``health`` is the probe and verify; the strategies come with the
component-actions work."""

from __future__ import annotations

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
)


class Health(Action):
    """GET /health answers 200. Says the server is up, not that a model answers."""

    name = "openwebui.health"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import httpx

        url = ctx.endpoint("openwebui_url")
        if not url:
            return ActionResult(False, f"no openwebui_url for {ctx.target} in the inventory",
                                not_applicable=True)
        try:
            response = httpx.get(url.rstrip("/") + "/health", timeout=3)
        except httpx.HTTPError as exc:
            return ActionResult(False, f"health check failed: {exc}")
        return ActionResult(response.status_code == 200, f"/health {response.status_code}")

    plan = run


def register(registry) -> None:
    registry.register(Health())
    registry.register(NotImplementedAction("openwebui.token_refresh", EMBEDDED))
    registry.register(NotImplementedAction("openwebui.model_failover", REMOTE))
    registry.register(NotImplementedAction("openwebui.graceful_degradation", REMOTE))
