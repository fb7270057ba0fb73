"""The run index: one record per run, for history, claims and heartbeats.

The account of a run is its artifacts directory; this is the index over them (what ran,
where, with what outcome), the queue of approved runs waiting for a worker, the
heartbeats that tell a live run from an interrupted one, and refusals counted per key.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

from engine.lifecycle import RunStatus
from engine.records import RunRecord
from engine.store.fencing import Fence


class RunIndex(Protocol):
    """Run records: added, moved along the run lifecycle, claimed, beaten and queried."""

    @abstractmethod
    def add_run(self, run: RunRecord) -> None: ...

    @abstractmethod
    def update_run(
        self, run_id: str, *, status: RunStatus | None = None, fence: Fence | None = None,
        **fields: Any
    ) -> RunRecord | None:
        """Change a run; a status change must be allowed by the lifecycle (else None).
        With ``fence`` (the lock the run acts under), StaleLease and nothing written once
        another token holds that lock (engine.store.fencing)."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def add_refusal(self, run: RunRecord, key: str, *, max_fingerprints: int) -> RunRecord:
        """Count the refusal ``run`` into the record of ``key``
        (engine.orchestration.refusals), at once: the first of a key adds ``run`` (count 1);
        each next one adds 1 to its ``count`` and, while it has counted fewer than
        ``max_fingerprints``, lists its fingerprint (once) and links its fingerprint and
        incident, so ``query_runs(fingerprint=..., incident_id=...)`` finds the record.
        Returns the record as stored now: ``run.id`` is its id only when this call created
        it."""

    @abstractmethod
    def query_runs(
        self,
        *,
        component: str | None = None,
        since: float | None = None,
        status: str | None = None,
        incident_id: str | None = None,
        target: str | None = None,
        fingerprint: str | None = None,
        limit: int | None = 100,
    ) -> list[RunRecord]:
        """Newest first. By ``fingerprint`` or ``incident_id``: also the refusal records
        that count that alert or incident among their linked ones (``add_refusal``)."""

    @abstractmethod
    def claim_queued_run(self, holder: str, now: float, lease: float) -> RunRecord | None:
        """Take one approved run for a worker; the claim lapses after ``lease`` seconds."""

    @abstractmethod
    def claim_run(self, run_id: str, holder: str, now: float, lease: float) -> RunRecord | None:
        """Take this queued run (``approve --now``), unless another claim is live."""

    @abstractmethod
    def heartbeat_runs(self, run_ids: Iterable[str], now: float) -> None: ...

    @abstractmethod
    def stale_running_runs(self, heartbeat_before: float) -> list[RunRecord]:
        """Runs still marked running whose process stopped beating (killed, crashed)."""
