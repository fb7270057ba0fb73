"""``recovery serve`` as a subprocess, for the tests and the benches that need the real
service: its own session, a free loopback port, bounded waits, and every process it
started (the parent, gunicorn and its workers, the engine worker processes) remembered so
that a test's cleanup or a bench's ``finally`` can kill them all, even when it fails.

    served = Served(env, home, free_port(), "--workers", "1")   # env: EngineEnv or a dict
    served.start()
    served.wait_ready()          # /readyz answers 200; raises NotStarted if it exits
    ...
    rc = served.terminate()      # SIGTERM, a grace, then SIGKILL to all it started

``Store`` reads the service's SQLite store (read-only) while it runs.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil

from engine.lifecycle import IncidentState
from engine.orchestration.triggers import TriggerRequest, open_incident
from tests.support.alerts import touch_runbook
from tests.support.paths import ROOT

GRACE = 5          # webhook.shutdown_grace in these tests, seconds
START = 30.0       # bound on a start (gunicorn and the engine import), seconds
# Not passed on to the service: tokens and a state URL would override its RECOVERY_HOME.
SCRUB = ("RECOVERY_WEBHOOK_TOKEN", "RECOVERY_API_TOKEN", "RECOVERY_STATE_URL",
         "GUNICORN_CMD_ARGS")


class HasEnv(Protocol):
    """What ``Served`` takes as its environment besides a mapping (tests' ``EngineEnv``)."""

    def env(self) -> dict[str, str]: ...


class NotStarted(AssertionError):
    """The service exited, or did not answer 200, within the bound of a wait."""


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


def cpu_by_role(roles: Mapping[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each role's processes (gone ones count 0)."""
    out: dict[str, float] = {}
    for role, procs in roles.items():
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        out[role] = total
    return out


def pss_kb(pid: int) -> int:
    """The process's proportional set size (kB, /proc/PID/smaps_rollup), 0 once it is
    gone: shared pages counted once across the processes that share them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def service_env(config: Path, *pythonpath: Path) -> dict[str, str]:
    """This process's environment for a service on ``config``: RECOVERY_CONFIG set, and
    PYTHONPATH the given folders (action modules) and the repository."""
    env = dict(os.environ)
    env["RECOVERY_CONFIG"] = str(config)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(ROOT)])
    return env


class Served:
    """One ``recovery serve`` in a session of its own; remembers every process it saw.

    ``env`` is a mapping (the environment to start from) or an object whose ``env()``
    returns one; ``home`` is its RECOVERY_HOME; ``args`` go after ``--bind``, and
    ``start(*extra)`` adds more. Its output goes to ``serve-N.out`` / ``serve-N.err``
    (N counts the starts) beside ``home``; ``cwd`` is its working directory."""

    def __init__(self, env: HasEnv | Mapping[str, str], home: Path, port: int, *args: str,
                 cwd: Path | None = None) -> None:
        self.env, self.home, self.port, self.args, self.cwd = env, home, port, args, cwd
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.starts = 0
        self.prefix: list[str] = []    # a command the service runs under (unshare ...)

    def environ(self) -> dict[str, str]:
        environ = dict(self.env) if isinstance(self.env, Mapping) else self.env.env()
        environ["RECOVERY_HOME"] = str(self.home)
        for name in SCRUB:
            environ.pop(name, None)
        return environ

    @property
    def token(self) -> str:
        return webhook_token(self.home)

    def start(self, *extra: str) -> Served:
        self.starts += 1
        self.out = self.home.parent / f"serve-{self.starts}.out"
        with open(self.out, "w") as out:
            self._spawn(extra, out)
        return self

    def start_on_terminal(self, *extra: str) -> Terminal:
        """As ``start``, but its stdout is a terminal (a pty, as at a shell: ``make
        run``); read it from what this returns (``stdout()`` is empty)."""
        self.starts += 1
        self.out = self.home.parent / f"serve-{self.starts}.out"
        self.out.write_text("")
        reader, terminal = pty.openpty()
        try:
            self._spawn(extra, terminal)
        finally:
            os.close(terminal)
        return Terminal(reader)

    def _spawn(self, extra: tuple[str, ...], stdout: Any) -> None:
        self.err = self.home.parent / f"serve-{self.starts}.err"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "engine", "serve", "--bind",
                 f"127.0.0.1:{self.port}", *self.args, *extra], env=self.environ(),
                cwd=self.cwd, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.seen[self.proc.pid] = psutil.Process(self.proc.pid)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def get(self, path: str, **kw) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=2, verify=False, **kw)
        except httpx.HTTPError:
            return None

    def _wait_ok(self, path: str, timeout: float) -> float:
        """Seconds until ``path`` answers 200; NotStarted when the service exits first or
        the bound passes."""
        t0 = time.monotonic()
        ok = wait_for(lambda: self.proc.poll() is not None or (
            (r := self.get(path)) is not None and r.status_code == 200), timeout)
        if self.proc.poll() is not None:
            raise NotStarted(f"recovery serve exited {self.proc.returncode} waiting for "
                             f"{path}:\n{self.stderr()[-3000:]}")
        if not ok:
            raise NotStarted(f"{path} not 200 within {timeout:g}s: {self.get(path)}\n"
                             + self.stderr()[-3000:])
        self.children()
        return time.monotonic() - t0

    def wait_healthy(self, timeout: float = START) -> float:
        """Until /healthz answers 200 (the HTTP server is up); the seconds it took."""
        return self._wait_ok("/healthz", timeout)

    def wait_ready(self, timeout: float = START) -> float:
        """Until /readyz answers 200 (an engine worker process has reported)."""
        return self._wait_ok("/readyz", timeout)

    def remember(self) -> None:
        """Every process in its session now, remembered for ``kill_all`` (an orphan whose
        parent died too, which ``children`` no longer reaches)."""
        if self.proc is None:
            return
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.proc.pid:
                    self.seen.setdefault(p.pid, p)
            except OSError:
                continue

    def children(self) -> list[psutil.Process]:
        """The service's processes now (remembered, for the cleanup); [] once it is gone."""
        try:
            kids = self.seen[self.proc.pid].children(recursive=True)
        except psutil.Error:
            return []
        for p in kids:
            self.seen.setdefault(p.pid, p)
        return kids

    def engine_workers(self) -> list[psutil.Process]:
        return [p for p in self.children() if "engine.service.worker_process" in command(p)]

    def gunicorn(self) -> list[psutil.Process]:
        return [p for p in self.children() if "gunicorn" in command(p)]

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The service's processes by role: parent, gunicorn master, http workers, engine."""
        parent = self.seen[self.proc.pid]
        roles: dict[str, list[psutil.Process]] = {"parent": [parent], "master": [],
                                                  "http": [], "engine": []}
        kids = self.children()
        masters = set()
        for p in kids:
            try:
                cmd = " ".join(p.cmdline())
                if "engine.service.worker_process" in cmd:
                    roles["engine"].append(p)
                elif "gunicorn" in cmd and p.ppid() == parent.pid:
                    roles["master"].append(p)
                    masters.add(p.pid)
            except psutil.Error:
                continue
        for p in kids:
            try:
                if p.ppid() in masters:
                    roles["http"].append(p)
            except psutil.Error:
                continue
        return roles

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) so far, by role (as ``processes``)."""
        return cpu_by_role(self.processes())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = GRACE + 15) -> tuple[int, float]:
        """``sig`` to the parent and its exit code and the seconds it took to exit;
        subprocess.TimeoutExpired after ``timeout``."""
        self.remember()
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0

    def terminate(self, timeout: float = GRACE + 15) -> int | None:
        """SIGTERM and up to ``timeout`` seconds to exit, then ``kill_all``: nothing it
        started is left. Its exit code (None: never started)."""
        if self.proc is None:
            return None
        rc = None
        if self.proc.poll() is None:
            try:
                rc, _ = self.stop(signal.SIGTERM, timeout)
            except subprocess.TimeoutExpired:
                print(f"  recovery serve did not stop in {timeout:g}s: killed")
        self.kill_all()
        return rc if rc is not None else self.proc.returncode

    def alive(self) -> list[psutil.Process]:
        alive = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                continue
        return alive

    def kill_all(self) -> None:
        """SIGKILL to every process it saw or that is still in its session."""
        self.remember()
        for p in list(self.seen.values()):
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(self.seen.values()), timeout=5)
        if self.proc is not None:
            self.proc.wait(5)


class Terminal:
    """The reading end of a pty that a process writes its stdout to; closed once that
    process has ended (``close``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""

    def read_until(self, text: str, timeout: float) -> str:
        """What was written so far (line ends as ``\\n``), once ``text`` is in it, the
        writer closed its end, or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while text not in self.text and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:   # EIO: no writer left
                break
            if not chunk:
                break
            self.text += chunk.decode(errors="replace").replace("\r\n", "\n")
        return self.text

    def close(self) -> None:
        os.close(self.fd)


class Store:
    """Read-only looks into a service's store (its own connection; WAL readers do not
    block the service's writers). Rows are ``sqlite3.Row``: by name or by index."""

    def __init__(self, home: Path) -> None:
        self.db = sqlite3.connect(f"file:{home / 'recovery.db'}?mode=ro", uri=True,
                                  timeout=15, isolation_level=None)
        self.db.row_factory = sqlite3.Row

    def one(self, sql: str, *params: Any) -> int:
        return int(self.db.execute(sql, params).fetchone()[0] or 0)

    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    def depth(self) -> int:
        """Journaled alerts not processed yet (the intake queue)."""
        return self.one("SELECT COUNT(*) FROM intake")

    def seen(self) -> int:
        """Alerts the webhook has journaled (intake_seen)."""
        return self.one("SELECT COUNT(*) FROM intake_seen")

    def journal(self) -> str:
        return str(self.db.execute("PRAGMA journal_mode").fetchone()[0])

    def busy(self) -> tuple[int, int, int]:
        """(intake items left, incidents open or remediating, runs not final)."""
        return (self.depth(),
                self.one("SELECT COUNT(*) FROM incidents WHERE state IN "
                         "('open', 'remediating')"),
                self.one("SELECT COUNT(*) FROM runs WHERE status IN "
                         "('running', 'queued', 'pending_approval')"))

    def close(self) -> None:
        self.db.close()


def store_rows(home: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    """One read-only query of the store in ``home`` (a connection of its own, closed)."""
    store = Store(home)
    try:
        return store.rows(sql, *params)
    finally:
        store.close()


def webhook_token(home: Path) -> str:
    return (home / "webhook.token").read_text().strip()


def first_token(config: Path, served: Served) -> str:
    """The webhook token of a service not started yet, generated as its first start
    generates it (the same code, into the same RECOVERY_HOME file): an Alertmanager's
    configuration needs it before the service, whose configuration names that
    Alertmanager, can start."""
    from engine.config import load_config
    from engine.security.credentials import load_credentials

    environ = served.environ()
    _, generated = load_credentials(load_config(config, environ=environ), environ,
                                    create=True)
    assert "webhook" in generated
    return webhook_token(served.home)


def history(served: Served) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "engine", "history", "--json"],
                          env=served.environ(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def post_alerts(served: Served, payload: dict) -> dict:
    answer = httpx.post(served.url + "/api/v1/alerts", json=payload, timeout=5,
                        headers={"Authorization": f"Bearer {webhook_token(served.home)}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def started(served: Served) -> Served:
    served.start()
    served.wait_ready(30)
    return served


def touchy(serve, env, tmp_path: Path) -> tuple[Served, Path]:
    """A service whose runbook touches ``markers/<instance>.marker`` for each test alert."""
    markers = tmp_path / "markers"
    markers.mkdir()
    touch_runbook(env, markers)
    return started(serve()), markers


def context(served: Served):
    """An engine context on the service's store (its RECOVERY_HOME)."""
    from engine.config import load_config
    from engine.context import EngineContext

    return EngineContext(load_config(served.env.config_path, environ=served.environ()))


def hand_to_workers(served: Served, runbook: str, target: str = "cache-1") -> str:
    """Open an incident and leave it to the service's workers (open, due now)."""
    ctx = context(served)
    try:
        opened = open_incident(ctx, TriggerRequest(runbook=runbook, target=target))
        assert opened.claimed, opened.refusal
        ctx.store.update_incident(opened.incident.id, expect=[IncidentState.REMEDIATING],
                                  state=IncidentState.OPEN, next_try_at=time.time())
        return opened.incident.id
    finally:
        ctx.store.close()
