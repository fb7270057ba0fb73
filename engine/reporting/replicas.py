"""The replicas sharing this store, as ``recovery status`` shows them: each one's set of
runbooks and when it was last seen (engine.store.replicas), and a warning when the live
ones run different sets.

Why: a reload is per replica (engine.runbooks.loaded_set), so after an edit reloaded on
one host but not on another, the replicas behind one Alertmanager would remediate the
same alert differently depending on which one took it. A replica is live while one of
its workers wrote its line within three leases (``lock.lease``), the same patience the
workers give each other's heartbeats; one seen earlier (in the last day) is listed, not
compared.
"""

from __future__ import annotations

from typing import Any

from engine.context import EngineContext


def replicas_status(ctx: EngineContext, now: float) -> dict[str, Any]:
    """``this``: this process's replica; ``seen``: every replica in the roster (``live``
    or not); ``warning``: a line when live replicas run different sets, else None."""
    live_after = now - 3 * ctx.config.lock_ttl
    seen = [line.to_dict() | {"live": line.seen_at >= live_after}
            for line in ctx.store.replicas()]
    return {"this": ctx.replica, "seen": seen, "warning": different_sets(seen)}


def different_sets(seen: list[dict[str, Any]]) -> str | None:
    """The warning for live replicas on different sets (None: they agree, or fewer than
    two are live)."""
    by_set: dict[str, list[str]] = {}
    for line in seen:
        if line["live"]:
            by_set.setdefault(line["set_sha256"] or "the files on disk", []).append(
                line["replica"])
    if len(by_set) < 2:
        return None
    which = "; ".join(f"{sha[:12]} on {', '.join(sorted(names))}"
                      for sha, names in sorted(by_set.items()))
    return (f"live replicas run different runbook sets ({which}): reload each with the "
            "same files (`recovery reload` on each host), or they remediate one alert "
            "differently depending on which replica takes it")
