"""A full disk under a running service: a real tmpfs of a few MiB holds the artifacts or
the whole RECOVERY_HOME, and is filled to the last byte while alerts come in and steps
start. What a full disk stops must end with its reason on the record, nothing accepted
may be thrown away, and everything goes on by itself once the space is back."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.store import StoreUnavailable
from tests.support.alerts import alert_payload, touch_runbook
from tests.support.service import Served, post_alerts, store_rows, wait_for
from tests.support.tmpfs import fill, filled, free, mounted

# a full disk must be real: a tmpfs of known size, which only root mounts
pytestmark = pytest.mark.requires("root", "mount")


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


@pytest.mark.slow
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


# -- the intake: an outage is retried, never a bad alert ---------------------------------

def leave_room_in_the_store(db: Path, size: int = 1 << 20) -> None:
    """As on a disk that filled under a running store: the database has free pages and
    its write-ahead log is reused from its start, so the store's small writes still fit
    where a new file's first block no longer does."""
    conn = sqlite3.connect(db, timeout=15, isolation_level=None)
    try:
        conn.execute("INSERT INTO kv VALUES ('room', ?)", ("x" * size,))
        conn.execute("PRAGMA wal_checkpoint(RESTART)")
        conn.execute("DELETE FROM kv WHERE key = 'room'")
        conn.execute("PRAGMA wal_checkpoint(RESTART)")
    finally:
        conn.close()


def leave_no_room_in_the_store(db: Path) -> None:
    """The opposite: the write-ahead log emptied to nothing, so that on a full disk the
    store's next write (a new block of the log) fails."""
    conn = sqlite3.connect(db, timeout=15, isolation_level=None)
    try:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        conn.close()


def passes(worker, count: int) -> None:
    """Worker passes as the service's loop runs them: a pass the store fails is logged
    and the next one goes on. Each also drains the intake (a pass whose heartbeat
    cannot be written stops there)."""
    for _ in range(count):
        try:
            worker.run_once()
        except StoreUnavailable:
            worker.drain_intake()
            worker.wait_idle(30)
        time.sleep(worker.INTAKE_LEASE / 2)


