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
