"""What ``recovery serve`` says and does when its store cannot be written: real faults
under a real service. The store's file system fills up (a small tmpfs as RECOVERY_HOME),
the database file is made immutable (``chattr +i``), the database file is deleted under
the running service. ``/readyz`` says whether the store can be written now; a deleted
database takes no more alerts (503, and a log line that says why and what to do), the
CLI does not create an empty one beside the service, and the history is kept: the
service saves what it still holds, and the operator moves it into place. A process of
the service that starts meanwhile comes up and answers 503; once the file takes writes
again, every process and thread writes again.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from engine.store.base import StoreUnavailable
from engine.store.sqlite import SQLiteStore
from tests.support.alerts import FIXTURE, alert_payload
from tests.support.service import Served, history, store_rows, touchy, wait_for, webhook_token
from tests.support.tmpfs import mounted

# Real services under real file system faults: costly, so in `make test-full` (the full
# disk under intake is make test's real path for storage outages).
pytestmark = pytest.mark.slow
ROOT_ONLY = pytest.mark.requires("root", "mount", "chattr")   # a tmpfs, chattr +i


def notification(*instances: str, padding: int = 0) -> dict:
    """A firing notification for ``instances``, each alert new (its own fingerprint),
    ``padding`` bytes of annotation each (to fill a store faster)."""
    body = json.loads(FIXTURE.read_text())
    alerts = []
    for instance in instances:
        alert = copy.deepcopy(body["alerts"][0])
        alert["labels"]["instance"] = instance
        alert["fingerprint"] = secrets.token_hex(8)
        alert["annotations"]["padding"] = "x" * padding
        alerts.append(alert)
    body["alerts"] = alerts
    return body


def post(served: Served, body: dict) -> httpx.Response:
    return httpx.post(served.url + "/api/v1/alerts", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {webhook_token(served.home)}"})


def readyz(served: Served) -> tuple[int, dict]:
    answer = httpx.get(served.url + "/readyz", timeout=10)
    return answer.status_code, answer.json()


def recovery(served: Served, *args: str) -> subprocess.CompletedProcess:
    """A ``recovery`` command on the service's home, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "engine", *args], env=served.environ(),
                          capture_output=True, text=True, timeout=60)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of ``folder``'s file system."""
    path = folder / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while os.write(fd, b"\0" * (1 << 16)):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def immutable(path: Path) -> None:
    """``chattr +i path``; the test is skipped where the file system has no such flag."""
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work where the test's home is: {made.stderr}")


def writable_again(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], check=False, timeout=30)


def at_once(work, count: int, threads: int = 8) -> list:
    """``work(i)`` for i in range(count), ``threads`` at a time (so that every thread
    of an http worker serves some)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, range(count)))


@pytest.fixture
def tmpfs_home(tmp_path: Path):
    """RECOVERY_HOME on a 24 MiB tmpfs of its own, unmounted at the end."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    with mounted(home, "24m"):
        yield home


@ROOT_ONLY
def test_readyz_is_not_ready_while_the_store_s_disk_is_full(serve, engine_env, tmp_path,
                                                            tmpfs_home):
    served, _markers = touchy(serve, engine_env, tmp_path)
    filler = fill(tmpfs_home)
    try:
        # Until the store's write-ahead log has no room left (bounded): then alerts 503.
        answers = []
        for _ in range(400):
            answers.append(post(served, notification("nowhere", padding=4000)).status_code)
            if answers[-1] == 503:
                break
        assert answers[-1] == 503, answers
        # (a success is reused for 2 s: within a bounded wait, not at once)
        assert wait_for(lambda: readyz(served)[0] == 503, 10), readyz(served)
        code, body = readyz(served)
        assert (code, body["ready"], body["store"]) == (503, False, "unavailable"), body
    finally:
        filler.unlink()
    assert wait_for(lambda: readyz(served)[0] == 200, 20), readyz(served)
    assert post(served, notification("cache-1")).status_code == 200


