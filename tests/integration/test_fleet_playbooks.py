"""restart_service.yml and the snapshot playbooks over real SSH, through ``recovery
recover``, on four test hosts (tests/support/fleet.py) that each run their Redis in a
different way, as the host's ``service_manager`` says:

  h1  supervisor  a real supervisord (program ``redis``), and a small data service
                  (``store``: an HTTP server over its data directory) for the snapshots
  h2  systemd     a stand-in ``systemctl`` (systemd cannot run in a network namespace)
                  that really starts and stops the unit's redis-server
  h3  docker      a recording stand-in ``docker``; the host's Redis runs by itself
  h4  podman      a recording stand-in ``podman``; the host's Redis runs by itself

Every playbook run here is a few seconds of SSH and Ansible, so the module is slow."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, wait_port, wait_redis
from tests.support.fleet_engine import recovery, without_recovery_env, write_engine_config
from tests.support.standins import (
    add_unit,
    install_runtime,
    install_systemctl,
    runtime_calls,
    systemctl_calls,
    unit_pid,
)
from tests.support.supervisor import BIN, Program, Supervisor

pytestmark = [pytest.mark.slow,
              pytest.mark.requires("root", "ip", "sshd", "redis-server", "supervisord")]

RUNBOOKS = {
    # One step for every host, whatever runs its Redis; the engine's redis.ping after.
    "svc.yml": """\
        name: svc
        component: redis
        strategies:
          - name: restart_service
            playbook: restart_service.yml
            extravars: {service_default: redis}   # where a host names no container/program
            timeout: 2m
        verify: {action: redis.ping, initial_delay: 0s, interval: 0.2s, deadline: 20s}
        """,
    # The same step for other components: h2's `stuck` unit, h3's `worker` (runit).
    "stuck.yml": """\
        name: stuck
        strategies:
          - name: restart_service
            playbook: restart_service.yml
            timeout: 2m
        verify: {action: test.ok, interval: 0.05s, deadline: 2s}
        """,
    "worker.yml": """\
        name: worker
        strategies:
          - name: restart_service
            playbook: restart_service.yml
            timeout: 2m
        verify: {action: test.ok, interval: 0.05s, deadline: 2s}
        """,
    # The snapshots of h1's data service: its paths, program and URL are store_* host vars.
    "store.yml": """\
        name: store
        component: store
        strategies:
          - name: snapshot_take
            playbook: snapshot_take.yml
            extravars: {health_path: /, stop_service: true}
            timeout: 2m
          - name: snapshot_rollback
            playbook: snapshot_rollback.yml
            extravars: {health_path: /, health_wait: 20}
            timeout: 2m
        verify: {action: test.ok, interval: 0.05s, deadline: 2s}
        """,
    # The same playbooks on h2, whose data service `datasvc` is a systemd unit.
    "unitdata.yml": """\
        name: unitdata
        strategies:
          - name: snapshot_take
            playbook: snapshot_take.yml
            extravars: {stop_service: true}
            timeout: 2m
          - name: snapshot_rollback
            playbook: snapshot_rollback.yml
            timeout: 2m
        verify: {action: test.ok, interval: 0.05s, deadline: 2s}
        """,
}


# h1's data service: its data directory over HTTP on port 8000. Not `python -m
# http.server`, whose start-up looks the address up in DNS (getfqdn), which a test host
# cannot reach: ten seconds of every restart.
STORE = """
import functools, http.server, socketserver, sys
socketserver.TCPServer.allow_reuse_address = True
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
socketserver.TCPServer((sys.argv[1], 8000), handler).serve_forever()
"""


@dataclass
class Site:
    fleet: Fleet
    supervisor: Supervisor          # h1's
    config: Path
    home: Path
    data: Path                      # h1's store data
    snapshots: Path
    own_redis: dict[str, int]       # h3's and h4's redis-server pids (not restarted by stand-ins)

    def recovery(self, *args: str) -> tuple[int, str]:
        """``recovery --config CONFIG ARGS`` in this process; exit code and output."""
        return recovery(self.config, *args)

    def last_run(self, runbook: str, strategy: str, target: str):
        from engine.store.sqlite import SQLiteStore

        store = SQLiteStore(self.home / "recovery.db")
        try:
            return next(r for r in store.query_runs(limit=200) if r.runbook == runbook
                        and r.strategy == strategy and r.target == target)
        finally:
            store.close()

    def stdout(self, run) -> str:
        return (self.home / "artifacts" / run.id / "stdout").read_text()

    def redis_pids(self) -> dict[str, int | None]:
        return {"h1": self.supervisor.pid("redis"), "h2": unit_pid(self.fleet["h2"], "redis"),
                **self.own_redis, "h1-store": self.supervisor.pid("store")}

    def get(self, path: str) -> str:
        url = f"http://{self.fleet['h1'].address}:8000/{path}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()


@pytest.fixture(scope="module")
def site(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    h1, h2, h3, h4 = (fleet[f"h{n}"] for n in range(1, 5))
    store_root = h1.root / "store"
    data, snapshots = store_root / "data", store_root / "snapshots"
    data.mkdir(parents=True)
    (data / "a.txt").write_text("v1")
    (h1.root / "store.py").write_text(STORE)
    supervisor = h1.supervise({
        "redis": Program(command=h1.redis_argv(), startsecs=0),
        "store": Program(command=[sys.executable, str(h1.root / "store.py"), h1.address, str(data)],
                         startsecs=0)})
    supervisor.wait_running("redis")
    supervisor.wait_running("store")
    assert wait_port(h1.address, 8000, 20)

    install_systemctl(h2)
    add_unit(h2, "redis", h2.redis_argv())
    add_unit(h2, "stuck", ["sleep", "600"], stuck=True)
    add_unit(h2, "datasvc", ["sleep", "600"])
    (h2.root / "unitdata" / "data").mkdir(parents=True)
    (h2.root / "unitdata" / "data" / "a.txt").write_text("v1")
    for unit in ("redis", "stuck", "datasvc"):
        h2.run(str(h2.bin / "systemctl"), "start", unit)
    assert wait_redis(h2.address, 6379, 20)

    install_runtime(h3, "docker")
    install_runtime(h4, "podman")
    own_redis = {host.name: host.start_redis().pid for host in (h3, h4)}

    redis_url = {h.name: f"redis://{h.address}:6379/0" for h in fleet}
    host_vars = {
        "h1": {"service_manager": "supervisor", "redis_program": "redis",
               "supervisor_config": str(supervisor.conf),
               "supervisorctl_bin": str(BIN / "supervisorctl"),
               "store_program": "store", "store_persist_dir": str(data),
               "store_snapshot_dir": str(snapshots), "snapshot_roots": [str(store_root)],
               "store_url": f"http://{h1.address}:8000"},
        "h2": {"service_manager": "systemd", "redis_program": "redis", "stuck_program": "stuck",
               "unitdata_program": "datasvc",
               "unitdata_persist_dir": str(h2.root / "unitdata" / "data"),
               "unitdata_snapshot_dir": str(h2.root / "unitdata" / "snapshots"),
               "snapshot_roots": [str(h2.root / "unitdata")]},
        # worker_service_manager: what the host says for the worker component only
        "h3": {"service_manager": "docker", "redis_container": "redis-h3",
               "worker_service_manager": "runit", "worker_program": "worker"},
        "h4": {"service_manager": "podman"},      # no redis_container: the default's name
    }
    for name, url in redis_url.items():
        host_vars[name]["redis_url"] = url
    inventory = fleet.write_inventory(root / "inventory" / "hosts.yml",
                                      groups={"redis": ["h1", "h2", "h3", "h4"]},
                                      host_vars=host_vars)
    config = write_engine_config(root, inventory, RUNBOOKS)
    try:
        with without_recovery_env():
            yield Site(fleet, supervisor, config, root / "var", data, snapshots, own_redis)
    finally:
        supervisor.stop()


# -- restart_service.yml -------------------------------------------------------------------

def test_check_mode_of_the_group_says_what_would_run_and_changes_nothing(site: Site) -> None:
    """One plan line per host, with the exact command its manager would get; no pid
    changes, no runtime is called, systemctl is only asked (show), never told."""
    before = site.redis_pids()
    calls = len(systemctl_calls(site.fleet["h2"]))
    code, out = site.recovery("recover", "-c", "svc", "-t", "redis", "--check",
                              "--include-healthy")
    assert code == 0, out
    assert site.redis_pids() == before
    assert runtime_calls(site.fleet["h3"]) == [] and runtime_calls(site.fleet["h4"], "podman") == []
    assert {call[0] for call in systemctl_calls(site.fleet["h2"])[calls:]} <= {"show"}
    conf = str(site.supervisor.conf)
    plans = {
        "h1": f'would run: ["{BIN / "supervisorctl"}", "-c", "{conf}", "restart", "redis"]',
        "h2": 'would run: ["systemctl", "restart", "redis"]',
        "h3": 'would run: ["docker", "restart", "-t", "10", "redis-h3"]',
        "h4": 'would run: ["podman", "restart", "-t", "10", "redis"]',
    }
    for host, plan in plans.items():
        run = site.last_run("svc", "restart_service", host)
        assert run.check_mode and run.status.value == "succeeded", run.reason
        assert plan in site.stdout(run).replace("\\\"", '"'), site.stdout(run)


def test_restart_service_under_supervisor_gives_a_new_pid_and_redis_answers(site: Site) -> None:
    before = site.redis_pids()
    code, out = site.recovery("recover", "-c", "svc", "-t", "h1")
    assert code == 0, out
    after = site.redis_pids()
    assert after["h1"] and after["h1"] != before["h1"]
    assert {h: after[h] for h in after if h != "h1"} == {h: before[h] for h in after if h != "h1"}
    assert wait_redis(site.fleet["h1"].address, 6379, 10)
    assert site.last_run("svc", "restart_service", "h1").status.value == "succeeded"


def test_restart_service_under_systemd_restarts_the_unit_with_a_new_main_pid(site: Site) -> None:
    """Through ansible.builtin.systemd_service, against the stand-in systemctl: the unit
    is told ``restart redis`` once, its redis-server runs with a new pid and answers."""
    h2 = site.fleet["h2"]
    before = site.redis_pids()
    calls = len(systemctl_calls(h2))
    code, out = site.recovery("recover", "-c", "svc", "-t", "h2")
    assert code == 0, out
    told = [c for c in systemctl_calls(h2)[calls:] if c[0] != "show"]
    assert told == [["restart", "redis"]]
    after = site.redis_pids()
    assert after["h2"] and after["h2"] != before["h2"]
    assert {h: after[h] for h in after if h != "h2"} == {h: before[h] for h in after if h != "h2"}
    assert wait_redis(h2.address, 6379, 10)


def test_a_unit_that_keeps_its_pid_after_a_restart_fails_the_run(site: Site) -> None:
    """process_restart.yml's own check, over SSH: systemd said restarted, but the main
    pid did not change, so nothing was restarted."""
    h2 = site.fleet["h2"]
    pid = unit_pid(h2, "stuck")
    code, out = site.recovery("recover", "-c", "stuck", "-t", "h2")
    assert code != 0, out
    run = site.last_run("stuck", "restart_service", "h2")
    assert run.status.value == "failed"
    assert "did not come back as a new process" in run.reason, run.reason
    assert unit_pid(h2, "stuck") == pid


def test_restart_service_sends_the_container_runtime_exactly_this_argv(site: Site) -> None:
    """h3's docker gets the host's own container; h4 names none and gets the runbook's
    service_default; each exactly once, and only its own runtime."""
    h3, h4 = site.fleet["h3"], site.fleet["h4"]
    for host in ("h3", "h4"):
        code, out = site.recovery("recover", "-c", "svc", "-t", host)
        assert code == 0, out
    assert runtime_calls(h3) == [["restart", "-t", "10", "redis-h3"]]
    assert runtime_calls(h4, "podman") == [["restart", "-t", "10", "redis"]]
    assert runtime_calls(h3, "podman") == [] and runtime_calls(h4) == []


def test_an_unknown_service_manager_is_refused_and_nothing_runs(site: Site) -> None:
    """h3 says its worker runs under runit (worker_service_manager beats the host's
    service_manager for that component): refused, not guessed; no runtime called."""
    h3 = site.fleet["h3"]
    calls = runtime_calls(h3)
    code, out = site.recovery("recover", "-c", "worker", "-t", "h3")
    assert code != 0, out
    run = site.last_run("worker", "restart_service", "h3")
    assert run.status.value == "failed" and "refused on h3" in run.reason, run.reason
    assert "got \"runit\"" in run.reason
    assert runtime_calls(h3) == calls


# -- snapshot_take.yml, snapshot_rollback.yml ----------------------------------------------

def _store(site: Site) -> list[str]:
    """h1's snapshot folder, by name (archives, .good markers)."""
    return sorted(p.name for p in site.snapshots.iterdir()) if site.snapshots.exists() else []


