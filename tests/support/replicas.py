"""Several ``recovery serve`` replicas behind an HA Alertmanager pair, for the scale-out
tests: one real ``redis-server`` started here (AOF on, noeviction, a free loopback port,
never the machine's own Redis) holds the state of them all (``RECOVERY_STATE_URL``); each
replica has a RECOVERY_HOME of its own (its webhook token, its artifacts) and its name
in ``RECOVERY_REPLICA``; the Alertmanagers gossip with each other (``--cluster.peer``)
and each sends every notification to every replica. Everything started is stopped on the
way out, even when the test fails.

    with replicas(engine_env, tmp_path) as rs:
        rs.ams[0].fire({"alertname": "X", "instance": "cache-1"})
        rs.post(1, payload)                # straight to replica r2's webhook
        rs.kill("r1")                      # SIGKILL to every process of r1
        rs.cli_json("history", replica="r3")
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.alertmanager import Alertmanager
from tests.support.redis_servers import RedisServer
from tests.support.service import GRACE, HasEnv, Served, first_token, free_port, wait_for

if TYPE_CHECKING:
    from engine.records import Lock
    from engine.store import Store

NAMES = ("r1", "r2", "r3")
# One HTTP worker and one engine worker process per replica: three replicas make a dozen
# processes already, on a machine of two cores shared with other test runs.
WEBHOOK = f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, graceful_timeout: 2s}}"


class Replica(Served):
    """One ``recovery serve`` on the shared store: ``Served`` with the state URL and the
    replica's name in its environment (``Served`` scrubs the caller's state URL)."""

    def __init__(self, env: HasEnv | Mapping[str, str], home: Path, port: int, name: str,
                 state_url: str) -> None:
        super().__init__(env, home, port, "--workers", "1")
        self.name, self.state_url = name, state_url

    def environ(self) -> dict[str, str]:
        environ = super().environ()
        environ["RECOVERY_STATE_URL"] = self.state_url
        environ["RECOVERY_REPLICA"] = self.name
        return environ

    @property
    def webhook(self) -> str:
        return f"{self.url}/api/v1/alerts"

    def post(self, payload: dict, timeout: float = 10) -> httpx.Response:
        """A notification straight to this replica's webhook, as Alertmanager sends it."""
        return httpx.post(self.webhook, json=payload, timeout=timeout,
                          headers={"Authorization": f"Bearer {self.token}"})


class Replicas:
    """The replicas, their Redis and their Alertmanagers, and the CLI run as any one of
    the replicas (the same store: what one replica did, every replica shows)."""

    def __init__(self, state_url: str, redis: RedisServer | None, replicas: list[Replica],
                 ams: list[Alertmanager]) -> None:
        self.state_url, self.redis = state_url, redis
        self.replicas, self.ams = replicas, ams

    def __getitem__(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def post(self, index: int, payload: dict) -> httpx.Response:
        return self.replicas[index % len(self.replicas)].post(payload)

    def kill(self, name: str) -> None:
        """SIGKILL to every process of replica ``name``: it dies without a word, in the
        middle of whatever it was doing."""
        self[name].kill_all()

    def pause(self, name: str) -> None:
        """SIGSTOP to every process of replica ``name`` (``resume`` undoes it)."""
        self._signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: int) -> None:
        replica = self[name]
        replica.remember()
        for process in replica.seen.values():
            try:
                process.send_signal(sig)
            except Exception:  # noqa: BLE001 - one already gone: the others still get it
                pass

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    # -- the CLI, as a replica runs it --------------------------------------------------------
    def cli(self, *args: str, replica: str = NAMES[0]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args],
                              env=self[replica].environ(), capture_output=True, text=True,
                              timeout=60)

    def cli_json(self, *args: str, replica: str = NAMES[0]) -> Any:
        done = self.cli(*args, "--json", replica=replica)
        assert done.returncode == 0, f"recovery {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout)

    def runs(self, runbook: str, replica: str = NAMES[0]) -> list[dict]:
        """Every run of ``runbook``, whichever replica ran it, oldest first."""
        found = self.cli_json("history", "--limit", "100000", replica=replica)
        return sorted((r for r in found if r["runbook"] == runbook),
                      key=lambda r: r.get("started_at") or 0)

    def store(self) -> Store:
        """The shared store, opened as a replica opens it (close it after use)."""
        from engine.store import open_store

        return open_store(self.state_url)

    def queued(self) -> int:
        """Journaled alerts not acknowledged yet (the intake queue's length)."""
        store = self.store()
        try:
            return store.intake_depth(time.time())[0]
        finally:
            store.close()

    def lock(self, target: str) -> Lock | None:
        """The lock row of ``target`` in the shared store, read as any replica reads it."""
        store = self.store()
        try:
            return store.get_lock(target)
        finally:
            store.close()

    def settle(self, timeout: float = 60) -> None:
        """Every journaled alert acknowledged (the intake stream empty)."""
        assert wait_for(lambda: self.queued() == 0, timeout, every=0.5), \
            f"intake never drained: {self.queued()} left; " + self.errors()

    def errors(self) -> str:
        """The tail of every replica's stderr: what an assertion message should show."""
        return "\n".join(f"--- {r.name}:\n{r.stderr()[-1500:]}"
                         for r in self.replicas if r.starts)