@pytest.mark.slow
def test_alerts_processed_while_the_disk_is_full_are_kept_until_it_has_room(engine_env):
    """Nothing acknowledged is discarded while writes fail, and every alert is processed
    once when space is back: first the store itself cannot be written (the intake keeps
    every alert), then only the artifacts cannot (refusals are recorded, counted, their
    directory missing; steps do not start and are tried again), then the space is back."""
    from engine.service.worker import Worker
    from tests.support.alerts import alert, journal

    engine_env.runbook("demo", f"""
        strategies:
          - {{name: fix, action: test.touch,
              with: {{path: "{engine_env.root}/fixed-{{{{ labels.instance }}}}",
                     trace: "{engine_env.trace}"}}}}
    """)
    known = ["cache-1", "cache-2", "localhost"]
    unknown = ["nowhere-1", "nowhere-2", "nowhere-3"]
    hosts = known + unknown
    with mounted(engine_env.root / "var", "4m") as home:
        ctx = engine_env.context()
        try:
            journal(ctx, *[alert(instance=h, fingerprint=f"fp-{h}") for h in hosts])
            worker = Worker(ctx)
            worker.INTAKE_LEASE = 1.0          # claims of items left behind lapse at once

            # 1. The store cannot be written: every alert stays in the intake.
            leave_no_room_in_the_store(home / "recovery.db")
            with filled(home):
                passes(worker, 3)
                assert ctx.store.intake_depth(time.time())[0] == len(hosts)
                assert not ctx.store.deliveries(limit=None)
                assert not ctx.store.query_runs(limit=None)
                assert not ctx.store.list_incidents()

            # 2. The store can be written, the artifacts cannot: refusals are recorded
            # (the row is the account), steps do not start and their incidents wait.
            leave_room_in_the_store(home / "recovery.db")
            with filled(home):
                passes(worker, 4)
                assert not [e for e in ctx.store.list_events(limit=1000)
                            if e.action == "alert_failed"]
                done = {d.fingerprint: d for d in ctx.store.deliveries(limit=None)}
                assert sorted(done) == sorted(f"fp-{h}" for h in hosts), sorted(done)
                refused = ctx.store.query_runs(status="refused", limit=None)
                assert sum(r.count for r in refused) == len(unknown), refused
                assert sorted(fp for r in refused for fp in r.fingerprints) == sorted(
                    f"fp-{h}" for h in unknown)
                for h in unknown:
                    assert done[f"fp-{h}"].outcome.startswith("refused:"), done[f"fp-{h}"]
                    assert not (home / "artifacts" / done[f"fp-{h}"].run_id / "run.json"
                                ).exists()
                assert not ctx.store.query_runs(status="running", limit=None)
                assert all("could not be written" in r.reason for r in
                           ctx.store.query_runs(status="interrupted", limit=None))
                assert not [h for h in known if (engine_env.root / f"fixed-{h}").exists()]

            # 3. Space is back: every alert is processed, once.
            for _ in range(40):
                passes(worker, 1)
                if all(i.state == "recovered" for i in ctx.store.list_incidents()
                       if i.target in known):
                    break
            done = {d.fingerprint: d for d in ctx.store.deliveries(limit=None)}
            assert sorted(done) == sorted(f"fp-{h}" for h in hosts), sorted(done)
            assert all(d.count == 1 for d in done.values()), done
            assert ctx.store.intake_depth(time.time())[0] == 0
            assert sorted(i.target for i in ctx.store.list_incidents()
                          if i.state == "recovered") == sorted(known)
            assert sorted(touches(engine_env, h) for h in known) == [1, 1, 1]
            assert not [e for e in ctx.store.list_events(limit=1000)
                        if e.action == "alert_failed"]
            assert not ctx.store.query_runs(status="running", limit=None)
        finally:
            ctx.store.close()


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
        store_down = caught(lambda: SQLiteStore(disk / "recovery.db").set_value("k", "v"))
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


@pytest.mark.slow
def test_a_step_that_loses_its_record_while_it_runs_is_interrupted_and_verified_after(
        engine_env, tmp_path):
    import threading

    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident
    from engine.service.worker import Worker

    started = tmp_path / "started"
    engine_env.runbook("slow", f"""
        strategies:
          - {{name: wait, action: test.sleep,
              with: {{seconds: 2, started: "{started}", trace: "{engine_env.trace}"}}}}
    """)
    (engine_env.root / "var").mkdir(mode=0o700)
    with mounted(engine_env.root / "var" / "artifacts", "1m") as artifacts:
        ctx = engine_env.context()
        try:
            opened = open_incident(ctx, TriggerRequest(runbook="slow", target="cache-1"))
            step = threading.Thread(target=advance, args=(ctx, opened.incident.id))
            step.start()
            assert wait_for(started.exists, 20)
            with filled(artifacts):           # while it runs (it logs a tick every 0.5 s)
                step.join(30)
                assert not step.is_alive()
                [run] = ctx.store.query_runs(incident_id=opened.incident.id)
                assert run.status == "interrupted", run
                assert "could not be written while it ran" in run.reason, run.reason
                assert "No space left on device" in run.reason
                incident = ctx.store.get_incident(opened.incident.id)
                assert (incident.state, incident.interrupted_run) == ("open", run.id)
                assert ctx.store.get_lock("cache-1") is None
                assert not ctx.running
            # Space is back: its run.json says what the store says, by itself.
            record = artifacts / run.id / "run.json"
            assert wait_for(lambda: json.loads(record.read_text())["status"] == "interrupted",
                            20), record.read_text()
            # The step had done its work: verified, not run again.
            assert wait_for(lambda: (Worker(ctx).run_once() or True) and ctx.store.get_incident(
                opened.incident.id).state == "recovered", 30)
            incident = ctx.store.get_incident(opened.incident.id)
            assert "verified after interruption" in incident.reason
            assert incident.interrupted_run is None
            assert [line.split()[0] for line in engine_env.traced()] == ["sleep-start",
                                                                        "sleep-end"]
        finally:
            ctx.store.close()


