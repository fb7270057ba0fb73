"""The ``OutcomeMetrics`` protocol: counters and duration histograms."""

from __future__ import annotations

import pytest


def test_counters_and_histograms_accumulate(store):
    store.record_outcome("c", "s", "succeeded", 0.3)
    store.record_outcome("c", "s", "succeeded", 20.0)
    store.record_outcome("c", "s", "refused", None)
    counters = {(r.outcome): r.value for r in store.counters()}
    assert counters == {"succeeded": 2, "refused": 1}
    [hist] = store.durations()
    assert hist.count == 2 and hist.total == pytest.approx(20.3)
    assert dict(hist.buckets)[1.0] == 1 and dict(hist.buckets)[30.0] == 2


def test_a_deferral_is_counted_by_the_gate_that_held_it_back(store):
    store.record_outcome("c", "s", "deferred", None, gate="fleet")
    store.record_outcome("c", "t", "deferred", None, gate="fleet")
    store.record_outcome("c", "s", "deferred", None, gate="lock")
    store.record_outcome("c", "s", "succeeded", 1.0)
    assert {(r.component, r.gate): r.value for r in store.deferrals()} == {
        ("c", "fleet"): 2, ("c", "lock"): 1}
    assert {(r.strategy, r.outcome): r.value for r in store.counters()} == {
        ("s", "deferred"): 2, ("t", "deferred"): 1, ("s", "succeeded"): 1}
