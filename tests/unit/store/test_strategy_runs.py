"""The ``StrategyRuns`` protocol: per-strategy counts, success times and last failures
over a window, from the runs the run index holds."""

from __future__ import annotations

from engine.lifecycle import RunStatus
from engine.store.run_index import RunIndex
from engine.store.strategy_runs import LastFailure, StrategyCount, StrategyRuns, SuccessTimes
from tests.unit.store.backends import uses
from tests.unit.store.samples import run

pytestmark = uses(StrategyRuns, RunIndex)
NOW = 1_800_000_000.0


def add(store, strategy, status, took, *, ago=60.0, reason="", check=False):
    started = NOW - ago
    store.add_run(run(strategy=strategy, status=status, started_at=started,
                      finished_at=started + took, reason=reason, check_mode=check))


def test_counted_runs_of_the_window_give_each_strategy_s_figures(store):
    for took in (1.0, 2.0, 3.0, 10.0):
        add(store, "restart", RunStatus.SUCCEEDED, took)
    add(store, "restart", RunStatus.FAILED, 5.0, ago=120, reason="older")
    add(store, "restart", RunStatus.INTERRUPTED, 1.0, ago=30, reason="killed")
    add(store, "restart", RunStatus.PARTIAL, 1.0, ago=90, reason="one host")
    add(store, "reload", RunStatus.SUCCEEDED, 7.0)
    # not counted: check mode, refused, outside the window
    add(store, "restart", RunStatus.FAILED, 1.0, reason="check", check=True)
    add(store, "restart", RunStatus.REFUSED, 0.0, reason="disabled")
    add(store, "restart", RunStatus.SUCCEEDED, 1.0, ago=10_000)
    since, until = NOW - 3600, NOW
    assert sorted(store.strategy_counts(since, until), key=lambda c: c.strategy) == [
        StrategyCount("c", "reload", 1, 0), StrategyCount("c", "restart", 4, 3)]
    assert sorted(store.success_times(since, until), key=lambda t: t.strategy) == [
        SuccessTimes("c", "reload", 1, 7.0, 7.0), SuccessTimes("c", "restart", 4, 2.5, 10.0)]
    assert store.last_failures(since, until) == [
        LastFailure("c", "restart", "killed", NOW - 30 + 1.0)]
    assert store.strategy_counts(NOW + 1, NOW + 2) == []