@ROOT_ONLY
def test_a_store_outage_is_logged_when_it_begins_and_ends_not_at_every_failure(
        serve, engine_env, tmp_path, tmpfs_home):
    """Every worker pass, heartbeat, request and probe fails while the store's disk is
    full: the log says so when it begins (with the reason) and when it is over, without
    a traceback per failure, and the workers back off meanwhile."""
    served, markers = touchy(serve, engine_env, tmp_path)
    began = len(served.stderr())
    filler = fill(tmpfs_home)
    try:
        answers = []
        for _ in range(400):   # until the store's write-ahead log has no room left
            answers.append(post(served, notification("nowhere", padding=4000)).status_code)
            if answers[-1] == 503:
                break
        assert answers[-1] == 503, answers
        assert wait_for(lambda: readyz(served)[0] == 503, 10), readyz(served)
        for _ in range(10):   # ten seconds of outage, alerts and readiness asked meanwhile
            assert post(served, notification("cache-1")).status_code == 503
            assert readyz(served)[0] == 503
            time.sleep(1)
        during = served.stderr()[began:]
    finally:
        filler.unlink()
    assert wait_for(lambda: readyz(served)[0] == 200, 20), readyz(served)
    assert post(served, alert_payload(markers, "localhost")).status_code == 200
    assert wait_for((markers / "localhost.marker").exists, 30), served.stderr()[-3000:]
    assert wait_for(lambda: "storage outage over" in served.stderr()[began:], 20), \
        served.stderr()[began:][-3000:]
    assert "Traceback" not in during, during[-3000:]
    assert len(during.splitlines()) <= 12, during[-3000:]
    assert "database or disk is full" in during, during


@ROOT_ONLY
def test_readyz_is_not_ready_while_the_database_file_is_immutable(serve, engine_env):
    served = serve().start()
    served.wait_ready()
    db = served.home / "recovery.db"
    immutable(db)
    try:
        assert wait_for(lambda: readyz(served)[0] == 503, 10), readyz(served)
        code, body = readyz(served)
        assert (code, body["ready"], body["store"]) == (503, False, "unavailable"), body
        assert "cannot be written" in served.stderr()
        # An alert is journaled (in the write-ahead log) or refused with a 503: never lost.
        assert post(served, notification("cache-1")).status_code in (200, 503)
    finally:
        writable_again(db)
    assert wait_for(lambda: readyz(served)[0] == 200, 20), readyz(served)


@ROOT_ONLY
def test_alerts_and_heartbeats_come_back_once_an_immutable_database_file_is_writable(
        serve, engine_env, tmp_path):
    """Connections opened while the file refused writes (SQLite opens them read-only
    without a word) must not stay read-only once the flag is lifted: the http threads
    that first served during the window, the worker threads that started then, and an
    engine worker process restarted then."""
    served, markers = touchy(serve, engine_env, tmp_path)
    db = served.home / "recovery.db"
    immutable(db)
    try:
        codes = at_once(lambda i: post(served, notification("cache-1")).status_code, 24)
        assert set(codes) <= {200, 503}, codes
        # Both restarted during the window: they must come up, and answer.
        [http] = served.processes()["http"]
        [worker] = served.engine_workers()
        http.send_signal(signal.SIGKILL)
        worker.send_signal(signal.SIGKILL)
        assert wait_for(lambda: served.stderr().count("engine worker started") == 2, 30), \
            served.stderr()[-3000:]
        assert wait_for(lambda: (r := served.get("/healthz")) is not None
                        and r.status_code == 200, 30), served.stderr()[-3000:]
        assert post(served, notification("cache-1")).status_code == 503
        time.sleep(2)                         # the worker's threads open connections, beat
        assert readyz(served)[0] == 503
    finally:
        writable_again(db)
    lifted = time.time()
    assert wait_for(lambda: readyz(served)[0] == 200, 20), readyz(served)
    codes = at_once(lambda i: post(served, notification("cache-2")).status_code, 40)
    assert codes == [200] * 40, codes
    assert post(served, alert_payload(markers, "localhost")).status_code == 200
    assert wait_for((markers / "localhost.marker").exists, 30), served.stderr()[-3000:]
    # Every engine worker beats again, and none says it cannot write.
    pids = {str(p.pid) for p in served.engine_workers()}
    assert wait_for(lambda: pids <= beating_since(served, lifted), 10), served.stderr()[-3000:]
    said = len(served.stderr())
    time.sleep(3)                             # three heartbeats
    assert "readonly database" not in served.stderr()[said:], served.stderr()[said:]


