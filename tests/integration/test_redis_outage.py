"""Degrade, don't lose: a real ``recovery serve`` on a real ``redis-server`` (AOF on, as
docs/operations.md requires) that the test kills, stops and starts again.

While Redis is down the webhook answers 503 (Alertmanager sends again), ``/readyz``
fails and the engine workers wait; once it is back they go on by themselves. Every
alert the webhook acknowledged (2xx) runs its step exactly once: the runbook's action
appends a line per run (``trace``), counted per host. The posting side behaves as
Alertmanager does: a notification answered 5xx, or not answered, is sent again.

The quick tests (one kill and a handful of alerts; an unsafe server refused at the start)
run in ``make test``; the others (a start while Redis is down, a server that stops
answering, the storm: a SIGKILL and a graceful restart in the middle of 300 alerts) are
``slow``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from engine.store import open_store
from tests.support.engine_env import local_inventory
from tests.support.redis_servers import RedisServer
from tests.support.service import GRACE, Served, wait_for, webhook_token

pytestmark = pytest.mark.requires("redis-server")

ALERTNAME = "OutageStorm"
ANSWER_BOUND = 20.0       # s: an answer while Redis is down comes within this, never a hang
STORE_WAIT = 2.0          # s: webhook.store_wait in these tests
# s: a client as patient as an Alertmanager whose webhook `timeout` is this: answered
# within store_wait (and a loaded machine's margin), never after two socket timeouts.
PATIENCE = 4 * STORE_WAIT


def hosts(n: int) -> list[str]:
    return [f"node-{i:03d}" for i in range(n)]


def storm_alert(host: str) -> dict:
    return {"status": "firing", "labels": {"alertname": ALERTNAME, "instance": host},
            "annotations": {"summary": f"{host} is down"},
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": f"outage-{host}"}


def notification(batch: list[str]) -> dict:
    return {"version": "4", "status": "firing", "receiver": "recovery",
            "groupKey": f'{{}}:{{alertname="{ALERTNAME}"}}',
            "alerts": [storm_alert(h) for h in batch]}


class Setup:
    """A service on a Redis store, its runbook tracing each run (``runs``)."""

    def __init__(self, serve, engine_env, tmp_path: Path, targets: list[str], *,
                 redis: RedisServer, workers: int = 1) -> None:
        self.redis = redis
        self.trace = tmp_path / "trace.log"
        touched = tmp_path / "touched"
        touched.mkdir()
        (engine_env.root / "inventory" / "hosts.yml").write_text(local_inventory(targets))
        engine_env.runbook("outage", f"""
            match:
              - alertname="{ALERTNAME}"
            target: "{{{{ labels.instance }}}}"
            strategies:
              - name: touch
                action: test.touch
                with: {{dir: "{touched}", trace: "{self.trace}"}}
            verify: {{action: test.ok, interval: 0.05s, deadline: 5s}}
        """)
        self.url = f"{redis.url}?prefix=outage:"
        engine_env.write_config(
            threads=4, state_url=f"'{self.url}'",
            webhook=f"{{workers: {workers}, http_workers: 1, shutdown_grace: {GRACE}s, "
                    f"graceful_timeout: 2s, store_wait: {STORE_WAIT:g}s}}")
        self.served: Served = serve()

    def post(self, batch: list[str], timeout: float = ANSWER_BOUND) -> int | None:
        """The answer's status, or None when none came within ``timeout`` (as
        Alertmanager sees it)."""
        try:
            answer = httpx.post(self.served.url + "/api/v1/alerts", json=notification(batch),
                                timeout=timeout,
                                headers={"Authorization":
                                         f"Bearer {webhook_token(self.served.home)}"})
        except httpx.HTTPError:
            return None
        return answer.status_code

    def readyz(self, timeout: float = ANSWER_BOUND) -> httpx.Response:
        return httpx.get(self.served.url + "/readyz", timeout=timeout)

    def runs(self) -> Counter:
        """Runs of the step per host, from the action's own trace."""
        lines = self.trace.read_text().splitlines() if self.trace.exists() else []
        return Counter(line.split()[1] for line in lines)

    def settled(self) -> bool:
        """Nothing left in the intake, no incident open or remediating."""
        store = open_store(self.url)
        try:
            depth, _ = store.intake_depth(time.time())
            return depth == 0 and not store.list_incidents(open_only=True)
        finally:
            store.close()

    def each_ran_once(self, targets: list[str], timeout: float = 90) -> None:
        """Once the store is settled, the step ran once on each target, and only there."""
        assert wait_for(lambda: len(self.runs()) == len(targets) and self.settled(),
                        timeout), (self.runs(), self.served.stderr()[-3000:])
        assert self.runs() == Counter(dict.fromkeys(targets, 1))

    def log_lines(self) -> list[str]:
        """What the service said at WARNING and above (every process: gunicorn too)."""
        return [line for line in self.served.stderr().splitlines()
                if " WARNING " in line or " ERROR " in line]

    def outage_lines(self) -> list[str]:
        return [line for line in self.served.stderr().splitlines()
                if "storage outage:" in line]


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", appendonly="yes", appendfsync="everysec")
    yield server
    server.kill()


