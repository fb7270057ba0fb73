"""The shipped playbooks over real SSH, through ``recovery recover``: four test hosts
(tests/support/fleet.py: network namespaces, each with its own sshd and address), each
running its own Redis under its own supervisord. What runs here runs as it would on a
remote machine: Ansible connects over SSH with the fleet's key and the program, the
container and the roots come from the inventory.

One path is fast enough for ``make test`` (a restart over SSH gives a new pid and Redis
answers); the rest is marked slow."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fleet import Fleet, Host, wait_redis
from tests.support.fleet_engine import recovery, without_recovery_env, write_engine_config
from tests.support.standins import install_runtime, runtime_calls
from tests.support.supervisor import BIN, Program, Supervisor

pytestmark = pytest.mark.requires("root", "ip", "sshd", "redis-server", "supervisord")

RUNBOOKS = {
    # process_restart.yml over SSH; the engine's own redis.ping on the host's redis_url
    "service.yml": """\
        name: service
        component: service
        strategies:
          - name: process_restart
            playbook: process_restart.yml
            timeout: 2m
        verify: {action: redis.ping, initial_delay: 0s, interval: 0.2s, deadline: 20s}
        """,
    # restart_container.yml: each host's own container, from its inventory
    "container.yml": """\
        name: container
        strategies:
          - name: restart_container
            playbook: restart_container.yml
            extravars: {container_var: redis_container, container_default: redis}
            timeout: 2m
        verify: {action: test.ok, interval: 0.05s, deadline: 2s}
        """,
    # disk_cleanup.yml under the host's cleanup_roots. With a threshold of 0 (every old
    # match goes) neither the playbook nor system.health checks the disk: the test looks
    # at the files itself.
    "cleanup.yml": """\
        name: cleanup
        strategies:
          - name: disk_cleanup
            playbook: disk_cleanup.yml
            timeout: 2m
        verify: {action: test.ok, interval: 0.05s, deadline: 2s}
        """,
}

@dataclass
class Site:
    """The fleet, what runs on each host, and an engine configuration for it."""

    fleet: Fleet
    supervisors: dict[str, Supervisor]
    config: Path
    home: Path

    def recovery(self, *args: str) -> tuple[int, str]:
        """``recovery --config CONFIG ARGS`` in this process; exit code and output."""
        return recovery(self.config, *args)

    def runs(self, runbook: str) -> list:
        """The run records of ``runbook``, newest first."""
        from engine.store.sqlite import SQLiteStore

        store = SQLiteStore(self.home / "recovery.db")
        try:
            return [r for r in store.query_runs(limit=200) if r.runbook == runbook]
        finally:
            store.close()

    def pids(self) -> dict[str, int | None]:
        return {name: sup.pid("redis") for name, sup in self.supervisors.items()}

    def standin_calls(self, host: Host, runtime: str = "docker") -> list[list[str]]:
        return runtime_calls(host, runtime)


@pytest.fixture(scope="module")
def site(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    supervisors = {}
    host_vars = {}
    for host in fleet:
        supervisors[host.name] = host.supervise({"redis": Program(
            command=host.redis_argv(), startsecs=0)})
        supervisors[host.name].wait_running("redis")
        (host.root / "clean").mkdir()
        host_vars[host.name] = {
            "program": "redis", "service_manager": "supervisor",
            "supervisor_config": str(supervisors[host.name].conf),
            "supervisorctl_bin": str(BIN / "supervisorctl"),
            "redis_url": f"redis://{host.address}:6379/0",
            "redis_container": f"redis-{host.name}",
            "cleanup_roots": [str(host.root / "clean")],
            "cleanup_max_usage_percent": 0,
        }
    install_runtime(fleet["h4"], "docker")     # recording stand-ins (tests/support/standins.py)
    install_runtime(fleet["h3"], "podman")
    host_vars["h3"]["container_runtime"] = "podman"
    inventory = fleet.write_inventory(root / "inventory" / "hosts.yml",
                                      groups={"redis": ["h1", "h2", "h3", "h4"],
                                              "docker_hosts": ["h3", "h4"]},
                                      host_vars=host_vars)
    config = write_engine_config(root, inventory, RUNBOOKS)
    try:
        with without_recovery_env():
            yield Site(fleet, supervisors, config, root / "var")
    finally:
        for supervisor in supervisors.values():
            supervisor.stop()


def test_a_service_restarted_over_ssh_has_a_new_pid_and_its_redis_answers(site: Site) -> None:
    """process_restart.yml on h2 over SSH (supervisorctl there): h2's Redis runs with a
    new pid and answers on h2's address; the other hosts are not touched."""
    before = site.pids()
    code, out = site.recovery("recover", "-c", "service", "-t", "h2")
    assert code == 0, out
    after = site.pids()
    assert after["h2"] and after["h2"] != before["h2"], (before, after)
    assert {h: after[h] for h in ("h1", "h3", "h4")} == {h: before[h] for h in ("h1", "h3", "h4")}
    assert wait_redis(site.fleet["h2"].address, 6379, 10)
    (run,) = [r for r in site.runs("service") if r.strategy == "process_restart"][:1]
    assert run.target == "h2" and run.status.value == "succeeded", run.reason


