"""Outcome counters and duration histograms, shared by every process so that /metrics
counts the runs of the CLI and of every worker alike; and the hosts those runs acted on,
counted by outcome (never by host: a fleet's names would make a label per host)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.05, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0,
)
# Per (component, strategy, outcome): a recovery may take a restart of seconds or a
# rebuild of hours, so the bounds reach 4 h (Grafana's histogram_quantile needs them).
STRATEGY_BUCKETS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    14400.0,
)


@dataclass
class CounterRow:
    component: str
    strategy: str
    outcome: str
    value: float


@dataclass
class DeferralRow:
    """Runs deferred by one gate (cooldown, lock, fleet...) of one component."""

    component: str
    gate: str
    value: float


@dataclass
class DurationRow:
    component: str
    strategy: str
    buckets: list[tuple[float, float]]   # (upper bound, cumulative count); +Inf last
    total: float
    count: float
    outcome: str = ""     # strategy_durations only: the run's outcome


class OutcomeMetrics(Protocol):
    """Runs counted by (component, strategy, outcome), durations in ``DURATION_BUCKETS``
    (and by outcome too, in ``STRATEGY_BUCKETS``);
    the hosts of those runs counted by (component, strategy, host outcome); deferrals by
    (component, gate): which limit holds work back."""

    @abstractmethod
    def record_outcome(
        self, component: str, strategy: str, outcome: str, duration: float | None, *,
        gate: str | None = None,
    ) -> None:
        """Count one run's outcome; with ``gate`` (a deferred run: the gate that held it
        back) its deferral is counted by (component, gate) too, in the same write."""

    @abstractmethod
    def deferrals(self) -> list[DeferralRow]: ...

    @abstractmethod
    def record_host_outcomes(
        self, component: str, strategy: str, counts: Mapping[str, int]
    ) -> None:
        """Add ``counts`` (host outcome -> how many hosts of one run) at once."""

    @abstractmethod
    def counters(self) -> list[CounterRow]: ...

    @abstractmethod
    def host_counters(self) -> list[CounterRow]:
        """What ``record_host_outcomes`` added up, a row per (component, strategy,
        outcome)."""

    @abstractmethod
    def durations(self) -> list[DurationRow]: ...

    @abstractmethod
    def strategy_durations(self) -> list[DurationRow]:
        """Durations by (component, strategy, outcome) in ``STRATEGY_BUCKETS``, added to
        by every ``record_outcome`` with a duration, in the same write."""
