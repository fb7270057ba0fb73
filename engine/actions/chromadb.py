"""ChromaDB actions. ``heartbeat`` is the probe and verify (the HTTP API, no chromadb
import); the strategies come with the component-actions work."""

from __future__ import annotations

from engine.actions.base import (
    EMBEDDED,
    REMOTE,
    Action,
    ActionContext,
    ActionResult,
    NotImplementedAction,
)


class Heartbeat(Action):
    """GET /api/v2/heartbeat (falls back to v1). Says the server answers, not that
    a collection's index is sound."""

    name = "chromadb.heartbeat"
    scope = REMOTE
    timeout = 10.0

    def run(self, ctx: ActionContext) -> ActionResult:
        import httpx

        url = ctx.endpoint("chromadb_url")
        if not url:
            return ActionResult(False, f"no chromadb_url for {ctx.target} in the inventory",
                                not_applicable=True)
        try:
            with httpx.Client(timeout=3) as client:
                for path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
                    response = client.get(url.rstrip("/") + path)
                    if response.status_code == 200:
                        return ActionResult(True, f"heartbeat {response.json()}")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"heartbeat failed: {exc}")
        return ActionResult(False, f"heartbeat answered {response.status_code}")

    plan = run


def register(registry) -> None:
    registry.register(Heartbeat())
    registry.register(NotImplementedAction("chromadb.query_retry", REMOTE))
    registry.register(NotImplementedAction("chromadb.collection_reload", EMBEDDED))
    registry.register(NotImplementedAction("chromadb.index_rebuild", REMOTE))