def beating_since(served: Served, since: float) -> set[str]:
    """The pids of the engine workers whose heartbeat in the store is newer than ``since``."""
    [row] = store_rows(served.home, "SELECT value FROM kv WHERE key = 'worker_heartbeat'")
    beats = json.loads(row["value"])
    return {holder.split(":")[1] for holder, at in beats.items() if at > since}


def test_a_database_deleted_under_the_service_takes_no_alerts_and_keeps_its_history(
        serve, engine_env, tmp_path):
    served, markers = touchy(serve, engine_env, tmp_path)
    home = served.home
    assert post(served, notification("cache-1")).status_code == 200
    assert wait_for((markers / "cache-1.marker").exists, 30), served.stderr()
    assert wait_for(lambda: [r["status"] for r in history(served)] == ["succeeded"], 30)

    db = home / "recovery.db"
    lost_inode = db.stat().st_ino
    db.unlink()

    answer = post(served, notification("cache-2"))
    assert answer.status_code == 503, answer.text
    code, body = readyz(served)
    assert (code, body["store"]) == (503, "unavailable"), body
    assert "was deleted (or moved away) under this process" in served.stderr()
    assert not (markers / "cache-2.marker").exists()

    # The CLI says what it finds and creates nothing beside the running service.
    cli = recovery(served, "history")
    assert cli.returncode != 0 and not db.exists(), cli.stdout + cli.stderr
    assert "still open in process" in cli.stderr, cli.stderr
    saved = home / f"recovery.db.rescued-{lost_inode}"
    assert wait_for(saved.exists, 20), sorted(p.name for p in home.iterdir())

    # What the operator does (docs/operations.md): stop, move the saved copy, start.
    rc, _ = served.stop()
    cli = recovery(served, "history")
    assert cli.returncode != 0 and not db.exists()
    assert saved.name in cli.stderr, cli.stderr
    for left in (home / "recovery.db-wal", home / "recovery.db-shm"):
        left.unlink(missing_ok=True)
    shutil.move(saved, db)
    served.start()
    served.wait_ready()
    assert [(r["target"], r["status"]) for r in history(served)] == [("cache-1", "succeeded")]
    assert post(served, notification("cache-2")).status_code == 200
    assert wait_for((markers / "cache-2.marker").exists, 30), served.stderr()


def test_a_server_process_that_starts_after_the_database_was_deleted_answers_503(
        serve, engine_env, tmp_path):
    """An http worker that gunicorn starts again (killed, recycled), and an engine worker
    the service restarts, where the database was deleted and is still open in the
    service's other processes: they may not make a new, empty one, but they must come up
    (and answer: /healthz 200, alerts 503), not make gunicorn or the service give up."""
    served, markers = touchy(serve, engine_env, tmp_path)
    home = served.home
    db = home / "recovery.db"
    lost_inode = db.stat().st_ino
    db.unlink()
    assert post(served, notification("cache-1")).status_code == 503
    [http] = served.processes()["http"]
    [worker] = served.engine_workers()
    http.send_signal(signal.SIGKILL)
    worker.send_signal(signal.SIGKILL)
    assert wait_for(lambda: (served.processes()["http"] or [http])[0].pid != http.pid, 30)
    assert wait_for(lambda: served.stderr().count("engine worker started") == 2, 30), \
        served.stderr()[-3000:]
    for _ in range(5):   # the new worker answers, and keeps answering
        health = wait_for(lambda: served.get("/healthz"), 30)
        assert health is not None and health.status_code == 200, served.stderr()[-3000:]
        assert post(served, notification("cache-1")).status_code == 503
        assert readyz(served)[0] == 503
    assert served.proc.poll() is None, served.stderr()[-3000:]
    assert len(served.engine_workers()) == 1   # up, not dying and restarted over and over
    assert served.stderr().count("engine worker started") == 2, served.stderr()[-3000:]
    assert not db.exists()
    assert "Worker failed to boot" not in served.stderr()

    # The documented restore: stop, move the saved copy into place, start.
    saved = home / f"recovery.db.rescued-{lost_inode}"
    assert wait_for(saved.exists, 20), sorted(p.name for p in home.iterdir())
    served.stop()
    for left in (home / "recovery.db-wal", home / "recovery.db-shm"):
        left.unlink(missing_ok=True)
    shutil.move(saved, db)
    served.start()
    served.wait_ready()
    assert post(served, alert_payload(markers, "cache-2")).status_code == 200
    assert wait_for((markers / "cache-2.marker").exists, 30), served.stderr()


