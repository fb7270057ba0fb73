"""The shipped Redis runbook restarts Redis however each host runs it, and its plan says
which command will run on which host (engine/executors/effects.py), through
restart_service.yml with real ansible-runner on local hosts:

  cache-1  systemd     a stand-in ``systemctl`` (tests/support/standins.py) whose unit
                       really runs a redis-server
  cache-2  supervisor  a real supervisord whose program ``redis`` is a real redis-server
  cache-3  docker      a recording stand-in ``docker``; its Redis runs by itself

The stand-ins go first on PATH (local plays inherit the engine's). ``recovery test``
and ``recover --check`` name each host's command and change nothing; an approved step
restarts exactly that host's service (a new pid, Redis answers) and names it in the
approval's plan. The check-mode runs also prove that the plan and the playbook agree:
the playbook prints the argv it would run, the plan the same."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.cli import main
from engine.lifecycle import RunStatus
from tests.support.paths import ROOT
from tests.support.redis_servers import RedisServer, wait_until
from tests.support.service import free_port
from tests.support.shipped import install_playbooks
from tests.support.standins import (
    add_unit,
    install_runtime,
    install_systemctl,
    runtime_calls,
    systemctl_calls,
    unit_pid,
)
from tests.support.supervisor import BIN, Program, Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.requires("redis-server", "supervisord")]

FAST = {"initial_delay: 5s": "initial_delay: 0s", "stable_for: 5s": "stable_for: 0.5s",
        "initial_delay: 2s": "initial_delay: 0s", "interval: 2s": "interval: 0.2s"}
WAIT = 30.0


@dataclass
class Site:
    env: object
    standins: SimpleNamespace        # .bin (first on PATH), .root (the stand-ins' records)
    supervisor: Supervisor
    unit_redis: RedisServer          # what cache-1's unit runs (argv and port only)
    program_redis: RedisServer       # what cache-2's program runs (argv and port only)
    own_redis: RedisServer           # cache-3's, started here (docker restarts nothing)

    def recovery(self, capsys, *args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--config", str(self.env.config_path), *args])
        printed = capsys.readouterr()
        return code, printed.out + printed.err

    def pids(self) -> dict[str, int | None]:
        return {"cache-1": unit_pid(self.standins, "redis-server"),
                "cache-2": self.supervisor.pid("redis"), "cache-3": self.own_redis.proc.pid}


def _answers(server: RedisServer) -> bool:
    """PING answers (a server another process started: no ``proc`` of ours)."""
    try:
        return bool(server.client(timeout=0.5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _host(name: str, **vars_: object) -> list[str]:
    lines = [f"        {name}:", "          ansible_connection: local",
             '          ansible_python_interpreter: "{{ ansible_playbook_python }}"']
    return lines + [f"          {k}: {json.dumps(v)}" for k, v in vars_.items()]


@pytest.fixture
def site(engine_env, tmp_path: Path, monkeypatch) -> Iterator[Site]:
    standins = SimpleNamespace(root=tmp_path / "standins", bin=tmp_path / "standins" / "bin")
    standins.bin.mkdir(parents=True)
    install_systemctl(standins)
    install_runtime(standins, "docker")
    monkeypatch.setenv("PATH", f"{standins.bin}{os.pathsep}{os.environ['PATH']}")

    unit_redis = RedisServer(tmp_path / "unit-redis")
    unit_redis.folder.mkdir()
    add_unit(standins, "redis-server", unit_redis.argv())
    program_redis = RedisServer(tmp_path / "program-redis")
    program_redis.folder.mkdir()
    supervisor = Supervisor(tmp_path / "supervisor",
                            {"redis": Program(command=program_redis.argv(), startsecs=0)})
    own_redis = RedisServer(tmp_path / "own-redis")
    try:
        supervisor.start()
        supervisor.wait_running("redis")
        own_redis.start()
        assert (standins.bin / "systemctl").exists()
        os.spawnv(os.P_WAIT, str(standins.bin / "systemctl"),
                  ["systemctl", "start", "redis-server"])
        for server in (unit_redis, program_redis):
            assert wait_until(lambda s=server: _answers(s), WAIT), f"no redis on {server.port}"

        lines = ["all:", "  children:", "    redis:", "      hosts:"]
        lines += _host("cache-1", service_manager="systemd", redis_program="redis-server",
                       redis_url=unit_redis.url)
        lines += _host("cache-2", service_manager="supervisor", redis_program="redis",
                       supervisor_config=str(supervisor.conf),
                       supervisorctl_bin=str(BIN / "supervisorctl"), redis_url=program_redis.url)
        lines += _host("cache-3", service_manager="docker", redis_container="redis-c3",
                       redis_url=own_redis.url)
        (engine_env.root / "inventory" / "hosts.yml").write_text("\n".join(lines) + "\n")
        text = (ROOT / "runbooks" / "redis.yml").read_text()
        for old, new in FAST.items():
            assert old in text, old
            text = text.replace(old, new)
        (engine_env.root / "runbooks" / "redis.yml").write_text(text)
        install_playbooks(engine_env.root)
        engine_env.write_config(
            **{"degraded_modes": "\n  redis_unavailable: {capabilities: {cache: false}}"})
        yield Site(engine_env, standins, supervisor, unit_redis, program_redis, own_redis)
    finally:
        os.spawnv(os.P_WAIT, str(standins.bin / "systemctl"),
                  ["systemctl", "stop", "redis-server"])
        supervisor.stop()
        own_redis.kill()


def _commands(site: Site) -> dict[str, str]:
    """Each host's command as the plan words it."""
    return {"cache-1": "systemctl restart redis-server on cache-1",
            "cache-2": f"{BIN / 'supervisorctl'} -c {site.supervisor.conf} restart redis "
                       "on cache-2",
            "cache-3": "docker restart -t 10 redis-c3 on cache-3"}


