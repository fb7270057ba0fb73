"""The ``IntakeJournal`` protocol: alerts journaled once per key, claimed with a lease,
acknowledged with what was made of them (the kept deliveries)."""

from __future__ import annotations

import os
import time

from engine.store import open_store
from engine.store.housekeeping import Housekeeping
from engine.store.intake_journal import IntakeJournal
from tests.unit.store.backends import uses
from tests.unit.store.races import race
from tests.unit.store.samples import delivery

pytestmark = uses(IntakeJournal)


def test_intake_dedups_and_reclaims_after_the_lease(store):
    assert store.enqueue_alerts([("k1", {"a": 1}), ("k2", {"a": 2}), ("k1", {"a": 1})]) == \
        (2, 1)
    assert store.enqueue_alerts([("k1", {"a": 1})]) == (0, 1)
    claimed = store.claim_intake("w1", 10, lease=0.2)
    assert [i.payload["a"] for i in claimed] == [1, 2]
    assert store.claim_intake("w2", 10, lease=0.2) == []
    time.sleep(0.25)
    again = store.claim_intake("w2", 10, lease=10)       # a dead worker's items come back
    assert len(again) == 2
    store.ack_intake(i.id for i in again)
    assert store.intake_depth(time.time())[0] == 0


@uses(Housekeeping)
def test_deliveries_are_kept_with_the_acknowledgement_newest_first_and_pruned(store):
    def delivery_at(fingerprint, status, at, **kw):
        return delivery(fingerprint, status, None, at, f"{status} at {at}", **kw)

    store.enqueue_alerts([("k1", {"a": 1}), ("k2", {"a": 2})])
    items = store.claim_intake("w", 10, 60)
    now = time.time()
    store.ack_intake([i.id for i in items], [
        delivery_at("fp-a", "firing", now - 100, payload={"labels": {"x": "1"}}),
        delivery_at("fp-b", "firing", now - 50, incident_id="inc-b")])
    assert store.intake_depth(now)[0] == 0
    store.ack_intake([], [delivery_at("fp-a", "resolved", now, replayed_by="bob")])
    got = store.deliveries(fingerprint="fp-a")
    assert [(d.status, d.replayed_by) for d in got] == [("resolved", "bob"), ("firing", None)]
    assert got[1].payload == {"labels": {"x": "1"}} and got[0].id > got[1].id
    assert [d.fingerprint for d in store.deliveries(incident_id="inc-b")] == ["fp-b"]
    assert len(store.deliveries(limit=2)) == 2
    store.delete_before(now - 10)
    assert [d.status for d in store.deliveries()] == ["resolved"]


def test_repeats_of_an_alert_are_one_row_with_a_count_and_the_latest_outcome(store):
    """Alertmanager repeats a firing alert every repeat_interval: one row per
    (fingerprint, startsAt, status), counted, with the first and the latest outcome."""
    now = time.time()
    first = {"labels": {"alertname": "RedisDown"}, "n": 1}
    store.ack_intake([], [
        delivery("fp-a", "firing", "s1", now - 30, "opened incident inc-1",
                 incident_id="inc-1", payload=first),
        delivery("fp-a", "firing", "s1", now - 20, "attached to incident inc-1",
                 incident_id="inc-1", payload=first)])
    store.ack_intake([], [delivery("fp-a", "firing", "s1", now - 10, "refused: switch",
                                   run_id="run-9", replayed_by="bob",
                                   payload={**first, "n": 3})])
    [row] = store.deliveries(fingerprint="fp-a")
    assert (row.count, row.first_outcome, row.outcome) == (3, "opened incident inc-1",
                                                           "refused: switch")
    assert (row.first_received_at, row.first_processed_at) == (now - 30, now - 30)
    assert (row.received_at, row.processed_at) == (now - 10, now - 10)
    assert (row.incident_id, row.run_id, row.replayed_by) == ("inc-1", "run-9", "bob")
    assert row.payload == {**first, "n": 3}
    assert store.deliveries(incident_id="inc-1") == [row]


def test_only_the_newest_firing_delivery_of_an_alert_keeps_its_payload(store):
    """A payload is kept where a replay needs it: the newest firing delivery of each
    fingerprint; a resolve needs none."""
    now = time.time()
    one, two = {"labels": {"x": "1"}}, {"labels": {"x": "2"}}
    store.ack_intake([], [delivery("fp-a", "firing", "s1", now - 30, "opened", payload=one),
                          delivery("fp-b", "firing", "s1", now - 30, "opened", payload=one)])
    store.ack_intake([], [delivery("fp-a", "resolved", "s1", now - 20, "closed")])
    assert [d.payload for d in store.deliveries(fingerprint="fp-a")] == [{}, one]
    store.ack_intake([], [delivery("fp-a", "firing", "s2", now - 10, "opened", payload=two)])
    got = store.deliveries(fingerprint="fp-a")
    assert [(d.status, d.starts_at, d.payload) for d in got] == [
        ("firing", "s2", two), ("resolved", "s1", {}), ("firing", "s1", {})]
    assert [d.payload for d in store.deliveries(fingerprint="fp-b")] == [one]


