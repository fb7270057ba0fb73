"""The shipped playbooks over real SSH, through ``recovery recover`` and the running
service: four test hosts (tests/support/fleet.py: network namespaces, each with its own
sshd and address), each running its own Redis under its own supervisord. What runs here
runs as it would on a remote machine: Ansible connects over SSH with the fleet's key and
the program, the container and the roots come from the inventory. Rollouts over the
group (engine.orchestration.rollout: batches, the stop at a failure, per-host outcomes,
alerts fused into one run) are tested here on real hosts as tests/integration/
test_rollouts.py tests them on local ones.

Two paths are fast enough for ``make test`` (a restart over SSH gives a new pid and Redis
answers; a storm of alerts through the service is one rolling run); the rest is marked
slow."""

from __future__ import annotations

import contextlib
import io
import json
import os
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main
from tests.support.alerts import alert_payload
from tests.support.fleet import Fleet, Host, wait_redis
from tests.support.fleet_engine import recovery, without_recovery_env
from tests.support.paths import ROOT
from tests.support.service import (
    Served,
    free_port,
    history,
    post_alerts,
    service_env,
    store_rows,
    wait_for,
)
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
    # process_restart.yml one host at a time: the first failure stops the rollout
    "rolling.yml": """\
        name: rolling
        component: service
        strategies:
          - name: process_restart
            playbook: process_restart.yml
            serial: 1
            timeout: 2m
        verify: {action: redis.ping, initial_delay: 0s, interval: 0.2s, deadline: 20s}
        """,
    # the alerts' runbook in the service: each alert names one host, two hosts a batch
    "alerted.yml": """\
        name: alerted
        component: service
        match:
          - alertname="test-alert"
        target: "{{ labels.instance }}"
        strategies:
          - name: process_restart
            playbook: process_restart.yml
            serial: 2
            timeout: 2m
        verify: {action: redis.ping, initial_delay: 0s, interval: 0.2s, deadline: 20s}
        """,
}
# A service for the alerts: one engine worker process of two threads, as in the tests of
# the service elsewhere (tests/conftest.py's ``serve``).
SERVICE = ("webhook: {workers: 1, http_workers: 1, shutdown_grace: 5s, graceful_timeout: 2s}\n"
           "workers: {poll_interval: 0.2s, threads: 2}\n")
GROUPS = {"redis": ["h1", "h2", "h3", "h4"], "docker_hosts": ["h3", "h4"]}
FLEET = "{group_share: 100%, coalesce_window: 1s}"   # the fleet limits of most tests here

@dataclass
class Site:
    """The fleet, what runs on each host, and an engine configuration for it."""

    fleet: Fleet
    supervisors: dict[str, Supervisor]
    config: Path
    home: Path
    host_vars: dict[str, dict]

    def recovery(self, *args: str) -> tuple[int, str]:
        """``recovery --config CONFIG ARGS`` in this process; exit code and output."""
        return recovery(self.config, *args)

    def history(self) -> list[dict]:
        """``recovery history --json``: every run, newest first."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), "history", "--json", "-n", "200"])
        assert code == 0, err.getvalue()
        return json.loads(out.getvalue())

    def incidents(self) -> dict[str, str]:
        """Each host's incident state (one incident per host in these tests)."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert main(["--config", str(self.config), "incidents", "--json"]) == 0
        return {i["target"]: i["state"] for i in json.loads(out.getvalue())}

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

    def variant(self, name: str, config: str = "",
                host_vars: dict[str, dict] | None = None, fleet: str = FLEET) -> Site:
        """The same fleet and runbooks with a home of its own (so a test reads only its own
        records), ``config`` added to recovery.yml, ``fleet`` its fleet limits and
        ``host_vars`` over the inventory's."""
        root = self.config.parent / name
        merged = {h: {**v, **(host_vars or {}).get(h, {})} for h, v in self.host_vars.items()}
        return write_site(root, self.fleet, self.supervisors, merged,
                          runbooks=self.config.parent / "rb", config=config,
                          fleet_limits=fleet)


