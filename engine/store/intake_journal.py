"""The intake journal: alerts the webhook has accepted, waiting for a worker.

The webhook answers Alertmanager 200 only once the alerts are journaled here; workers
claim them (a claim lapses, so a dead worker's alerts come back), process them and
acknowledge them with what was made of them (the kept deliveries, which a replay reads).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.records import Delivery


@dataclass
class IntakeItem:
    """One journaled alert delivery, waiting for a worker."""

    id: int
    dedup_key: str
    payload: dict[str, Any]
    received_at: float


@dataclass
class FoldedDeliveries:
    """A batch of kept deliveries folded per dedup key, as every backend keeps them:
    the last one's fields, the first one's times and outcome, how many, the latest
    incident named; and the newest firing delivery (with a payload) of each fingerprint,
    the only one that keeps its payload."""

    first: dict[str, Delivery]
    last: dict[str, Delivery]
    count: dict[str, int]
    incident: dict[str, str | None]
    newest_firing: dict[str, Delivery]


def fold_deliveries(kept: Iterable[Delivery]) -> FoldedDeliveries:
    folded = FoldedDeliveries({}, {}, {}, {}, {})
    for d in kept:
        key = d.dedup_key
        folded.first.setdefault(key, d)
        folded.last[key] = d
        folded.count[key] = folded.count.get(key, 0) + 1
        folded.incident[key] = d.incident_id or folded.incident.get(key)
        if d.status == "firing" and d.payload:
            folded.newest_firing[d.fingerprint] = d
    return folded


class IntakeJournal(Protocol):
    """The queue between the webhook and the workers, deduplicated by key."""

    @abstractmethod
    def enqueue_alerts(self, items: list[tuple[str, dict[str, Any]]], *,
                       repeat_after: float | None = None,
                       wait: float | None = None) -> tuple[int, int]:
        """Journal (dedup_key, payload) pairs; return (accepted, duplicates). With
        ``repeat_after``, a firing duplicate last journaled longer ago than that is
        journaled again (a repeat is a signal), still counted as a duplicate. Waits for
        the store ``wait`` seconds at most (default: the store's own bound), then raises
        StoreUnavailable."""

    @abstractmethod
    def claim_intake(self, holder: str, limit: int, lease: float) -> list[IntakeItem]: ...

    @abstractmethod
    def intake_claims(self, now: float) -> list[tuple[str, float]]:
        """The claims on the intake not lapsed at ``now``: one (holder, claimed_until)
        per claim (a batch claimed at once shares its ``claimed_until``)."""

    @abstractmethod
    def release_intake(self, claims: Iterable[tuple[str, float]]) -> int:
        """Give the items of these claims (as ``intake_claims`` names them) back to the
        queue, at their place in it; how many items."""

    @abstractmethod
    def ack_intake(self, ids: Iterable[int], deliveries: Iterable[Delivery] = ()) -> None:
        """Drop processed items from the queue, and keep what was made of them
        (``deliveries``) in the same transaction: one kept delivery per dedup key, a
        repeat counted on it (see ``Delivery``), a payload only on the newest firing
        delivery of each fingerprint."""

    @abstractmethod
    def deliveries(self, *, fingerprint: str | None = None, incident_id: str | None = None,
                   limit: int | None = 100) -> list[Delivery]:
        """Kept deliveries, the latest processed first (pruned with the history,
        ``delete_before``, once their latest delivery is older)."""

    @abstractmethod
    def intake_depth(self, now: float) -> tuple[int, float]:
        """(entries waiting, age in seconds of the oldest)."""

    @abstractmethod
    def mark_resolved(self, fingerprint: str, ends_at: str, at: float) -> None:
        """Remember that an episode of ``fingerprint`` resolved, ending at ``ends_at``
        (the latest such time is kept); kept until ``delete_before`` passes ``at``."""

    @abstractmethod
    def resolved_until(self, fingerprint: str) -> tuple[str, float] | None:
        """(when the last resolved episode of this fingerprint ended, when that resolve
        was processed), if any."""
