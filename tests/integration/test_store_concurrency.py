"""The SQLite store's write machinery under concurrency: the per-process writer lock, the
bounded retry on another process's lock, and the webhook's group commit
(``enqueue_alerts``). Exact counts and rows, never timings (docs/BENCHMARKS.md measures timings)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from engine.store.base import StoreUnavailable
from engine.store.sqlite import SQLiteStore
from engine.store.sqlite.group_commit import Enqueue, GroupCommit

JOIN = 60   # seconds: bound on any thread or process of these tests


def alert(key: str, status: str = "firing") -> tuple[str, dict]:
    return key, {"status": status, "labels": {"alertname": "A", "k": key}, "fingerprint": key}


def rows(path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path, timeout=15)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def run_threads(target, n: int) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"


def test_concurrent_enqueues_count_every_alert_once(tmp_path):
    """16 threads, overlapping keys (and a key twice in one call): each call's counts add
    up to its alerts, each key is accepted exactly once and journaled once, in the
    payload of whichever call accepted it."""
    path = tmp_path / "r.db"
    store = SQLiteStore(path)
    results: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(40):
                keys = [f"k{(7 * i + 3 * j + n) % 97}" for n in range(4)]
                items = [alert(k) for k in keys] + [alert(keys[0])]   # one twice
                accepted, duplicates = store.enqueue_alerts(items)
                results.append((accepted, duplicates, len(items)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    run_threads(writer, 16)
    assert not errors
    assert all(a + d == n for a, d, n in results)
    assert all(d >= 1 for _, d, _ in results)   # the repeated key at least
    journaled = [k for (k,) in rows(path, "SELECT dedup_key FROM intake ORDER BY id")]
    expected = {f"k{(7 * i + 3 * j + n) % 97}" for i in range(16) for j in range(40)
                for n in range(4)}
    assert sum(a for a, _, _ in results) == len(journaled) == len(set(journaled)) == \
        len(expected) == 97
    assert set(journaled) == expected
    assert len(rows(path, "SELECT * FROM intake_seen")) == 97
    for key, payload in rows(path, "SELECT dedup_key, payload FROM intake"):
        assert json.loads(payload)["fingerprint"] == key


def test_a_firing_repeat_is_journaled_once_however_many_callers_repeat_it(tmp_path):
    path = tmp_path / "r.db"
    store = SQLiteStore(path)
    assert store.enqueue_alerts([alert("f"), alert("r", "resolved")]) == (2, 0)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("UPDATE intake_seen SET seen_at = seen_at - 3600")   # an hour ago
    db.close()
    counts: list[tuple[int, int]] = []
    run_threads(lambda i: counts.append(store.enqueue_alerts(
        [alert("f"), alert("f"), alert("r", "resolved")], repeat_after=60)), 8)
    assert counts == [(0, 3)] * 8
    assert Counter(k for (k,) in rows(path, "SELECT dedup_key FROM intake")) == \
        {"f": 2, "r": 1}   # the first and one repeat; a resolve never repeats


def _process_writer(path: str, proc: int, barrier, out) -> None:
    store = SQLiteStore(path)
    got: list[tuple[int, int]] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        for j in range(30):
            result = store.enqueue_alerts([alert(f"p{proc}-{i}-{j}"), alert(f"shared-{j}")])
            with lock:
                got.append(result)

    barrier.wait()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    out.put(got)


def test_processes_and_threads_enqueueing_at_once_lose_and_double_nothing(tmp_path):
    path = str(tmp_path / "r.db")
    SQLiteStore(path)
    mp = multiprocessing.get_context("spawn")
    barrier, out = mp.Barrier(3), mp.Queue()
    procs = [mp.Process(target=_process_writer, args=(path, n, barrier, out))
             for n in range(3)]
    for p in procs:
        p.start()
    got = [r for _ in procs for r in out.get(timeout=JOIN)]
    for p in procs:
        p.join(JOIN)
    assert len(got) == 3 * 4 * 30
    assert all(a + d == 2 for a, d in got)
    # 360 own alerts, 30 shared ones: each accepted once
    assert sum(a for a, _ in got) == 390
    assert rows(path, "SELECT COUNT(*), COUNT(DISTINCT dedup_key) FROM intake") == [(390, 390)]


HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()          # until the test says so (or closes the pipe)
db.execute("COMMIT")
"""


@pytest.fixture
def other_process(tmp_path):
    """``hold()`` has another process take the write lock of ``path`` until
    ``release()``. (Opening a store writes: make the test's store before ``hold()``.)"""
    path = tmp_path / "r.db"
    procs: list[subprocess.Popen] = []

    def hold() -> None:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"

    def release() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.stdin.write("\n")
                proc.stdin.flush()
                proc.wait(JOIN)

    yield path, hold, release
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(JOIN)


def test_a_lock_held_by_another_process_past_the_timeout_is_store_unavailable(other_process):
    path, hold, release = other_process
    store = SQLiteStore(path, busy_timeout=0.3)
    hold()
    outcomes: list[object] = []

    def writer(i: int) -> None:   # several callers: the leader and its followers
        try:
            outcomes.append(store.enqueue_alerts([alert(f"k{i}")]))
        except StoreUnavailable as exc:
            outcomes.append(exc)

    run_threads(writer, 6)
    assert len(outcomes) == 6 and all(isinstance(o, StoreUnavailable) for o in outcomes)
    with pytest.raises(StoreUnavailable):
        store.ack_intake([1])
    assert store.intake_depth(time.time())[0] == 0   # WAL: reads go on meanwhile
    release()
    assert store.enqueue_alerts([alert("k0"), alert("k1")]) == (2, 0)   # nothing half-done
    assert rows(path, "SELECT COUNT(*) FROM intake") == [(2,)]