def write_site(root: Path, fleet: Fleet, supervisors: dict[str, Supervisor],
               host_vars: dict[str, dict], runbooks: Path, config: str = "",
               fleet_limits: str = "") -> Site:
    """An inventory of the fleet with ``host_vars`` and a recovery.yml under ``root``."""
    inventory = fleet.write_inventory(root / "inventory" / "hosts.yml", groups=GROUPS,
                                      host_vars=host_vars)
    path = root / "recovery.yml"
    path.write_text(textwrap.dedent(f"""\
        home: {root / 'var'}
        runbooks: {runbooks}
        playbooks: {ROOT / 'playbooks'}
        inventory: {inventory}
        action_modules: [tests.support.engine_actions]
        lock: {{lease: 1s}}
        # What these tests check is what the playbooks do on each host over SSH, and how
        # a rollout goes over the group, not the blast radius (tests/unit/
        # test_fleet_gate.py): the whole group may be under remediation.
        fleet: {fleet_limits or FLEET}
        """) + config)
    return Site(fleet, supervisors, path, root / "var", host_vars)


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
    (root / "rb").mkdir()
    for name, text in RUNBOOKS.items():
        (root / "rb" / name).write_text(textwrap.dedent(text))
    try:
        with without_recovery_env():
            yield write_site(root, fleet, supervisors, host_vars, runbooks=root / "rb")
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


# -- rollouts over SSH (engine.orchestration.rollout) ------------------------------------------

def _mine(history: list[dict]) -> dict[str, dict]:
    """Each host's own playbook run (an incident's), by host: one each in these tests."""
    runs: dict[str, dict] = {}
    for run in history:
        if run["incident_id"] and run["kind"] == "playbook":
            assert run["target"] not in runs, f"two runs for {run['target']}: {history}"
            runs[run["target"]] = run
    return runs


def _batches(history: list[dict]) -> list[dict]:
    """The rollout's own runs (one Ansible run a batch), first batch first."""
    return sorted((r for r in history if r["incident_id"] is None and r["kind"] == "playbook"),
                  key=lambda r: r["started_at"])


def _outcomes(run: dict) -> list[tuple[str, str]]:
    return sorted((h["host"], h["outcome"]) for h in run["hosts"])


def _all_recovered(site: Site, served: Served, hosts: list[str]) -> list[dict]:
    """Wait (4 minutes at most) until every host's incident has ended; all of them must
    have recovered. The service's runs then."""
    def settled() -> list[tuple[str, str]]:
        rows = store_rows(site.home, "SELECT target, state FROM incidents")
        return sorted((r["target"], r["state"]) for r in rows)
    done = wait_for(lambda: len(settled()) == len(hosts) and all(
        s not in ("open", "remediating") for _, s in settled()), 240, every=0.5)
    assert done, (settled(), served.stderr()[-3000:])
    assert settled() == [(h, "recovered") for h in hosts], served.stderr()[-3000:]
    return history(served)


@contextlib.contextmanager
def _service(site: Site) -> Iterator[Served]:
    """``recovery serve`` on the site's configuration; everything it started is killed
    at the end, even when the test fails."""
    served = Served(service_env(site.config), site.home, free_port())
    try:
        served.start()
        served.wait_ready(60)
        yield served
    finally:
        served.terminate()


