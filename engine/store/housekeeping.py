"""The store as a whole: whether it can be read and written now, the history pruned,
and its connections kept and closed."""

from __future__ import annotations

from abc import abstractmethod
from typing import Protocol


class Housekeeping(Protocol):
    """What a worker and the probes of the service do to the store itself."""

    @abstractmethod
    def delete_before(self, before: float) -> list[str]:
        """Drop what ended before ``before``: runs (their ids are returned, for their
        artifacts), closed incidents, finished attempts, decided approvals, events, the
        intake's dedup keys, resolve marks and kept deliveries."""

    @abstractmethod
    def ping(self, *, write: bool = False, wait: float | None = None) -> None:
        """Raise StoreUnavailable if the store cannot be read (``write``: written now, by
        a real write within ``wait`` seconds: an empty transaction proves nothing)."""

    def maintain(self) -> None:  # noqa: B027 - optional for backends
        """Housekeeping a worker runs between passes, off the path of any request."""

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release connections."""
