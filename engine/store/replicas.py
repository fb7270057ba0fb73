"""The roster of replicas: which ``recovery serve`` share this store, the set of
runbooks each runs, and when each was last seen.

Why: a reload is per replica (engine.runbooks.loaded_set), so two replicas may act on two
different sets; ``recovery status`` reads the roster to warn when live replicas differ.
Each engine worker writes its replica's line at every heartbeat: the set it acts on (not
merely the one recorded: a worker that could not switch says so) and the time.

The roster is a handful of lines written every few seconds, so it is one shared value
(``SharedValues.update_value``: atomic on every backend) rather than a table per
backend; lines not seen for ``KEPT`` are dropped at the next write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from engine.records import AsDict
from engine.store.shared_values import SharedValues

ROSTER_KEY = "replicas"
KEPT = 86400.0           # s: a replica not seen for a day leaves the roster


@dataclass(frozen=True)
class ReplicaSeen(AsDict):
    """One replica's line: its set (None: the files on disk), when that set was put in
    force, and when a worker of it last wrote."""

    replica: str
    set_sha256: str | None
    loaded_at: float | None
    seen_at: float
    host: str = ""

    @classmethod
    def from_value(cls, replica: str, value: Any) -> ReplicaSeen | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(replica=replica,
                       set_sha256=str(value["set_sha256"]) if value.get("set_sha256") else None,
                       loaded_at=float(value["loaded_at"]) if value.get("loaded_at") else None,
                       seen_at=float(value["seen_at"]), host=str(value.get("host") or ""))
        except (KeyError, TypeError, ValueError):
            return None


class ReplicaRoster(SharedValues, Protocol):
    """``record_replica`` (a worker's heartbeat) and ``replicas`` (status)."""

    def record_replica(self, seen: ReplicaSeen) -> None:
        """Write this replica's line (replacing its last one), dropping lines older than
        ``KEPT`` before ``seen.seen_at``."""
        def update(roster: Any) -> dict[str, Any]:
            lines = roster if isinstance(roster, dict) else {}
            kept = {name: line for name, line in lines.items()
                    if isinstance(line, dict)
                    and seen.seen_at - float(line.get("seen_at") or 0) < KEPT}
            line = seen.to_dict()
            del line["replica"]
            kept[seen.replica] = line
            return kept

        self.update_value(ROSTER_KEY, update)

    def replicas(self, seen_since: float = 0.0) -> list[ReplicaSeen]:
        """The replicas seen at or after ``seen_since``, by name."""
        roster = self.get_value(ROSTER_KEY)
        if not isinstance(roster, dict):
            return []
        lines = [ReplicaSeen.from_value(str(name), line) for name, line in roster.items()]
        return sorted((line for line in lines if line is not None and line.seen_at >= seen_since),
                      key=lambda line: line.replica)
