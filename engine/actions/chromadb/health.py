"""Is ChromaDB up, and do its collections answer? ``heartbeat`` (the server answers)
and ``collection_check`` (the verify and the probe: each collection answers a query
under its name, and this process's handles point at it)."""

from __future__ import annotations

from typing import Any

from engine.actions.base import REMOTE, Action, ActionContext, ActionResult, no_endpoint
from engine.actions.chromadb.client import (
    ServerAction,
    auth_headers,
    collections_of,
    error_text,
    probe_query,
    registered_handles,
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
            return no_endpoint(ctx, "chromadb_url")
        try:
            with httpx.Client(timeout=3, headers=auth_headers()) as client:
                for path in ("/api/v2/heartbeat", "/api/v1/heartbeat"):
                    response = client.get(url.rstrip("/") + path)
                    if response.status_code == 200:
                        return ActionResult(True, f"heartbeat {response.json()}")
        except httpx.HTTPError as exc:
            return ActionResult(False, f"heartbeat failed: {exc}")
        return ActionResult(False, f"heartbeat answered {response.status_code}")

    plan = run


class CollectionCheck(ServerAction):
    """Verify: each configured collection opens by name and answers a query; where this
    process registered :class:`ChromaCollections`, its handles must point at those same
    collections. A stale handle is reported as not verifiable here (the verify fails at
    once) so the runbook goes on to ``collection_reload``. ``with: {handles: false}``
    checks the server side only (the data answers under the names), whatever this
    process holds: the verify of a step that acts on the server, and the probe."""

    name = "chromadb.collection_check"
    timeout = 15.0

    def act(self, ctx: ActionContext, client: Any) -> ActionResult:
        handles = registered_handles(ctx)
        names = collections_of(ctx, handles.names if handles else ())
        held = handles.ids() if handles and ctx.params.get("handles", True) else {}
        answers, stale = [], []
        try:
            client.heartbeat()
            for name in names:
                current = client.get_collection(name, embedding_function=None)
                answers.append(probe_query(current))
                if name in held and held[name] != str(current.id):
                    stale.append(f"{name} (handle {held[name][:8]}, now {str(current.id)[:8]})")
        except Exception as exc:  # noqa: BLE001
            return ActionResult(False, f"{type(exc).__name__}: {error_text(exc)}")
        if stale:
            return ActionResult(False, "this process's handles still point at replaced "
                                f"collections: {', '.join(stale)}; collection_reload must "
                                "follow", {"stale": stale}, not_applicable=True)
        return ActionResult(True, "; ".join(answers) or "heartbeat answered (no collection "
                            "configured)")

    def plan(self, ctx: ActionContext) -> ActionResult:
        return self.run(ctx)
