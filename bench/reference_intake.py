"""The reference intake: the smallest honest durable Alertmanager webhook, to measure the
product's intake against (bench/intake_ratio.py) in the same run, on the same machine.

What it keeps of the product's contract, and nothing more: a bearer token compared in
constant time (401 otherwise); the body parsed as JSON, a notification whose ``alerts``
is a list (400 otherwise); per alert a dedup key (fingerprint, startsAt, status), an alert
without one ignored; every alert of the request written in ONE SQLite transaction
(``INSERT OR IGNORE`` on the key), WAL with ``synchronous=NORMAL`` (the product's default
``state_synchronous``), committed before the 200; the answer
``{"accepted", "duplicates", "ignored"}``. No metrics, no logging, no consumer of the queue.

Served by gunicorn gthread with ``recovery serve``'s defaults (2 workers x 8 threads,
engine.service.supervisor), started as a subprocess on a free loopback port::

    with Reference(tmp_dir) as ref:      # ref.url, ref.token, ref.seen(), ref.cpu()
        ...

Run as a script: starts it, posts one notification twice (accepted, then a duplicate),
checks the answers and stops it (a few seconds; ``make bench`` runs it so).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
from flask import Flask, Response, request

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:       # run as a script: tests.support.service by name
    sys.path.insert(0, str(ROOT))

HTTP_WORKERS = 2          # recovery serve's default webhook.http_workers
HTTP_THREADS = 8          # engine.service.supervisor.HTTP_THREADS
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SCHEMA = ("CREATE TABLE IF NOT EXISTS intake (fingerprint TEXT NOT NULL, starts_at TEXT NOT "
          "NULL, status TEXT NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (fingerprint, "
          "starts_at, status)) WITHOUT ROWID")
INSERT = ("INSERT OR IGNORE INTO intake (fingerprint, starts_at, status, payload) "
          "VALUES (?, ?, ?, ?)")


# -- the app (imported by gunicorn in its workers) ---------------------------------------------
def create_app() -> Flask:
    """The reference app: REFERENCE_DB (the SQLite file) and REFERENCE_TOKEN from the
    environment."""
    database = os.environ["REFERENCE_DB"]
    expected = ("Bearer " + os.environ["REFERENCE_TOKEN"]).encode()
    local = threading.local()
    app = Flask(__name__)

    def connection() -> sqlite3.Connection:
        db = getattr(local, "db", None)
        if db is None:
            db = sqlite3.connect(database, timeout=10.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            local.db = db
        return db

    def answer(payload: dict, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return answer({"ok": True})

    @app.post("/api/v1/alerts")
    def receive() -> Response:
        header = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(header, expected):
            return answer({"error": "invalid credentials"}, 401)
        try:
            notification = json.loads(request.get_data())
            alerts = notification["alerts"]
            if not isinstance(alerts, list):
                raise TypeError("alerts is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            return answer({"error": f"not a notification: {exc}"}, 400)
        rows, ignored = [], 0
        for alert in alerts:
            key = (alert.get("fingerprint"), alert.get("startsAt"), alert.get("status")) \
                if isinstance(alert, dict) else (None,)
            if not all(isinstance(part, str) and part for part in key):
                ignored += 1
                continue
            rows.append((*key, json.dumps(alert)))
        db = connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(INSERT, rows)
            accepted = db.total_changes - before
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return answer({"accepted": accepted, "duplicates": len(rows) - accepted,
                       "ignored": ignored})

    return app


# -- the server (a gunicorn subprocess) --------------------------------------------------------
class Reference:
    """The reference under gunicorn gthread on 127.0.0.1, its database in ``folder``."""

    def __init__(self, folder: Path, workers: int = HTTP_WORKERS,
                 threads: int = HTTP_THREADS) -> None:
        from tests.support.service import free_port  # not in the app's workers

        self.database = Path(folder) / "reference-intake.sqlite"
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.threads = workers, threads
        self.proc: subprocess.Popen | None = None

    def start(self) -> Reference:
        with sqlite3.connect(self.database) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
        root = str(ROOT)
        env = {**os.environ, "REFERENCE_DB": str(self.database),
               "REFERENCE_TOKEN": self.token,
               "PYTHONPATH": os.pathsep.join(filter(None, [root,
                                                           os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
             "--threads", str(self.threads), "--workers", str(self.workers),
             "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
             "bench.reference_intake:create_app()"],
            env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("reference intake exited: "
                                   + self.proc.stderr.read().decode(errors="replace"))
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"reference intake not answering after {START_TIMEOUT:g}s")

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Its processes by role, as tests.support.service.Served names them."""
        try:
            master = psutil.Process(self.proc.pid)
            return {"master": [master], "http": master.children()}
        except psutil.Error:
            return {"master": [], "http": []}

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) so far, by role."""
        from tests.support.service import cpu_by_role  # not in the app's workers

        return cpu_by_role(self.processes())

    def seen(self) -> int:
        """Alerts journaled so far."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10.0) as db:
            return db.execute("SELECT count(*) FROM intake").fetchone()[0]

    def depth(self) -> int:
        """Nothing consumes the reference's journal: never a backlog to wait for."""
        return 0

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> Reference:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    import tempfile

    alert = {"status": "firing", "labels": {"alertname": "Ref"}, "annotations": {},
             "startsAt": "2026-12-07T00:00:00Z", "fingerprint": "ref-1"}
    body = json.dumps({"version": "4", "status": "firing", "alerts": [alert, {"x": 1}]})
    with tempfile.TemporaryDirectory(prefix="bench-reference-") as tmp, Reference(tmp) as ref:
        headers = {"Authorization": f"Bearer {ref.token}"}
        first = httpx.post(ref.url + "/api/v1/alerts", content=body, headers=headers).json()
        again = httpx.post(ref.url + "/api/v1/alerts", content=body, headers=headers).json()
        refused = httpx.post(ref.url + "/api/v1/alerts", content=body).status_code
        print(f"reference intake on {ref.url}: {first}, then {again}; no token: {refused}; "
              f"journaled {ref.seen()}")
        ok = (first == {"accepted": 1, "duplicates": 0, "ignored": 1}
              and again == {"accepted": 0, "duplicates": 1, "ignored": 1}
              and refused == 401 and ref.seen() == 1)
    print("ok" if ok else "UNEXPECTED ANSWERS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
