"""A full disk under a running service: a real tmpfs of a few MiB holds the artifacts or
the whole RECOVERY_HOME, and is filled to the last byte while alerts come in and steps
start. What a full disk stops must end with its reason on the record, nothing accepted
may be thrown away, and everything goes on by itself once the space is back."""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import UTC, datetime

from tests.service import Served, store_rows, wait_for
from tests.test_reload import post_alerts
from tests.test_serve import alert_payload, touch_runbook
from tests.tmpfs import filled, mounted, needs_root

pytestmark = needs_root


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def runs_on(served: Served, target: str) -> list[sqlite3.Row]:
    return store_rows(served.home, "SELECT * FROM runs WHERE runbook = 'touchy' "
                                   "AND target = ? ORDER BY started_at", target)


def incident_on(served: Served, target: str) -> sqlite3.Row | None:
    found = store_rows(served.home, "SELECT * FROM incidents WHERE runbook = 'touchy' "
                                    "AND target = ? ORDER BY opened_at DESC LIMIT 1", target)
    return found[0] if found else None


def touches(env, target: str) -> int:
    """How many times the step really ran on ``target`` (every process appends a line)."""
    return sum(1 for line in env.traced() if line.startswith(f"touch {target} "))


def test_a_step_whose_record_cannot_be_written_ends_and_its_incident_goes_on(
        serve, engine_env, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    touch_runbook(engine_env, markers, trace=engine_env.trace)
    served = serve()
    served.home.mkdir(mode=0o700)
    with mounted(served.home / "artifacts", "1m") as artifacts:
        try:
            served.start()
            served.wait_ready()
            with filled(artifacts):
                assert post_alerts(served, alert_payload(markers, "cache-1"))["accepted"] == 1
                ended = wait_for(lambda: [r for r in runs_on(served, "cache-1")
                                          if r["status"] != "running"], 30)
                statuses = [r["status"] for r in runs_on(served, "cache-1")]
                assert ended, f"the run stayed {statuses}\n{served.stderr()[-3000:]}"
                first = ended[0]
                # Its record could not be written, so the step never started: said so.
                assert first["status"] == "interrupted", dict(first)
                assert "No space left on device" in first["reason"], first["reason"]
                assert not (markers / "cache-1.marker").exists()
                assert touches(engine_env, "cache-1") == 0
                incident = incident_on(served, "cache-1")
                assert incident["state"] in ("open", "remediating"), dict(incident)
            # The space is back: the incident goes on by itself.
            assert wait_for(lambda: (incident_on(served, "cache-1") or {"state": ""})["state"]
                            == "recovered", 60), (dict(incident_on(served, "cache-1")),
                                                  served.stderr()[-3000:])
            assert (markers / "cache-1.marker").exists()
            assert [r["status"] for r in runs_on(served, "cache-1")][-1] == "succeeded"
            assert not [r for r in runs_on(served, "cache-1") if r["status"] == "running"]
            # ... and a new alert for that host acts.
            assert post_alerts(served, alert_payload(markers, "cache-1",
                                                     starts_at=now_iso()))["accepted"] == 1
            assert wait_for(lambda: touches(engine_env, "cache-1") == 2, 30), \
                served.stderr()[-3000:]
        finally:
            served.terminate()


def caught(work) -> BaseException:
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - the error itself is what is tested
        return exc
    raise AssertionError("no error")


def test_what_a_full_or_read_only_disk_raises_is_an_outage_and_a_bad_value_is_not(tmp_path):
    from engine.outages import is_outage
    from engine.store.sqlite import SQLiteStore

    with mounted(tmp_path / "disk", "1m") as disk:
        db = sqlite3.connect(disk / "full.db", isolation_level=None)
        db.execute("CREATE TABLE t (v TEXT)")
        with filled(disk):
            no_space = caught(lambda: (disk / "file").write_text("x" * 10000))
            sqlite_full = caught(lambda: db.execute("INSERT INTO t VALUES (?)",
                                                    ("x" * 100000,)))
        db.close()
        store = SQLiteStore(disk / "recovery.db")
        store.close()
        reader = sqlite3.connect(f"file:{disk / 'recovery.db'}?mode=ro", uri=True)
        read_only_db = caught(lambda: reader.execute("DELETE FROM kv"))
        reader.close()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, timeout=30)
        read_only_fs = caught(lambda: (disk / "other").write_text("x"))
        store_down = caught(lambda: SQLiteStore(disk / "recovery.db"))
    assert "No space left" in str(no_space)
    assert "database or disk is full" in str(sqlite_full)
    assert "readonly database" in str(read_only_db)
    assert "Read-only file system" in str(read_only_fs)
    for exc in (no_space, sqlite_full, read_only_db, read_only_fs, store_down):
        assert is_outage(exc), repr(exc)
    try:
        raise RuntimeError("wrapped") from no_space
    except RuntimeError as exc:
        assert is_outage(exc)
    for exc in (caught(lambda: "\ud800".encode()), ValueError("bad labels"),
                caught(lambda: sqlite3.connect(":memory:").execute("SELECT ?", ({},))),
                FileNotFoundError(2, "No such file or directory"), KeyError("x")):
        assert not is_outage(exc), repr(exc)
