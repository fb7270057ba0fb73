"""``recovery serve`` as a subprocess, for the tests that need the real service: its own
session, a free loopback port, bounded waits, and every process it started (the parent,
gunicorn and its workers, the engine worker processes) remembered so that a test's
cleanup can kill them all, even when the test fails."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

GRACE = 5          # webhook.shutdown_grace in these tests, seconds
START = 30.0       # bound on a start (gunicorn and the engine import), seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return None


def command(p: psutil.Process) -> str:
    """Its command line; "" once it is gone (or a zombie not reaped yet)."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


class Served:
    """One ``recovery serve`` in a session of its own; remembers every process it saw."""

    def __init__(self, env, home: Path, port: int, *args: str) -> None:
        self.env, self.home, self.port, self.args = env, home, port, args
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.starts = 0

    def environ(self) -> dict[str, str]:
        environ = self.env.env()
        environ["RECOVERY_HOME"] = str(self.home)
        for name in ("RECOVERY_WEBHOOK_TOKEN", "RECOVERY_API_TOKEN", "GUNICORN_CMD_ARGS"):
            environ.pop(name, None)
        return environ

    def start(self, *extra: str) -> Served:
        self.starts += 1
        self.out = self.home.parent / f"serve-{self.starts}.out"
        self.err = self.home.parent / f"serve-{self.starts}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "serve", "--bind", f"127.0.0.1:{self.port}",
                 *self.args, *extra], env=self.environ(), stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True)
        self.seen[self.proc.pid] = psutil.Process(self.proc.pid)
        return self

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def get(self, path: str, **kw) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2, verify=False, **kw)
        except httpx.HTTPError:
            return None

    def wait_healthy(self, timeout: float = START) -> float:
        t0 = time.monotonic()
        ok = wait_for(lambda: self.proc.poll() is not None or (
            (r := self.get("/healthz")) is not None and r.status_code == 200), timeout)
        assert ok and self.proc.poll() is None, f"not healthy: {self.stderr()}"
        self.children()
        return time.monotonic() - t0

    def wait_ready(self, timeout: float = START) -> None:
        ok = wait_for(lambda: (r := self.get("/readyz")) is not None and r.status_code == 200,
                      timeout)
        assert ok, f"never ready: {self.get('/readyz')}\n{self.stderr()}"

    def children(self) -> list[psutil.Process]:
        """The service's processes now (remembered, for the cleanup)."""
        kids = psutil.Process(self.proc.pid).children(recursive=True)
        for p in kids:
            self.seen.setdefault(p.pid, p)
        return kids

    def engine_workers(self) -> list[psutil.Process]:
        return [p for p in self.children() if "engine.worker_process" in command(p)]

    def gunicorn(self) -> list[psutil.Process]:
        return [p for p in self.children() if "gunicorn" in command(p)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = GRACE + 15) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0

    def alive(self) -> list[psutil.Process]:
        return [p for p in self.seen.values() if p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]

    def kill_all(self) -> None:
        for p in list(self.seen.values()):
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(self.seen.values()), timeout=5)
        if self.proc is not None:
            self.proc.wait(5)


def webhook_token(home: Path) -> str:
    return (home / "webhook.token").read_text().strip()


def history(served: Served) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "engine", "history", "--json"],
                          env=served.environ(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