def test_snapshot_take_then_rollback_over_ssh(site: Site) -> None:
    """h1's data service under supervisord, its paths from the inventory: check mode
    writes and stops nothing; a snapshot stops the service for the copy and is marked
    good (the service answered over h1's network before and after); a check-mode
    rollback changes nothing; a rollback restores the data, keeps a pre-rollback
    snapshot, and the service serves the restored files; a second rollback ends the same."""
    def step(strategy: str, *extra: str) -> None:
        code, out = site.recovery("recover", "-c", "store", "-s", strategy, "-t", "h1", *extra)
        assert code == 0, out

    pid = site.supervisor.pid("store")
    step("snapshot_take", "--check")
    assert _store(site) == [] and site.supervisor.pid("store") == pid

    step("snapshot_take")
    archives = [n for n in _store(site) if n.endswith(".tar.gz")]
    assert len(archives) == 1 and f"{archives[0]}.good" in _store(site), _store(site)
    pid = site.supervisor.wait_running("store")
    assert site.get("a.txt") == "v1"

    (site.data / "a.txt").write_text("v2")
    (site.data / "c.txt").write_text("written after the snapshot")
    step("snapshot_rollback", "--check")
    assert site.get("a.txt") == "v2" and site.supervisor.pid("store") == pid
    assert not [n for n in _store(site) if "pre-rollback" in n]

    for rollbacks in (1, 2):
        step("snapshot_rollback")
        assert site.supervisor.wait_running("store") != pid
        pid = site.supervisor.pid("store")
        assert site.get("a.txt") == "v1"
        assert not (site.data / "c.txt").exists()
        assert len([n for n in _store(site) if n.endswith(".pre-rollback.tar.gz")]) == rollbacks
        assert sorted(p.name for p in site.data.parent.iterdir()) == ["data", "snapshots"]


def test_snapshots_stop_and_start_a_systemd_service(site: Site) -> None:
    """With service_manager systemd, snapshot_take's stop_service stops the unit for the
    copy and starts it again, as snapshot_rollback does around the restore."""
    h2 = site.fleet["h2"]
    data = h2.root / "unitdata" / "data"
    pid = unit_pid(h2, "datasvc")
    calls = len(systemctl_calls(h2))
    code, out = site.recovery("recover", "-c", "unitdata", "-s", "snapshot_take", "-t", "h2")
    assert code == 0, out
    told = [c for c in systemctl_calls(h2)[calls:] if c[0] != "show"]
    assert told == [["stop", "datasvc"], ["start", "datasvc"]], told
    assert unit_pid(h2, "datasvc") not in (0, pid)

    (data / "a.txt").write_text("v2")
    calls = len(systemctl_calls(h2))
    code, out = site.recovery("recover", "-c", "unitdata", "-s", "snapshot_rollback", "-t", "h2")
    assert code == 0, out
    told = [c for c in systemctl_calls(h2)[calls:] if c[0] != "show"]
    assert told == [["stop", "datasvc"], ["start", "datasvc"]], told
    assert (data / "a.txt").read_text() == "v1" and unit_pid(h2, "datasvc") != 0
