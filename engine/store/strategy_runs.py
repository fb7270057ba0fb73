"""The runs a per-strategy figure is computed from: only the columns it needs, over a
window, so that ``recovery status --by-strategy`` reads an index and not the run rows
(engine.reporting.strategies computes the figures)."""

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
class StrategyRun:
    component: str
    strategy: str
    status: str
    duration: float | None        # finished_at - started_at (None: no end recorded)


@dataclass(frozen=True)
class LastFailure:
    component: str
    strategy: str
    reason: str
    at: float                     # when it ended (else began)


class StrategyRuns(Protocol):
    """Counted runs (``SUCCEEDED`` + ``FAILED`` statuses, not check mode) started within
    ``[since, until]``."""

    @abstractmethod
    def strategy_runs(self, since: float, until: float) -> list[StrategyRun]: ...

    @abstractmethod
    def last_failures(self, since: float, until: float) -> list[LastFailure]:
        """The most recent failed run of each (component, strategy) in the window."""
