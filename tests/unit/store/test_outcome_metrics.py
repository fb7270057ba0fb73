"""The ``OutcomeMetrics`` protocol: counters and duration histograms."""

from __future__ import annotations

import pytest

from engine.store.outcome_metrics import OutcomeMetrics
from tests.unit.store.backends import uses

pytestmark = uses(OutcomeMetrics)


def test_counters_and_histograms_accumulate(store):
    store.record_outcome("c", "s", "succeeded", 0.3)
    store.record_outcome("c", "s", "succeeded", 20.0)
    store.record_outcome("c", "s", "refused", None)
    counters = {(r.outcome): r.value for r in store.counters()}
    assert counters == {"succeeded": 2, "refused": 1}
    [hist] = store.durations()
    assert hist.count == 2 and hist.total == pytest.approx(20.3)
    assert dict(hist.buckets)[1.0] == 1 and dict(hist.buckets)[30.0] == 2


def test_host_outcomes_add_up_per_component_strategy_and_outcome(store):
    store.record_host_outcomes("redis", "restart", {"ok": 2, "unreachable": 1})
    store.record_host_outcomes("redis", "restart", {"ok": 1, "failed": 0})
    store.record_host_outcomes("chromadb", "restart", {"failed": 1})
    got = {(r.component, r.strategy, r.outcome): r.value for r in store.host_counters()}
    assert got == {("chromadb", "restart", "failed"): 1, ("redis", "restart", "ok"): 3,
                   ("redis", "restart", "unreachable"): 1}
    assert store.counters() == []   # runs are counted apart


def test_a_deferral_is_counted_by_the_gate_that_held_it_back(store):
    store.record_outcome("c", "s", "deferred", None, gate="fleet")
    store.record_outcome("c", "t", "deferred", None, gate="fleet")
    store.record_outcome("c", "s", "deferred", None, gate="lock")
    store.record_outcome("c", "s", "succeeded", 1.0)
    assert {(r.component, r.gate): r.value for r in store.deferrals()} == {
        ("c", "fleet"): 2, ("c", "lock"): 1}
    assert {(r.strategy, r.outcome): r.value for r in store.counters()} == {
        ("s", "deferred"): 2, ("t", "deferred"): 1, ("s", "succeeded"): 1}


def test_strategy_durations_by_outcome_reach_hours(store):
    store.record_outcome("c", "s", "succeeded", 4.0)
    store.record_outcome("c", "s", "succeeded", 5400.0)     # 1.5 h
    store.record_outcome("c", "s", "failed", 30.0)
    store.record_outcome("c", "s", "refused", None)          # no duration, no sample
    got = {row.outcome: row for row in store.strategy_durations()}
    assert set(got) == {"succeeded", "failed"}
    ok = got["succeeded"]
    assert ok.count == 2 and ok.total == pytest.approx(5404.0)
    buckets = dict(ok.buckets)
    assert buckets[5.0] == 1 and buckets[3600.0] == 1 and buckets[7200.0] == 2
    assert buckets[float("inf")] == 2
    assert dict(got["failed"].buckets)[15.0] == 0 and dict(got["failed"].buckets)[30.0] == 1
