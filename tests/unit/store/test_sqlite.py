"""The SQLite backend's own machinery: its file, its migrations from older stores, and
its writer lock across ``fork``. (What every backend does is tested per protocol.)"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.lifecycle import RunStatus
from engine.store import open_store
from engine.store.sqlite import SQLiteStore
from engine.store.sqlite.write_locks import write_lock
from tests.unit.store.samples import delivery, incident, run

JOIN = 30   # seconds: bound on any thread or process of these tests


def an_older_store(path: Path, *statements: str | tuple[str, tuple]) -> None:
    """A database file as an earlier version left it: ``statements`` (SQL, or SQL and its
    parameters) run on it."""
    db = sqlite3.connect(path)
    try:
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            db.execute(sql, params)
        db.commit()
    finally:
        db.close()


def test_deliveries_kept_one_per_row_before_are_folded_when_the_store_opens(tmp_path):
    path = tmp_path / "old.db"
    old = {"labels": {"alertname": "RedisDown"}}
    own = {"labels": {"alertname": "RecoveryExhausted", "source": "infra-recovery"}}
    an_older_store(
        path,
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT, "
        "status TEXT, starts_at TEXT, received_at REAL, processed_at REAL, outcome TEXT, "
        "incident_id TEXT, run_id TEXT, replayed_by TEXT, payload TEXT)",
        "CREATE INDEX deliveries_fingerprint ON deliveries(fingerprint, id)",
        *[("INSERT INTO deliveries (fingerprint, status, starts_at, received_at, "
           "processed_at, outcome, incident_id, payload) VALUES (?, ?, 's1', ?, ?, ?, ?, ?)",
           (fp, status, at, at, outcome, "inc-1" if fp == "fp-a" else None,
            json.dumps(payload)))
          for at, (fp, status, outcome, payload) in enumerate([
              ("fp-a", "firing", "opened incident inc-1", old),
              ("fp-a", "firing", "attached", old),
              ("fp-a", "firing", "refused", old),
              ("fp-own", "firing", "the engine's own alert", own),
              ("fp-a", "resolved", "closed", old)])])
    store = open_store(f"sqlite:///{path}")
    try:
        got = store.deliveries(fingerprint="fp-a")
        assert [(d.status, d.count, d.first_outcome, d.outcome) for d in got] == [
            ("resolved", 1, "closed", "closed"),
            ("firing", 3, "opened incident inc-1", "refused")]
        assert (got[1].first_processed_at, got[1].processed_at) == (0, 2)
        assert [d.payload for d in got] == [{}, old]
        [mine] = store.deliveries(fingerprint="fp-own")
        assert mine.payload == {}
        store.ack_intake([], [delivery("fp-a", "firing", "s1", 9, "attached again")])
        assert store.deliveries(fingerprint="fp-a")[0].count == 4
    finally:
        store.close()


def test_the_sqlite_file_is_private(tmp_path):
    path = tmp_path / "home" / "recovery.db"
    open_store(f"sqlite:///{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_store_created_before_a_column_was_added_opens_and_gains_it(tmp_path):
    path = tmp_path / "old.db"
    an_older_store(
        path,
        "CREATE TABLE incidents (id TEXT PRIMARY KEY, runbook TEXT NOT NULL, "
        "component TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL, "
        "failure_type TEXT, trigger TEXT, requested_by TEXT, fingerprint TEXT, "
        "labels TEXT, opened_at REAL, updated_at REAL, closed_at REAL, reason TEXT, "
        "next_try_at REAL, step INTEGER, only_strategy TEXT, forced INTEGER, "
        "approved_step INTEGER, approved_by TEXT, attempt_id TEXT, attempts INTEGER, "
        "verify_until REAL, open_key TEXT UNIQUE)",
        "CREATE TABLE runs (id TEXT PRIMARY KEY, component TEXT NOT NULL, "
        "runbook TEXT, strategy TEXT, target TEXT, status TEXT NOT NULL, trigger TEXT, "
        "incident_id TEXT, attempt_id TEXT, kind TEXT, started_at REAL, "
        "finished_at REAL, check_mode INTEGER, fingerprint TEXT, requested_by TEXT, "
        "approved_by TEXT, forced INTEGER, reason TEXT, runbook_sha256 TEXT, "
        "playbook_sha256 TEXT, heartbeat_at REAL, claimed_by TEXT, "
        "claimed_until REAL)",
        "INSERT INTO runs (id, component, status) VALUES ('run-old', 'c', 'succeeded')",
        "INSERT INTO incidents (id, runbook, component, target, state) "
        "VALUES ('inc-old', 'c', 'c', 't', 'recovered')")
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.get_run("run-old").hosts == []
        store.record_host_outcomes("c", "s", {"ok": 1})   # a table it did not have
        assert [r.value for r in store.host_counters()] == [1]
        opened = incident()
        opened.starts_at = "2024-05-01T10:00:00.000000Z"
        store.open_incident(opened)
        assert store.get_incident(opened.id).starts_at == opened.starts_at
        assert store.get_incident("inc-old").context == {}   # no context column then
        said = incident(target="h2")   # h1 has its open incident
        said.context = {"check": "ping", "latency_ms": 5012}
        store.open_incident(said)
        assert store.get_incident(said.id).context == said.context
        refused = run(status=RunStatus.REFUSED, gate="kill_switch")
        store.add_run(refused)
        assert store.get_run(refused.id).gate == "kill_switch"
        ran = run(status=RunStatus.SUCCEEDED, hosts=[{"host": "h1", "outcome": "ok",
                                                      "reason": ""}])
        store.add_run(ran)
        assert store.get_run(ran.id).hosts == ran.hosts
    finally:
        store.close()


# Holds the write lock of the database at argv[1] until a line comes on stdin.
HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def test_a_child_forked_while_a_thread_waits_to_write_can_write(tmp_path):
    """A thread of the parent holds the process's writer lock (it waits for another
    process's write) when the process forks: the child (a worker process) waits for
    that other process, as its parent does, not for the thread's writer lock, which no
    thread of the child could ever free; stores made before the fork too."""
    path = tmp_path / "fork.db"
    store = SQLiteStore(path, busy_timeout=JOIN / 3)
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert other.stdout.readline().strip() == "locked"
        writer = threading.Thread(target=store.set_value, args=("k", "parent"), daemon=True)
        writer.start()
        turn = write_lock(str(path)).lock
        deadline = time.monotonic() + JOIN
        while turn.acquire(blocking=False):   # until the writer holds it
            turn.release()
            assert time.monotonic() < deadline, "the writer never took its turn"
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:   # the child: this thread alone, the parent's writer is not here
            code = 1
            try:
                fresh = SQLiteStore(path, busy_timeout=JOIN / 3)
                fresh.set_value("child", "fresh store")
                before = threading.Thread(target=store.set_value,
                                          args=("old", "older store"))
                before.start()   # a new thread: a connection of its own, not the parent's
                before.join(JOIN)
                code = 0 if (fresh.get_value("child"), fresh.get_value("old")) == (
                    "fresh store", "older store") else 2
            finally:
                os._exit(code)
        other.stdin.write("\n")   # the other process commits: the writers go on
        other.stdin.flush()
        writer.join(JOIN)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child could not write"
        assert store.get_value("k") == "parent"
    finally:
        other.kill()
        other.wait(JOIN)


def test_pruning_a_refusal_record_leaves_none_of_its_member_rows(tmp_path):
    """What every backend prunes is tested per protocol; here, that no row of the
    alerts a pruned refusal record counted stays behind in SQLite (they would grow
    without bound)."""
    store = SQLiteStore(tmp_path / "recovery.db")
    t = time.time() - 3600
    for i in range(3):
        store.add_refusal(run(status=RunStatus.REFUSED, started_at=t, finished_at=t,
                              fingerprint=f"fp{i}", incident_id=f"inc-{i}"), "key",
                          max_fingerprints=5)
    assert store._read("SELECT COUNT(*) AS n FROM refusal_members")[0]["n"] == 3
    assert len(store.delete_before(time.time())) == 1
    assert store._read("SELECT COUNT(*) AS n FROM refusal_members")[0]["n"] == 0
    store.close()