def test_redis_killed_503_and_not_ready_then_every_acknowledged_alert_runs_once(
        serve, engine_env, tmp_path, redis_server):
    targets = hosts(8)
    setup = Setup(serve, engine_env, tmp_path, targets, redis=redis_server.start())
    setup.served.start()
    setup.served.wait_ready()
    assert setup.post(targets[:4]) == 200

    redis_server.kill()                                     # SIGKILL: a crash
    assert setup.post(targets[4:]) == 503                   # Alertmanager sends it again
    ready = setup.readyz()
    assert ready.status_code == 503 and ready.json()["store"] == "unavailable"
    assert setup.served.get("/healthz").status_code == 200  # alive: not to be restarted

    redis_server.start()                                    # its AOF read back
    setup.served.wait_ready(60)
    assert setup.post(targets[4:]) == 200                   # the retry is taken
    setup.each_ran_once(targets)
    # One warning when the outage began (per process), not one per failure.
    assert len(setup.outage_lines()) <= 4, setup.outage_lines()
    assert setup.served.proc.poll() is None                 # nothing crashed out
    assert setup.served.terminate() == 0


@pytest.mark.slow
def test_the_service_starts_while_redis_is_down_and_is_ready_once_it_comes(
        serve, engine_env, tmp_path, redis_server):
    targets = hosts(3)
    setup = Setup(serve, engine_env, tmp_path, targets, redis=redis_server)
    setup.served.start()                                    # Redis not started yet
    setup.served.wait_healthy()
    assert setup.post(targets) == 503
    assert setup.readyz().status_code == 503

    redis_server.start()
    setup.served.wait_ready(60)
    assert setup.post(targets) == 200
    setup.each_ran_once(targets)
    assert setup.served.terminate() == 0


@pytest.mark.parametrize("unsafe, named", [
    ({"appendonly": "no"}, "appendonly is no"),
    ({"appendonly": "yes", "maxmemory": "50mb", "maxmemory_policy": "allkeys-lru"},
     "maxmemory-policy is allkeys-lru"),
    # Credentials it refuses: a configuration to fix, not an outage to wait out.
    ({"appendonly": "yes", "password": "s3cret-pw"}, "refused its credentials"),
])
def test_an_unsafe_redis_stops_the_start_with_the_reason(serve, engine_env, tmp_path,
                                                         unsafe, named):
    server = RedisServer(tmp_path / "unsafe", **unsafe).start()
    try:
        setup = Setup(serve, engine_env, tmp_path, hosts(1), redis=server)
        setup.served.start()
        assert setup.served.proc.wait(60) == 2
        assert named in setup.served.stderr()
        assert "s3cret-pw" not in setup.served.stderr()
    finally:
        server.kill()


@pytest.mark.slow
def test_an_unsafe_redis_that_comes_up_after_the_start_stops_the_service(
        serve, engine_env, tmp_path):
    """Started while Redis was down, the service can judge its settings only at its first
    answer: found unsafe then, the service stops (exit 2) with the reason, rather than
    answering 503 for ever."""
    server = RedisServer(tmp_path / "late-unsafe", appendonly="no")
    try:
        setup = Setup(serve, engine_env, tmp_path, hosts(1), redis=server)
        setup.served.start()
        setup.served.wait_healthy()
        server.start()
        assert setup.served.proc.wait(60) == 2, setup.served.stderr()[-3000:]
        assert "appendonly is no" in setup.served.stderr()
    finally:
        server.kill()