def test_a_firing_repeat_is_journaled_again_after_a_while_a_resolve_never(store):
    firing, resolved = {"status": "firing"}, {"status": "resolved"}
    assert store.enqueue_alerts([("f", firing), ("r", resolved)], repeat_after=0.2) == (2, 0)
    claimed = store.claim_intake("w", 10, 60)
    store.ack_intake(i.id for i in claimed)
    assert store.enqueue_alerts([("f", firing), ("r", resolved)], repeat_after=0.2) == (0, 2)
    assert store.intake_depth(time.time())[0] == 0          # too soon: deduplicated
    time.sleep(0.25)
    assert store.enqueue_alerts([("f", firing), ("r", resolved)], repeat_after=0.2) == (0, 2)
    assert [i.dedup_key for i in store.claim_intake("w", 10, 60)] == ["f"]
    assert store.enqueue_alerts([("f", firing)]) == (0, 1)  # without repeat_after: never


def test_claims_are_listed_exactly_and_released_to_their_place_in_the_queue(store):
    store.enqueue_alerts([(f"k{i}", {"n": i}) for i in range(4)])
    first = store.claim_intake("w1", 2, lease=60)
    second = store.claim_intake("w2", 1, lease=120)
    assert [i.id for i in first] == sorted(i.id for i in first) < [i.id for i in second]
    now = time.time()
    claims = store.intake_claims(now)
    assert sorted(holder for holder, _ in claims) == ["w1", "w2"]  # a batch: one claim
    w1, w2 = (next(until for holder, until in claims if holder == h) for h in ("w1", "w2"))
    assert now < w1 <= now + 60 < w2
    assert store.intake_claims(w1 + 1) == [("w2", w2)]           # a lapsed claim: not listed
    assert store.release_intake([("w1", w1 + 0.001), ("w3", w1)]) == 0   # only that claim
    assert store.release_intake([("w1", w1)]) == 2
    assert [i.payload["n"] for i in store.claim_intake("w3", 10, 60)] == [0, 1, 3]
    assert store.intake_depth(time.time())[0] == 4


def _intake_race(url, barrier, results):
    store = open_store(url)
    barrier.wait()
    counts = store.enqueue_alerts([(f"k{i}", {"n": i}) for i in range(50)])
    barrier.wait()
    claimed = []
    while batch := store.claim_intake(str(os.getpid()), 3, 60):
        claimed += [i.id for i in batch]
    results.put((counts, claimed))
    store.close()


def test_racing_processes_journal_each_key_once_and_claim_each_item_once(store, store_url):
    got = race(_intake_race, store_url, n=4)
    assert sum(accepted for (accepted, _), _ in got) == 50
    assert all(accepted + duplicates == 50 for (accepted, duplicates), _ in got)
    claimed = [i for _, ids in got for i in ids]
    assert len(claimed) == len(set(claimed)) == 50


def _ack_race(url, barrier, results):
    """Claims a few items at a time and acknowledges each batch with its deliveries, as
    a worker does; what went wrong acknowledging (None: nothing)."""
    store = open_store(url)
    barrier.wait()
    acked, error = 0, None
    try:
        while batch := store.claim_intake(str(os.getpid()), 2, 60):
            store.ack_intake([i.id for i in batch], [
                delivery(f"fp-{i.payload['n']}", "firing", "s1", time.time(), "opened")
                for i in batch])
            acked += len(batch)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which asserts
        error = repr(exc)
    results.put((acked, error))
    store.close()


def test_racing_acknowledgements_all_land_each_delivery_kept_once(store, store_url):
    """Workers of several processes acknowledging at once: on Redis their transactions
    WATCH the same index, so some are run again; a retry must not fail (it did: the
    fresh delivery ids were an iterator the first try had used up, StopIteration) and
    leave processed alerts claimed, to be processed again when the claim lapses."""
    store.enqueue_alerts([(f"k{i}", {"n": i}) for i in range(120)])
    got = race(_ack_race, store_url, n=4)
    assert [error for _, error in got if error] == []
    assert sum(acked for acked, _ in got) == 120
    assert store.intake_depth(time.time())[0] == 0
    kept = store.deliveries(limit=1000)
    assert len(kept) == len({d.id for d in kept}) == 120