def test_a_lock_freed_within_the_timeout_is_waited_for(other_process):
    path, hold, release = other_process
    store = SQLiteStore(path, busy_timeout=30)
    hold()
    results: list[tuple[int, int]] = []
    writers = [threading.Thread(target=lambda i=i: results.append(
        store.enqueue_alerts([alert(f"k{i}")])), daemon=True) for i in range(4)]
    for t in writers:
        t.start()
    time.sleep(0.3)   # the writers are waiting for the other process
    assert not results
    release()
    for t in writers:
        t.join(JOIN)
    assert sorted(results) == [(1, 0)] * 4


def soon(seconds: float) -> float:
    """A request's deadline, ``seconds`` from now."""
    return time.monotonic() + seconds


def test_group_commit_batches_the_callers_that_wait_and_answers_each():
    group = GroupCommit()
    first_in = threading.Event()
    go_on = threading.Event()
    batches: list[list[str]] = []

    def journal(batch: list[Enqueue]) -> None:
        batches.append([r.items[0][0] for r in batch])
        if len(batches) == 1:
            first_in.set()
            assert go_on.wait(JOIN)
        for r in batch:
            r.result = (len(r.items), int(r.items[0][0][1:]))

    answers: dict[str, tuple[int, int]] = {}

    def caller(name: str, size: int) -> None:
        request = Enqueue([(name, {})] * size, ["{}"] * size, None, soon(JOIN))
        answers[name] = group.submit(request, journal)

    lead = threading.Thread(target=caller, args=("a0", 1))
    lead.start()
    assert first_in.wait(JOIN)
    others = [threading.Thread(target=caller, args=(f"b{i}", i + 2)) for i in range(3)]
    for t in others:
        t.start()
    deadline = time.monotonic() + JOIN
    while len(group._pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    go_on.set()
    for t in [lead, *others]:
        t.join(JOIN)
    assert batches[0] == ["a0"]
    assert sorted(batches[1]) == ["b0", "b1", "b2"] and len(batches) == 2
    assert answers == {"a0": (1, 0), "b0": (2, 0), "b1": (3, 1), "b2": (4, 2)}
    assert not group._leading and not group._pending


def test_group_commit_failure_reaches_every_caller_and_the_next_batch_still_runs():
    group = GroupCommit()
    first_in, go_on = threading.Event(), threading.Event()
    calls = 0

    def journal(batch: list[Enqueue]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_in.set()
            assert go_on.wait(JOIN)
            raise StoreUnavailable("disk on fire")
        for r in batch:
            r.result = (1, 0)

    outcomes: list[object] = []

    def caller() -> None:
        try:
            outcomes.append(group.submit(Enqueue([("k", {})], ["{}"], None, soon(JOIN)),
                                         journal))
        except StoreUnavailable as exc:
            outcomes.append(str(exc))

    lead = threading.Thread(target=caller)
    lead.start()
    assert first_in.wait(JOIN)
    go_on.set()
    lead.join(JOIN)
    assert outcomes == ["disk on fire"]
    run_threads(lambda i: caller(), 4)
    assert outcomes[1:] == [(1, 0)] * 4


def test_group_commit_caller_that_waits_too_long_withdraws_its_alerts():
    group = GroupCommit()
    first_in, go_on = threading.Event(), threading.Event()
    journaled: list[str] = []

    def journal(batch: list[Enqueue]) -> None:
        journaled.extend(r.items[0][0] for r in batch)
        if len(journaled) == 1:
            first_in.set()
            assert go_on.wait(JOIN)
        for r in batch:
            r.result = (1, 0)

    lead = threading.Thread(target=lambda: group.submit(
        Enqueue([("first", {})], ["{}"], None, soon(JOIN)), journal))
    lead.start()
    assert first_in.wait(JOIN)
    with pytest.raises(StoreUnavailable):
        group.submit(Enqueue([("late", {})], ["{}"], None, soon(0.2)), journal)
    go_on.set()
    lead.join(JOIN)
    assert journaled == ["first"] and not group._pending and not group._leading


def test_every_caller_answers_by_its_own_wait_whatever_the_store_timeout(other_process):
    """The webhook bounds each notification's wait for the store (webhook.store_wait),
    below the store's own busy timeout: leader and followers alike answer 503 while the
    other process still holds the lock, so Alertmanager retries instead of timing out."""
    path, hold, release = other_process
    store = SQLiteStore(path, busy_timeout=600)
    hold()
    outcomes: list[object] = []

    def writer(i: int) -> None:
        try:
            outcomes.append(store.enqueue_alerts([alert(f"k{i}")], wait=0.3))
        except StoreUnavailable as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert not any(t.is_alive() for t in threads)          # answered, lock still held
    assert len(outcomes) == 6 and all(isinstance(o, StoreUnavailable) for o in outcomes)
    release()
    assert store.enqueue_alerts([alert(f"k{i}") for i in range(6)], wait=5) == (6, 0)