def test_20_alerts_for_4_hosts_are_one_rolling_run_over_ssh(site: Site) -> None:
    """Twenty alerts (five per host) posted together to the running service: one incident
    per host, their steps fused into one rollout of ``serial: 2`` (one Ansible run, and
    one run record, per batch of two hosts), each incident its own record with its own
    host's outcome; every host's Redis really restarted (a new pid) and answers."""
    here = site.variant("storm", SERVICE)
    hosts = ["h1", "h2", "h3", "h4"]
    before = site.pids()
    with _service(here) as served:
        assert post_alerts(served, alert_payload(here.home, *(hosts * 5)))["accepted"] == 20
        runs = _all_recovered(here, served, hosts)
    after = site.pids()
    for host in hosts:
        assert after[host] and after[host] != before[host], (host, before, after)
        assert wait_redis(site.fleet[host].address, 6379, 10), host
    batches = _batches(runs)
    assert [(b["target"], b["status"]) for b in batches] == [
        ("h1,h2", "succeeded"), ("h3,h4", "succeeded")], runs
    assert [_outcomes(b) for b in batches] == [[("h1", "changed"), ("h2", "changed")],
                                               [("h3", "changed"), ("h4", "changed")]]
    mine = _mine(runs)
    assert sorted(mine) == hosts, runs
    for host, run in mine.items():
        batch = batches[0] if host in ("h1", "h2") else batches[1]
        assert run["status"] == "succeeded", run
        assert [(h["host"], h["outcome"]) for h in run["hosts"]] == [(host, "changed")]
        assert batch["id"] in run["reason"], run["reason"]


@pytest.mark.slow
def test_an_alert_for_one_host_acts_on_that_host_only(site: Site) -> None:
    """One alert for h2 through the running service: h2's Redis restarts over SSH, the
    other three keep their pids; one run, on h2 alone (no batch of a rollout)."""
    here = site.variant("one-alert", SERVICE)
    before = site.pids()
    with _service(here) as served:
        assert post_alerts(served, alert_payload(here.home, "h2"))["accepted"] == 1

        def state() -> list[tuple[str, str]]:
            rows = store_rows(here.home, "SELECT target, state FROM incidents")
            return [(r["target"], r["state"]) for r in rows]
        assert wait_for(lambda: state() and state()[0][1] not in ("open", "remediating"),
                        120, every=0.5), (state(), served.stderr()[-3000:])
        assert state() == [("h2", "recovered")], served.stderr()[-3000:]
        runs = history(served)
    after = site.pids()
    assert after["h2"] and after["h2"] != before["h2"], (before, after)
    assert {h: after[h] for h in ("h1", "h3", "h4")} == {h: before[h] for h in ("h1", "h3", "h4")}
    assert wait_redis(site.fleet["h2"].address, 6379, 10)
    played = [r for r in runs if r["kind"] == "playbook"]
    assert [(r["target"], r["status"]) for r in played] == [("h2", "succeeded")], runs
    assert [(h["host"], h["outcome"]) for h in played[0]["hosts"]] == [("h2", "changed")]


@pytest.mark.slow
def test_serial_one_stops_at_a_broken_host_and_starts_nothing_after_it(site: Site) -> None:
    """``recover -t redis`` with ``serial: 1`` where h2 is broken (its inventory names a
    program its supervisord does not have): h1 restarts, h2 fails, and h3 and h4 are
    ``not_started`` (their records say h2 failed, and why) and untouched."""
    here = site.variant("serial", host_vars={"h2": {"program": "nosuch"}})
    before = site.pids()
    code, out = here.recovery("recover", "-c", "rolling", "-t", "redis", "--include-healthy")
    assert code == 1, out
    after = site.pids()
    assert after["h1"] and after["h1"] != before["h1"], (before, after)
    assert {h: after[h] for h in ("h2", "h3", "h4")} == {h: before[h] for h in ("h2", "h3", "h4")}
    runs = here.history()
    assert [(b["target"], b["status"]) for b in _batches(runs)] == [
        ("h1", "succeeded"), ("h2", "failed")], runs       # no Ansible run after h2's
    mine = _mine(runs)
    assert mine["h1"]["status"] == "succeeded"
    assert _outcomes(mine["h1"]) == [("h1", "changed")]
    assert mine["h2"]["status"] == "failed"
    assert _outcomes(mine["h2"]) == [("h2", "failed")]
    assert "no such process" in mine["h2"]["reason"], mine["h2"]["reason"]
    for host in ("h3", "h4"):
        run = mine[host]
        assert run["status"] == "failed", run
        assert _outcomes(run) == [(host, "not_started")]
        assert "rollout stopped after batch 2 of 4" in run["reason"], run["reason"]
        assert "h2" in run["reason"] and "no such process" in run["reason"], run["reason"]
    assert here.incidents() == {"h1": "recovered", "h2": "failed", "h3": "failed",
                                "h4": "failed"}


