"""``chromadb.collection_reload``: this application's handles follow a collection that
was rebuilt, re-created or restored under its name."""

from __future__ import annotations

from typing import Any

from engine.actions.base import EMBEDDED, ActionContext, ActionResult, PlannedAction
from engine.actions.chromadb.client import collections_of, error_text, registered_handles


class CollectionReload(PlannedAction):
    """Embedded: looks each collection up by name on the server (a new client), then
    replaces the registered :class:`ChromaCollections`' client and re-opens the ones that
    exist, so this application follows a rebuilt, re-created or restored collection.

    A name with no collection on the server is reported and the step fails: it is never
    created here (an empty collection under the name would hide the loss; bringing it
    back is a rollback). The handles of the names that exist are re-opened all the same,
    so what can answer again does. ``--check`` (the plan) says which handles are stale,
    which names are missing, and changes nothing. Other processes' handles are theirs.
    """

    name = "chromadb.collection_reload"
    scope = EMBEDDED
    resource = "chromadb"
    timeout = 60.0

    def act(self, ctx: ActionContext, change: bool) -> ActionResult:
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
            current = handles.server_ids(names)
        except Exception as exc:  # noqa: BLE001 - the handles in use stay as they were
            return ActionResult(False, f"cannot look the collections up, the handles stay "
                                f"as they are: {type(exc).__name__}: {error_text(exc)}")
        held = handles.ids()
        present = [n for n in names if current[n] is not None]
        missing = [n for n in names if current[n] is None]
        stale = [n for n in present if n in held and held[n] != current[n]]
        data: dict[str, Any] = {"held": held, "on_server": current, "stale": stale,
                                "missing": missing}
        gone = (f"; missing on the server, not created (a rollback brings a collection "
                f"back): {', '.join(missing)}" if missing else "")
        if not change:
            plan = (f"would make a new client and re-open {', '.join(present)} by name "
                    f"({describe_stale(stale, held, current)})" if present
                    else "nothing to re-open")
            return ActionResult(True, plan + gone, data)
        if not present:
            return ActionResult(False, "nothing re-opened" + gone, data)
        try:
            report = handles.reload(present)
        except Exception as exc:  # noqa: BLE001 - the handles in use stay as they were
            return ActionResult(False, f"reload failed, the old handles stay in use: "
                                f"{type(exc).__name__}: {error_text(exc)}{gone}", data)
        moved = [n for n, r in report.items() if r["old_id"] != r["new_id"]]
        words = ", ".join(f"{n} ({r['count']} records)" for n, r in report.items())
        data.update(collections=report, moved=moved)
        return ActionResult(not missing, f"re-opened {words} with a new client"
                            + (f"; {', '.join(moved)} now point at a new collection id"
                               if moved else "; the ids did not change") + gone, data)


def describe_stale(stale: list[str], held: dict[str, str], current: dict[str, Any]) -> str:
    """Which handles point at a collection that no longer carries their name."""
    if not stale:
        return "no handle is stale"
    return "stale: " + ", ".join(f"{n} (handle {held[n][:8]}, now {str(current[n])[:8]})"
                                 for n in stale)