def test_the_plan_names_each_hosts_command_and_the_check_run_agrees(site: Site, capsys) -> None:
    before = site.pids()
    code, shown = site.recovery(capsys, "test", "-c", "redis", "-f", "memory_pressure",
                                "-t", "redis")
    assert code == 0, shown
    assert "restart_service would run (per host, from the inventory):" in shown
    for line in _commands(site).values():
        assert f"  {line}\n" in shown, shown
    assert "container_default" not in shown and "service_default" not in shown

    code, shown = site.recovery(capsys, "recover", "-c", "redis", "-s", "restart_service",
                                "-t", "redis", "--check", "--include-healthy")
    assert code == 0, shown
    for host, line in _commands(site).items():
        assert f"{host}: restart_service: would run {line}" in shown, shown
    assert site.pids() == before                         # nothing restarted
    assert runtime_calls(site.standins) == []
    assert {call[0] for call in systemctl_calls(site.standins)} <= {"start", "show"}

    # The playbook's own words for each host: the argv the plan described.
    from engine.executors.effects import host_effects

    ctx = site.env.context()
    runbook = ctx.runbook("redis")
    step = runbook.strategy("restart_service")
    planned = {e.host: list(e.argv) for e in host_effects(
        step.playbook, dict(step.extravars), "redis", ["cache-1", "cache-2", "cache-3"],
        ctx.inventory)}
    for run in ctx.store.query_runs(limit=None):
        assert run.check_mode and run.status == RunStatus.SUCCEEDED, run.reason
        stdout = (site.env.root / "var" / "artifacts" / run.id / "stdout").read_text()
        said = re.search(r'"msg": "would run: (\[.*\])"', stdout.replace('\\"', '"'))
        assert said is not None, stdout
        assert json.loads(said.group(1)) == planned[run.target]


@pytest.mark.parametrize("host", ["cache-1", "cache-2", "cache-3"])
def test_an_approved_restart_restarts_that_hosts_service_and_no_other(
        site: Site, capsys, host: str) -> None:
    before = site.pids()
    code, shown = site.recovery(capsys, "recover", "-c", "redis", "-s", "restart_service",
                                "-t", host, "--as", "bob")
    assert code == 3, shown                              # parked: the restart needs approval
    ctx = site.env.context()
    [approval] = ctx.store.list_approvals("pending")
    assert approval.plan["effect"][0]["text"] == _commands(site)[host]
    code, pending = site.recovery(capsys, "pending")
    assert f"playbook restart_service.yml: {_commands(site)[host]}" in pending, pending

    code, shown = site.recovery(capsys, "approve", approval.run_id, "--now", "--as", "alice")
    assert code == 0, shown
    assert ctx.store.get_run(approval.run_id).status == RunStatus.SUCCEEDED
    after = site.pids()
    others = [h for h in before if h != host]
    assert {h: after[h] for h in others} == {h: before[h] for h in others}
    if host == "cache-3":                                # the stand-in restarts nothing
        assert runtime_calls(site.standins) == [["restart", "-t", "10", "redis-c3"]]
        return
    assert after[host] and after[host] != before[host]
    assert runtime_calls(site.standins) == []
    server = site.unit_redis if host == "cache-1" else site.program_redis
    assert wait_until(lambda: _answers(server), WAIT)
    if host == "cache-1":
        told = [c for c in systemctl_calls(site.standins) if c[0] not in ("show", "start")]
        assert told == [["restart", "redis-server"]]


def test_a_host_that_names_no_service_manager_is_refused_in_the_plan(
        site: Site, capsys) -> None:
    hosts = (site.env.root / "inventory" / "hosts.yml").read_text()
    (site.env.root / "inventory" / "hosts.yml").write_text(
        hosts + "\n".join(_host("cache-4", redis_url=f"redis://127.0.0.1:{free_port()}/0")) + "\n")
    code, shown = site.recovery(capsys, "test", "-c", "redis", "-f", "memory_pressure",
                                "-t", "cache-4")
    assert code == 0, shown
    assert ("refused on cache-4: redis_service_manager or service_manager must be docker, "
            "podman, supervisor or systemd (got '')") in shown