# -- the end of a run: the result is kept until it can be recorded -----------------------

def test_a_record_that_cannot_be_written_leaves_no_temporary_file(tmp_path):
    from engine.artifacts import RunArtifacts

    with mounted(tmp_path / "disk", "1m") as disk:
        artifacts = RunArtifacts(disk, "run-1").create()
        artifacts.write_run_json({"status": "running"})
        with filled(disk):
            failed = caught(lambda: artifacts.write_run_json({"status": "succeeded",
                                                              "output": "x" * 10000}))
            assert "No space left" in str(failed)
            assert sorted(p.name for p in artifacts.path.iterdir()) == ["job_events",
                                                                        "run.json"]
        assert artifacts.read_run_json()["status"] == "running"
        artifacts.write_run_json({"status": "succeeded"})
        assert artifacts.read_run_json()["status"] == "succeeded"


def truncated_log(db: Path, timeout: float = 10) -> None:
    """``leave_no_room_in_the_store``, retried while a writer of the store is busy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return leave_no_room_in_the_store(db)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("artifacts_full", [False, True], ids=["store-full",
                                                                 "store-and-artifacts-full"])
def test_a_run_whose_end_cannot_be_written_keeps_its_result_until_it_can(
        engine_env, tmp_path, caplog, artifacts_full):
    """The step is done and its result is in memory, but the store (and the artifacts)
    cannot be written: the run is not left ``running`` to be called "interrupted: the
    process running this step stopped" later. Its end is recorded, with the real result,
    once the space is back; run.json says the same and no temporary file is left."""
    import threading

    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    started, release = tmp_path / "started", tmp_path / "release"
    engine_env.runbook("held", f"""
        strategies:
          - {{name: hold, action: test.wait_for_file,
              with: {{release: "{release}", started: "{started}", seconds: 60}}}}
    """)
    with mounted(engine_env.root / "var", "4m") as home, \
            mounted(home / "artifacts", "4m") as artifacts:
        ctx = engine_env.context()
        try:
            opened = open_incident(ctx, TriggerRequest(runbook="held", target="cache-1"))
            incident_id = opened.incident.id
            step = threading.Thread(target=advance, args=(ctx, incident_id))
            step.start()
            assert wait_for(started.exists, 20)
            [run] = ctx.store.query_runs(incident_id=incident_id)
            truncated_log(home / "recovery.db")
            fill(home)
            if artifacts_full:
                fill(artifacts)
            try:
                release.touch()               # the step ends now, its end unwritable
                assert wait_for(lambda: "could not be recorded" in caplog.text, 20), \
                    caplog.text
                time.sleep(1)
                assert step.is_alive()        # still trying, its result in memory
                assert run.id in ctx.running  # ... so no sweep calls it dead
            finally:
                free(artifacts)
                free(home)
            step.join(30)
            assert not step.is_alive()
            ended = ctx.store.get_run(run.id)
            if artifacts_full:
                assert ended.status == "interrupted", ended
                assert "could not be written while it ran" in ended.reason, ended.reason
            else:
                assert ended.status == "succeeded", ended
                assert ctx.store.get_incident(incident_id).state == "recovered"
            assert "process running this step stopped" not in ended.reason
            folder = artifacts / run.id
            record = json.loads((folder / "run.json").read_text())
            assert (record["status"], record["reason"]) == (ended.status, ended.reason)
            assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
            assert not ctx.running and ctx.store.get_lock("cache-1") is None
        finally:
            ctx.store.close()