# -- the store on its own ------------------------------------------------------------------

def test_a_store_makes_no_new_file_where_its_own_was_deleted_and_saves_what_it_held(
        tmp_path):
    path = tmp_path / "recovery.db"
    store = SQLiteStore(path)
    store.set_value("kept", "before the rm")
    inode = path.stat().st_ino
    path.unlink()

    seen: list[BaseException] = []

    def another_thread() -> None:   # a new connection: it would have made a new file
        try:
            store.get_value("kept")
        except StoreUnavailable as exc:
            seen.append(exc)

    thread = threading.Thread(target=another_thread)
    thread.start()
    thread.join(30)
    assert seen and not path.exists()
    with pytest.raises(StoreUnavailable, match="deleted .* takes no more writes"):
        store.set_value("lost", "after the rm")
    with pytest.raises(StoreUnavailable):
        store.ping(write=True)
    saved = tmp_path / f"recovery.db.rescued-{inode}"
    copy = sqlite3.connect(saved)
    assert copy.execute("SELECT value FROM kv WHERE key = 'kept'").fetchone() == (
        json.dumps("before the rm"),)
    copy.close()
    store.close()


def test_no_new_database_beside_the_write_ahead_log_of_a_deleted_one(tmp_path):
    """A process killed with the database open leaves its write-ahead log; the database
    file deleted after that: an empty file beside that log would be read as damaged."""
    path = tmp_path / "recovery.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from engine.store.sqlite import SQLiteStore\n"
         "s = SQLiteStore(sys.argv[1]); s.set_value('k', 'v'); print('written', flush=True)\n"
         "time.sleep(60)", str(path)], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent)
    try:
        assert writer.stdout.readline().strip() == "written"
    finally:
        writer.kill()
        writer.wait(10)
    path.unlink()
    assert Path(f"{path}-wal").stat().st_size > 0
    with pytest.raises(StoreUnavailable, match="write-ahead log .* is left"):
        SQLiteStore(path)
    assert not path.exists()


@ROOT_ONLY
def test_connections_opened_while_the_file_refuses_writes_write_once_it_takes_them(
        tmp_path):
    path = tmp_path / "recovery.db"
    store = SQLiteStore(path)
    store.set_value("before", 1)
    immutable(path)
    tried = threading.Barrier(4)
    lifted = threading.Event()
    outcomes: list[str] = []

    def a_thread(n: int) -> None:   # its first connection is opened during the window
        try:
            store.get_value("before")
            store.set_value(f"during-{n}", n)
            outcomes.append("written during")
        except StoreUnavailable:
            pass
        tried.wait(30)
        lifted.wait(30)
        try:
            store.set_value(f"after-{n}", n)
            store.ping(write=True)
            outcomes.append("written")
        except StoreUnavailable as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=a_thread, args=(n,)) for n in range(3)]
    try:
        for thread in threads:
            thread.start()
        tried.wait(30)
    finally:
        writable_again(path)
    lifted.set()
    for thread in threads:
        thread.join(30)
    assert outcomes == ["written"] * 3, outcomes
    assert [store.get_value(f"after-{n}") for n in range(3)] == [0, 1, 2]
    store.close()


def test_the_refusal_names_the_rescued_copy_not_the_files_sqlite_keeps_beside_it(tmp_path):
    """An operator who looks into the rescued copy with sqlite3 gets its ``-wal`` and
    ``-shm`` beside it while it is open: the copy to move into place is still the copy."""
    path = tmp_path / "recovery.db"
    store = SQLiteStore(path)
    store.set_value("kept", "before the rm")
    inode = path.stat().st_ino
    path.unlink()
    with pytest.raises(StoreUnavailable):
        store.set_value("lost", "after the rm")
    store.close()
    saved = tmp_path / f"recovery.db.rescued-{inode}"
    looking = sqlite3.connect(saved)
    try:
        looking.execute("SELECT value FROM kv").fetchall()
        assert (tmp_path / f"{saved.name}-wal").exists()
        with pytest.raises(StoreUnavailable) as refused:
            SQLiteStore(path)
    finally:
        looking.close()
    assert f"the copy saved from it is {saved}: move it to {path}" in str(refused.value)
    assert not path.exists()