@pytest.mark.slow
def test_check_mode_changes_nothing_on_any_host(site: Site) -> None:
    """``--check`` of a restart and a cleanup on the whole group: no pid changes, no file
    is deleted, the container runtime is never called."""
    for host in site.fleet:
        old = host.root / "clean" / "old.tmp"
        old.write_text("x" * 100)
        os.utime(old, (time.time() - 30 * 86400,) * 2)
    before = site.pids()
    for runbook in ("service", "cleanup"):    # container: in its own test, below
        # Every host is healthy (their verify passes), so without --include-healthy a
        # group leaves them all alone: the playbooks' own check mode is what is tested.
        code, out = site.recovery("recover", "-c", runbook, "-t", "redis", "--check",
                                  "--include-healthy")
        assert "left alone" not in out, out
        assert code == 0, out
    assert site.pids() == before
    assert all((host.root / "clean" / "old.tmp").exists() for host in site.fleet)
    assert site.standin_calls(site.fleet["h4"]) == []
    assert site.standin_calls(site.fleet["h3"], "podman") == []
    for host in site.fleet:
        assert wait_redis(host.address, 6379, 5)


@pytest.mark.slow
def test_a_host_whose_sshd_is_stopped_fails_as_unreachable(site: Site) -> None:
    host = site.fleet["h3"]
    before = site.pids()
    host.stop_sshd()
    try:
        code, out = site.recovery("recover", "-c", "service", "-t", "h3")
    finally:
        host.start_sshd()
    assert code == 1, out
    runs = [r for r in site.runs("service") if r.target == "h3" and
            r.strategy == "process_restart"]
    assert runs and runs[0].status.value == "failed"
    assert "unreachable" in runs[0].reason, runs[0].reason
    assert [(h["host"], h["outcome"]) for h in runs[0].hosts] == [("h3", "unreachable")]
    assert site.pids()["h3"] == before["h3"]


@pytest.mark.slow
def test_restart_container_sends_the_runtime_exactly_this_argv(site: Site) -> None:
    """h4's ``docker`` and h3's ``podman`` are recording stand-ins (tests cannot run a
    container runtime): the play sends ``restart -t 10 <the host's container>``, once,
    to the runtime the host's inventory names; check mode sends nothing."""
    h3, h4 = site.fleet["h3"], site.fleet["h4"]
    # test.ok verifies every host healthy, so the group is left alone: no runtime called.
    code, out = site.recovery("recover", "-c", "container", "-t", "docker_hosts")
    assert code == 0, out
    assert site.standin_calls(h4) == [] and site.standin_calls(h3, "podman") == []
    left = [r for r in site.runs("container") if r.status.value == "skipped"]
    assert sorted(r.target for r in left) == ["h3", "h4"]
    assert all(r.reason.startswith("healthy") for r in left), [r.reason for r in left]

    # --include-healthy acts on the group anyway.
    code, out = site.recovery("recover", "-c", "container", "-t", "docker_hosts", "--check",
                              "--include-healthy")
    assert code == 0, out
    assert site.standin_calls(h4) == [] and site.standin_calls(h3, "podman") == []

    code, out = site.recovery("recover", "-c", "container", "-t", "docker_hosts",
                              "--include-healthy")
    assert code == 0, out
    assert site.standin_calls(h4) == [["restart", "-t", "10", "redis-h4"]]
    assert site.standin_calls(h3, "podman") == [["restart", "-t", "10", "redis-h3"]]
    assert site.standin_calls(h3) == [] and site.standin_calls(h4, "podman") == []


@pytest.mark.slow
def test_disk_cleanup_over_ssh_deletes_old_matches_on_that_host_only(site: Site) -> None:
    files = {}
    for host in site.fleet:
        clean = host.root / "clean"
        old, new, other = clean / "cache.tmp", clean / "fresh.tmp", clean / "keep.txt"
        for path in (old, new, other):
            path.write_text("y" * 1000)
        for path in (old, other):
            os.utime(path, (time.time() - 30 * 86400,) * 2)
        files[host.name] = (old, new, other)

    code, out = site.recovery("recover", "-c", "cleanup", "-t", "h1")
    assert code == 0, out
    old, new, other = files["h1"]
    assert not old.exists() and new.exists() and other.exists()
    assert all(files[h][0].exists() for h in ("h2", "h3", "h4"))

    code, out = site.recovery("recover", "-c", "cleanup", "-t", "h1")    # idempotent
    assert code == 0, out
    assert new.exists() and other.exists()
