"""The runs a per-strategy figure is computed from, reduced where they are stored: counts,
the median and p95 of the time the successful ones took, the last failure, per
(component, strategy) over a window. ``recovery status --by-strategy`` reads a few rows
per strategy, however many runs there were (engine.reporting.strategies)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Protocol

from engine.lifecycle import RunStatus

# The runs a figure counts: they ran and ended one way or the other (the success rate of
# engine.reporting.reports counts the same ones); check-mode runs never count.
SUCCEEDED = (RunStatus.SUCCEEDED.value,)
FAILED = (RunStatus.FAILED.value, RunStatus.INTERRUPTED.value, RunStatus.PARTIAL.value)


@dataclass(frozen=True)
class StrategyCount:
    component: str
    strategy: str
    succeeded: int
    failed: int


@dataclass(frozen=True)
class SuccessTimes:
    """Of the successful runs with an end: how many, the median (of an even count, the
    mean of the two middle values) and the p95 (nearest rank: the ceil(0.95 n)-th
    shortest) of ``finished_at - started_at``, in seconds."""

    component: str
    strategy: str
    count: int
    median: float
    p95: float


def success_times_of(component: str, strategy: str, took: list[float]) -> SuccessTimes:
    """The figures of the durations ``took`` (sorted here): the median of ranks (n+1)/2
    and n/2+1 (one rank when n is odd), the p95 of rank ceil(0.95 n)."""
    took.sort()
    n = len(took)
    return SuccessTimes(component, strategy, n, (took[(n + 1) // 2 - 1] + took[n // 2]) / 2,
                        took[(95 * n + 99) // 100 - 1])


@dataclass(frozen=True)
class LastFailure:
    component: str
    strategy: str
    reason: str
    at: float                     # when it ended (else began)


class StrategyRuns(Protocol):
    """Counted runs (``SUCCEEDED`` + ``FAILED`` statuses, not check mode) started within
    ``[since, until]``, per (component, strategy)."""

    @abstractmethod
    def strategy_counts(self, since: float, until: float) -> list[StrategyCount]: ...

    @abstractmethod
    def success_times(self, since: float, until: float) -> list[SuccessTimes]: ...

    @abstractmethod
    def last_failures(self, since: float, until: float) -> list[LastFailure]:
        """The most recent failed run of each (component, strategy) in the window."""
