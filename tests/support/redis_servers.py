"""Real Redis servers for the tests and the benches: ``redis-server`` (and Sentinel, which
is ``redis-server --sentinel``) on free loopback ports, each in a folder of its own,
never the machine's own Redis on 6379. Every wait is bounded; ``stop``/``kill`` always
reap the process, so a failing test leaves nothing behind.

    primary = RedisServer(tmp_path / "p").start()
    replica = RedisServer(tmp_path / "r", replica_of=primary).start()
    replica.wait_synced()
    sentinel = Sentinel(tmp_path / "s", primary, "cache").start()
    locked = RedisServer(tmp_path / "l", disabled=("KEYS", "FLUSHALL")).start()  # as in prod
    primary.kill()                      # SIGKILL: the primary dies without a word
    replica.client().execute_command("REPLICAOF", "NO", "ONE")   # or let Sentinel do it
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support.service import free_port

START = 15.0        # bound on a start, seconds
HAS_REDIS = shutil.which("redis-server") is not None


def wait_until(predicate, timeout: float, every: float = 0.05):
    """The predicate's first truthy value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except redis.RedisError:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)


class RedisServer:
    """One ``redis-server`` on a free loopback port; its files (log, dump) in ``folder``."""

    def __init__(self, folder: Path, *, replica_of: RedisServer | None = None,
                 password: str | None = None, port: int | None = None,
                 disabled: tuple[str, ...] = (), **config: str | int) -> None:
        self.folder = Path(folder)
        self.port = port or free_port()
        self.replica_of = replica_of
        self.password = password
        self.disabled = disabled      # commands renamed away (`rename-command X ""`)
        # No persistence unless asked; a replica's first sync at once (Redis 7 waits 5 s
        # for more replicas to share a diskless sync by default).
        self.config = {"save": "", "appendonly": "no", "repl_diskless_sync_delay": 0,
                       **config}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--logfile", "redis.log",
                "--daemonize", "no"]
        for key, value in self.config.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        for command in self.disabled:
            argv += ["--rename-command", command, ""]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        return argv

    def start(self, wait: bool = True) -> RedisServer:
        """Start it; with ``wait``, until PING answers (LOADING counts as up)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if wait and not wait_until(self._answers, START):
            self.kill()
            raise RuntimeError(f"redis-server on {self.port} did not answer in {START:g}s: "
                               f"{self.log()[-2000:]}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server on {self.port} exited: {self.log()[-2000:]}")
        try:
            return bool(self.client(timeout=0.5).ping())
        except redis.exceptions.BusyLoadingError:
            return True

    def client(self, timeout: float = 2.0, **kw) -> redis.Redis:
        """A client with no retries of its own: a dead server fails at once."""
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           socket_timeout=timeout, socket_connect_timeout=timeout,
                           retry=Retry(NoBackoff(), 0), **kw)

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def role(self) -> str:
        return self.client().execute_command("ROLE")[0].decode()

    def wait_synced(self, timeout: float = START) -> None:
        """A replica: until its link to the primary is up and the first sync is done."""
        def synced() -> bool:
            info = self.client().info("replication")
            return info.get("master_link_status") == "up" and \
                not info.get("master_sync_in_progress")
        if not wait_until(synced, timeout):
            raise RuntimeError(f"replica on {self.port} not in sync in {timeout:g}s")

    def promote(self) -> None:
        """``REPLICAOF NO ONE``: this replica becomes a primary."""
        self.client().execute_command("REPLICAOF", "NO", "ONE")
        if not wait_until(lambda: self.role() == "master", START):
            raise RuntimeError(f"replica on {self.port} did not become a primary")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed or partitioned one would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()


class Sentinel(RedisServer):
    """``redis-server --sentinel`` monitoring ``primary`` as ``service``, quorum 1, with
    short timeouts so a failover takes seconds: down after ``down_after_ms``."""

    def __init__(self, folder: Path, primary: RedisServer, service: str, *,
                 down_after_ms: int = 500, failover_timeout_ms: int = 3000) -> None:
        super().__init__(folder)
        self.primary, self.service = primary, service
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms

    def argv(self) -> list[str]:
        conf = self.folder / "sentinel.conf"      # Sentinel rewrites its config: a file
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.folder}",
                 "logfile sentinel.log",
                 f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1",
                 f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
                 f"sentinel failover-timeout {self.service} {self.failover_timeout_ms}",
                 f"sentinel parallel-syncs {self.service} 1"]
        if self.primary.password:
            lines.append(f"sentinel auth-pass {self.service} {self.primary.password}")
        conf.write_text("\n".join(lines) + "\n")
        return ["redis-server", str(conf), "--sentinel"]

    def log(self) -> str:
        path = self.folder / "sentinel.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, timeout: float = 2.0, **kw) -> redis.Redis:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), **kw)

    def master(self) -> tuple[str, int] | None:
        addr = self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                             self.service)
        return (addr[0].decode(), int(addr[1])) if addr else None

    def wait_replicas(self, count: int = 1, timeout: float = START) -> None:
        """Until Sentinel knows ``count`` replicas (it learns them from the primary's INFO):
        a failover before that finds no replica to promote."""
        def known() -> bool:
            replicas = self.client().execute_command("SENTINEL", "REPLICAS", self.service)
            return len(replicas) >= count
        if not wait_until(known, timeout, every=0.1):
            raise RuntimeError(f"sentinel on {self.port} did not see {count} replica(s)")

    def wait_failover(self, new_primary: RedisServer, timeout: float = 30.0) -> None:
        if not wait_until(lambda: self.master() == ("127.0.0.1", new_primary.port)
                          and new_primary.role() == "master", timeout, every=0.1):
            raise RuntimeError(f"sentinel did not fail over to {new_primary.port}: "
                               f"{self.log()[-2000:]}")