@contextmanager
def replicas(engine_env, tmp_path: Path, *, names: tuple[str, ...] = NAMES,
             alertmanagers: int = 2, webhook: str = WEBHOOK, backend: str = "redis",
             **config: str) -> Iterator[Replicas]:
    """``len(names)`` replicas on one new ``redis-server`` (AOF on) and an HA pair of
    clustered Alertmanagers (``alertmanagers``: 0 for none), each sending to every
    replica; ``config`` goes into the shared recovery.yml (with ``webhook``).
    ``backend="sqlite"``: the replicas share one SQLite file instead (one host only),
    so that a scenario failing on Redis can be told apart from one failing anywhere."""
    with ExitStack() as cleanup:
        redis: RedisServer | None = None
        if backend == "redis":
            redis = RedisServer(tmp_path / "redis", appendonly="yes",
                                appendfsync="always").start()
            cleanup.callback(redis.kill)
            state_url = redis.url
        else:
            (tmp_path / "shared").mkdir()
            state_url = f"sqlite:///{tmp_path / 'shared' / 'recovery.db'}"
            # Made before the replicas start: several processes creating one new SQLite
            # file at once can find its log before the file, which the store refuses.
            from engine.store import open_store

            open_store(state_url).close()
        engine_env.write_config(webhook=webhook, **config)
        members = [Replica(engine_env, tmp_path / name / "home", free_port(), name,
                           state_url) for name in names]
        for member in members:
            cleanup.callback(member.kill_all)
        tokens = [first_token(engine_env.config_path, member) for member in members]
        ams: list[Alertmanager] = []
        for i in range(alertmanagers):
            am = Alertmanager(tmp_path / f"am{i}", members[0].webhook, tokens[0],
                              more_receivers=[(m.webhook, t) for m, t in
                                              zip(members[1:], tokens[1:], strict=True)],
                              clustered=alertmanagers > 1, peers=ams[:1])
            ams.append(am)
        if ams:
            config["alertmanagers"] = json.dumps([am.url for am in ams])
            engine_env.write_config(webhook=webhook, **config)
        for member in members:         # in parallel: each takes a while to import
            member.start()
        for am in ams:
            cleanup.callback(am.stop)
            am.start()
        for member in members:
            member.wait_healthy()
            member.wait_ready(30)
        if len(ams) > 1:
            assert wait_for(lambda: all(am.cluster_size() == len(ams) for am in ams), 20), \
                "the Alertmanagers never saw each other: " + ams[-1].log()[-2000:]
        yield Replicas(state_url, redis, members, ams)
        for member in members:         # a clean stop where it can, then kill_all
            if member.proc is not None and member.proc.poll() is None:
                member.terminate()
