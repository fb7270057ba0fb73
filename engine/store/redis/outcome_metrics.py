"""Outcome metrics in Redis (``engine.store.outcome_metrics.OutcomeMetrics``): a hash
per family, ``metrics:<family>``, whose fields are JSON lists naming a series (and, for
a histogram, its part: a bound's ``repr``, ``sum`` or ``count``), added to with
HINCRBYFLOAT; one run's counts go in one MULTI, so no reader sees half of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.store.outcome_metrics import (
    DURATION_BUCKETS,
    STRATEGY_BUCKETS,
    CounterRow,
    DeferralRow,
    DurationRow,
    OutcomeMetrics,
)
from engine.store.redis.connection import RedisConnection


def _field(*names: str) -> str:
    return json.dumps(list(names))


def _observe(pipe: Any, key: str, series: tuple[str, ...], bounds: tuple[float, ...],
             duration: float) -> None:
    """Queue one observation of a cumulative histogram (bounds keyed by ``repr``, so
    changing the bounds never breaks the counts kept)."""
    for bound in bounds:
        if duration <= bound:
            pipe.hincrbyfloat(key, _field(*series, repr(bound)), 1)
    pipe.hincrbyfloat(key, _field(*series, "sum"), duration)
    pipe.hincrbyfloat(key, _field(*series, "count"), 1)


class RedisOutcomeMetrics(RedisConnection, OutcomeMetrics):
    """Families ``counters``, ``host-counters`` and ``deferrals`` (a field per series),
    ``durations`` (component, strategy) and ``strategy-durations`` (component,
    strategy, outcome): histograms."""

    def _family(self, name: str) -> str:
        return self._key("metrics", name)

    def record_outcome(self, component: str, strategy: str, outcome: str,
                       duration: float | None, *, gate: str | None = None) -> None:
        with self._client() as client:
            pipe = client.pipeline()   # MULTI: one run's counts at once
            pipe.hincrbyfloat(self._family("counters"), _field(component, strategy, outcome), 1)
            if gate is not None:
                pipe.hincrbyfloat(self._family("deferrals"), _field(component, gate), 1)
            if duration is not None:
                _observe(pipe, self._family("durations"), (component, strategy),
                         DURATION_BUCKETS, duration)
                _observe(pipe, self._family("strategy-durations"),
                         (component, strategy, outcome), STRATEGY_BUCKETS, duration)
            pipe.execute()

    def record_host_outcomes(self, component: str, strategy: str,
                             counts: Mapping[str, int]) -> None:
        added = {outcome: n for outcome, n in counts.items() if n}
        if not added:
            return
        with self._client() as client:
            pipe = client.pipeline()
            for outcome, n in added.items():
                pipe.hincrbyfloat(self._family("host-counters"),
                                  _field(component, strategy, outcome), n)
            pipe.execute()

    def _series(self, name: str) -> list[tuple[list[str], float]]:
        """Every field of family ``name`` (its names) and value, in the names' order."""
        with self._client() as client:
            raw = client.hgetall(self._family(name))
        return sorted((json.loads(k), float(v)) for k, v in raw.items())

    def counters(self) -> list[CounterRow]:
        return [CounterRow(*names, value) for names, value in self._series("counters")]

    def host_counters(self) -> list[CounterRow]:
        return [CounterRow(*names, value) for names, value in self._series("host-counters")]

    def deferrals(self) -> list[DeferralRow]:
        return [DeferralRow(*names, value) for names, value in self._series("deferrals")]

    def _histograms(self, name: str, bounds: tuple[float, ...]) -> list[tuple[tuple[str, ...],
                                                                                 list, float,
                                                                                 float]]:
        """(series, buckets with +Inf last, total, count) of each histogram of ``name``."""
        parts: dict[tuple[str, ...], dict[str, float]] = {}
        for names, value in self._series(name):
            parts.setdefault(tuple(names[:-1]), {})[names[-1]] = value
        found = []
        for series, got in sorted(parts.items()):
            count = got.get("count", 0.0)
            buckets = [(b, got.get(repr(b), 0.0)) for b in bounds]
            buckets.append((float("inf"), count))
            found.append((series, buckets, got.get("sum", 0.0), count))
        return found

    def durations(self) -> list[DurationRow]:
        return [DurationRow(component, strategy, buckets, total, count)
                for (component, strategy), buckets, total, count
                in self._histograms("durations", DURATION_BUCKETS)]

    def strategy_durations(self) -> list[DurationRow]:
        return [DurationRow(component, strategy, buckets, total, count, outcome)
                for (component, strategy, outcome), buckets, total, count
                in self._histograms("strategy-durations", STRATEGY_BUCKETS)]
