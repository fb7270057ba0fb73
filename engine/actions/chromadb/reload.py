"""``chromadb.collection_reload``: this application's handles follow a collection that
was rebuilt or restored under its name."""

from __future__ import annotations

from engine.actions.base import EMBEDDED, Action, ActionContext, ActionResult
from engine.actions.chromadb.client import collections_of, error_text, registered_handles


class CollectionReload(Action):
    """Embedded: replaces the registered :class:`ChromaCollections`' client and re-opens
    each collection by name, so this application follows a rebuilt or restored
    collection. It cannot bring back a collection that no longer exists under its name
    (that is a rollback) and does nothing for other processes' handles."""

    name = "chromadb.collection_reload"
    scope = EMBEDDED
    resource = "chromadb"
    timeout = 60.0

    def run(self, ctx: ActionContext) -> ActionResult:
        handles = registered_handles(ctx)
        if handles is None:
            return ActionResult(False, "the registered chromadb resource is not a "
                                "ChromaCollections: nothing here can re-open collections",
                                not_applicable=True)
        names = collections_of(ctx, handles.names)
        if not names:
            return ActionResult(False, "no collection to reload: none opened and none "
                                "configured")
        try:
            report = handles.reload(names)
        except Exception as exc:  # noqa: BLE001 - the handles in use stay as they were
            return ActionResult(False, f"reload failed, the old handles stay in use: "
                                f"{type(exc).__name__}: {error_text(exc)}")
        moved = [n for n, r in report.items() if r["old_id"] != r["new_id"]]
        words = ", ".join(f"{n} ({r['count']} records)" for n, r in report.items())
        return ActionResult(True, f"re-opened {words} with a new client"
                            + (f"; {', '.join(moved)} now point at a new collection id"
                               if moved else "; the ids did not change"),
                            {"collections": report, "moved": moved})

    def plan(self, ctx: ActionContext) -> ActionResult:
        handles = registered_handles(ctx)
        if handles is None:
            return ActionResult(False, "the registered chromadb resource is not a "
                                "ChromaCollections", not_applicable=True)
        names = collections_of(ctx, handles.names)
        return ActionResult(True, f"would make a new client and re-open {', '.join(names)} by "
                            f"name (handles now: {handles.ids()})")
