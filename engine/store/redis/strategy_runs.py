"""Per-strategy runs in Redis (``engine.store.strategy_runs.StrategyRuns``): the counted
runs of a window are read from the run index's sorted sets by status (``run_records``),
one range per counted status, and reduced here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from engine.store.redis.run_records import RedisRunRecords
from engine.store.strategy_runs import (
    FAILED,
    SUCCEEDED,
    LastFailure,
    StrategyCount,
    StrategyRuns,
    SuccessTimes,
    success_times_of,
)


class RedisStrategyRuns(RedisRunRecords, StrategyRuns):
    """Each figure reads the runs of the statuses it counts started within the window."""

    def _counted(self, since: float, until: float,
                 statuses: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """The runs (stored values) of ``statuses`` started in ``[since, until]``, not in
        check mode."""
        with self._client() as client:
            for status in statuses:
                ids = client.zrangebyscore(self._run_index("status", status), since, until)
                raws = client.mget([self._run_key(i.decode()) for i in ids]) if ids else []
                for raw in raws:
                    values = None if raw is None else json.loads(raw)
                    if values and values["status"] == status and not values.get("check_mode"):
                        yield values

    def strategy_counts(self, since: float, until: float) -> list[StrategyCount]:
        counts: dict[tuple[str, str], list[int]] = {}
        for values in self._counted(since, until, SUCCEEDED + FAILED):
            ok_failed = counts.setdefault((values["component"], values["strategy"] or ""),
                                          [0, 0])
            ok_failed[0 if values["status"] in SUCCEEDED else 1] += 1
        return [StrategyCount(c, s, ok, failed) for (c, s), (ok, failed) in sorted(counts.items())]

    def success_times(self, since: float, until: float) -> list[SuccessTimes]:
        took: dict[tuple[str, str], list[float]] = {}
        for values in self._counted(since, until, SUCCEEDED):
            if values.get("finished_at") is not None:
                took.setdefault((values["component"], values["strategy"] or ""), []).append(
                    max(values["finished_at"] - values["started_at"], 0.0))
        return [success_times_of(c, s, durations) for (c, s), durations in sorted(took.items())]

    def last_failures(self, since: float, until: float) -> list[LastFailure]:
        last: dict[tuple[str, str], LastFailure] = {}
        for values in self._counted(since, until, FAILED):
            component, strategy = values["component"], values["strategy"] or ""
            at = values["finished_at"] if values.get("finished_at") is not None \
                else values["started_at"]
            known = last.get((component, strategy))
            if known is None or at > known.at:
                last[(component, strategy)] = LastFailure(component, strategy,
                                                          values.get("reason") or "", at)
        return [last[k] for k in sorted(last)]