class Storm:
    """Posts ``targets`` in notifications of ``size`` as Alertmanager would: each sent
    again (after a short pause) until it is answered 2xx. Remembers what was acknowledged
    and every answer that was not."""

    def __init__(self, setup: Setup, targets: list[str], size: int = 10) -> None:
        self.setup = setup
        self.batches = [targets[i:i + size] for i in range(0, len(targets), size)]
        self.acknowledged: list[str] = []
        self.refused: Counter = Counter()        # status (None: no answer) -> how many
        self.thread = threading.Thread(target=self._post, daemon=True)
        self.deadline = 0.0

    def start(self, bound: float = 240.0) -> Storm:
        self.deadline = time.monotonic() + bound
        self.thread.start()
        return self

    def _post(self) -> None:
        for batch in self.batches:
            while time.monotonic() < self.deadline:
                status = self.setup.post(batch)
                if status is not None and 200 <= status < 300:
                    self.acknowledged += batch
                    break
                self.refused[status] += 1
                time.sleep(0.2)
            time.sleep(0.02)

    def wait_acknowledged(self, n: int, timeout: float = 120) -> None:
        assert wait_for(lambda: len(self.acknowledged) >= n, timeout, every=0.02), (
            len(self.acknowledged), self.refused)

    def wait_refused(self, timeout: float = 60) -> None:
        seen = sum(self.refused.values())
        assert wait_for(lambda: sum(self.refused.values()) > seen, timeout, every=0.05), \
            "the webhook kept acknowledging with Redis down"


@pytest.mark.slow
def test_redis_killed_and_restarted_during_a_storm_loses_nothing_and_runs_nothing_twice(
        serve, engine_env, tmp_path, redis_server):
    targets = hosts(300)
    setup = Setup(serve, engine_env, tmp_path, targets, redis=redis_server.start(),
                  workers=2)
    setup.served.start()
    setup.served.wait_ready()
    storm = Storm(setup, targets).start()

    storm.wait_acknowledged(60)
    redis_server.kill()                                 # a crash in the middle
    storm.wait_refused()
    assert setup.readyz().status_code == 503
    redis_server.start()

    storm.wait_acknowledged(180)
    redis_server.stop()                                 # a graceful restart
    storm.wait_refused()
    assert setup.readyz().status_code == 503
    redis_server.start()

    storm.thread.join(300)
    assert sorted(storm.acknowledged) == targets, storm.refused
    assert storm.refused[503] > 0
    assert wait_for(lambda: len(setup.runs()) == len(targets) and setup.settled(), 300), (
        len(setup.runs()), setup.served.stderr()[-3000:])
    runs = setup.runs()
    assert set(runs) == set(storm.acknowledged)
    assert {h: n for h, n in runs.items() if n != 1} == {}
    # Said once per outage and process, not once per alert or pass (two outages, two
    # engine workers).
    said = setup.log_lines()
    assert [line for line in said if " ERROR " in line] == []
    assert len([line for line in said if "left for a retry" in line]) <= 4, said
    assert [line for line in said if "claims of dead workers not released" in line] == []
    assert setup.served.proc.poll() is None
    assert setup.served.terminate() == 0


@pytest.mark.slow
def test_a_redis_that_stops_answering_gets_503_not_a_hang(serve, engine_env, tmp_path,
                                                          redis_server):
    """SIGSTOP: the server's port still accepts connections but nothing answers (a
    partition, a server swapping): the socket timeouts bound the wait."""
    targets = hosts(4)
    setup = Setup(serve, engine_env, tmp_path, targets, redis=redis_server.start())
    setup.served.start()
    setup.served.wait_ready()
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        assert setup.post(targets, timeout=PATIENCE) == 503
        assert setup.readyz(timeout=PATIENCE).status_code == 503
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    setup.served.wait_ready(60)
    assert setup.post(targets) == 200
    setup.each_ran_once(targets)
    assert setup.served.terminate() == 0