@pytest.mark.slow
def test_a_host_whose_sshd_is_stopped_is_unreachable_inside_a_group_rollout(site: Site) -> None:
    """One batch over the group while h3's sshd is stopped: h3's incident fails with
    outcome ``unreachable`` (never ok), the three others recover (new pids), and the
    batch's run is ``partial``."""
    here = site.variant("unreachable")
    h3 = site.fleet["h3"]
    before = site.pids()
    h3.stop_sshd()
    try:
        code, out = here.recovery("recover", "-c", "service", "-t", "redis",
                                  "--include-healthy")
    finally:
        h3.start_sshd()
    assert code == 1, out
    after = site.pids()
    assert after["h3"] == before["h3"], (before, after)
    for host in ("h1", "h2", "h4"):
        assert after[host] and after[host] != before[host], (host, before, after)
    runs = here.history()
    (batch,) = _batches(runs)
    assert (batch["target"], batch["status"]) == ("h1,h2,h3,h4", "partial"), batch
    assert _outcomes(batch) == [("h1", "changed"), ("h2", "changed"), ("h3", "unreachable"),
                                ("h4", "changed")]
    mine = _mine(runs)
    assert mine["h3"]["status"] == "failed", mine["h3"]
    assert _outcomes(mine["h3"]) == [("h3", "unreachable")]
    assert "unreachable" in mine["h3"]["reason"], mine["h3"]["reason"]
    for host in ("h1", "h2", "h4"):
        assert mine[host]["status"] == "succeeded", mine[host]
        assert _outcomes(mine[host]) == [(host, "changed")]
    assert here.incidents() == {"h1": "recovered", "h2": "recovered", "h3": "failed",
                                "h4": "recovered"}


@pytest.mark.slow
def test_the_blast_radius_defers_a_second_group_run_until_the_first_ends(site: Site) -> None:
    """``max_in_flight: 2`` and four alerts at once through the service: two hosts' steps
    take the two slots and run as one rollout; the other two are deferred by the fleet
    gate (on the record), and run once the first rollout has ended.
    Nothing is lost: all four recover, each restarted once."""
    here = site.variant("blast", SERVICE, fleet="{group_share: 100%, coalesce_window: 1s, "
                                                "max_in_flight: 2}")
    hosts = ["h1", "h2", "h3", "h4"]
    before = site.pids()
    with _service(here) as served:
        assert post_alerts(served, alert_payload(here.home, *hosts))["accepted"] == 4
        runs = _all_recovered(here, served, hosts)
    after = site.pids()
    for host in hosts:
        assert after[host] and after[host] != before[host], (host, before, after)
    deferred = [r for r in runs if r["status"] == "deferred"]
    assert deferred and {r["gate"] for r in deferred} == {"fleet"}, runs
    held = sorted({r["target"] for r in deferred})
    assert len(held) == 2, runs
    assert all("in flight" in r["reason"] for r in deferred), deferred
    mine = _mine([r for r in runs if r["status"] != "deferred"])   # one run each, once
    assert sorted(mine) == hosts, runs
    first = [mine[h] for h in hosts if h not in held]
    assert [(b["target"], b["status"]) for b in _batches(runs)][:1] == [
        (",".join(sorted(r["target"] for r in first)), "succeeded")], runs
    ended = max(r["finished_at"] for r in first)
    assert all(mine[h]["started_at"] >= ended for h in held), (first, held, runs)
