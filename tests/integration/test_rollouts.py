"""Rollouts (engine.orchestration.rollout): the playbook steps of several incidents run as
one Ansible run per batch, cut by the step's ``serial``, verified per batch, stopped at
``max_fail_percentage`` with the hosts after it ``not_started``. Real ansible-runner and
a real playbook, on a farm of four local-connection hosts (the same on SSH hosts:
tests/integration/test_fleet_ssh.py)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from engine.orchestration.rollout import cut_batches, over_threshold
from tests.support.cli_env import Env
from tests.support.paths import TEST_PLAYBOOKS

FARM = ["farm-1", "farm-2", "farm-3", "farm-4"]


def _farm(cli_env: Env, *, broken: str | None = None, serial: str = "",
          max_fail: str = "", pause: float = 0) -> Path:
    """Four local-connection hosts in group `farm`, a runbook whose one step marks each
    host in work/marks, verified by that mark; ``broken`` fails its play, ``pause``
    (seconds) makes it last that long at least."""
    marks = cli_env.work("marks")
    marks.mkdir()
    hosts = "\n".join(
        f"        {h}: {{ansible_connection: local, ansible_python_interpreter: "
        f"\"{{{{ ansible_playbook_python }}}}\"{', broken: true' if h == broken else ''}}}"
        for h in FARM)
    (cli_env.root / "inventory" / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost: {ansible_connection: local}\n  children:\n"
        f"    farm:\n      hosts:\n{hosts}\n")
    shutil.copy(TEST_PLAYBOOKS / "mark_host.yml", cli_env.root / "playbooks")
    cli_env.write_runbook("mark.yml", f"""\
        name: mark
        strategies:
          - name: mark
            playbook: mark_host.yml
            extravars: {{mark_dir: "{marks}"{f", mark_pause: {pause}" if pause else ""}}}
            {serial}
            {max_fail}
        verify: {{action: test.file_exists, with: {{dir: "{marks}"}}, interval: 0.1s,
                 deadline: 1s}}
        """)
    cli_env.write_config("fleet: {group_share: 100%, coalesce_window: 0.5s}\n")
    return marks


def _runs(cli_env: Env) -> list[dict]:
    return cli_env.cli("history", "--json", "-n", "50").json()


def test_batches_follow_ansible_serial() -> None:
    hosts = [f"h{i}" for i in range(10)]
    assert cut_batches(hosts, None) == [hosts]
    assert [len(b) for b in cut_batches(hosts, 3)] == [3, 3, 3, 1]
    assert [len(b) for b in cut_batches(hosts, "25%")] == [2, 2, 2, 2, 2]
    assert [len(b) for b in cut_batches(hosts, [1, "25%", "100%"])] == [1, 2, 7]
    assert [len(b) for b in cut_batches(hosts[:3], "10%")] == [1, 1, 1]  # at least one
    assert sum(cut_batches(hosts, [1, 2]), []) == hosts
    assert not over_threshold(0, 4, 0) and over_threshold(1, 4, 0)
    assert not over_threshold(1, 4, 25) and over_threshold(2, 4, 25)


def test_a_group_is_one_ansible_run_and_each_incident_its_own_record(cli_env: Env) -> None:
    marks = _farm(cli_env)
    r = cli_env.cli("--as", "oncall", "recover", "-c", "mark", "-t", "farm",
                    "--include-healthy")
    assert r.code == 0, (r.out, r.err)
    assert sorted(p.name for p in marks.iterdir()) == FARM
    ansible_runs = {p.read_text().strip() for p in marks.iterdir()}
    assert len(ansible_runs) == 1          # one Ansible start-up for the four hosts
    runs = _runs(cli_env)
    batch = [x for x in runs if x["incident_id"] is None]
    assert [(b["id"], b["target"], b["status"]) for b in batch] == [
        (ansible_runs.pop(), ",".join(FARM), "succeeded")]
    assert sorted((h["host"], h["outcome"]) for h in batch[0]["hosts"]) == [
        (h, "changed") for h in FARM]
    mine = sorted((x for x in runs if x["incident_id"]), key=lambda x: x["target"])
    assert [(x["target"], x["status"]) for x in mine] == [(h, "succeeded") for h in FARM]
    for x in mine:                          # each its own host, never the others'
        assert [(h["host"], h["outcome"]) for h in x["hosts"]] == [(x["target"], "changed")]
        assert batch[0]["id"] in x["reason"]
    incidents = cli_env.cli("incidents", "--json").json()
    assert sorted((i["target"], i["state"]) for i in incidents) == [
        (h, "recovered") for h in FARM]


def test_serial_one_stops_at_the_failure_and_the_rest_are_not_started(cli_env: Env) -> None:
    marks = _farm(cli_env, broken="farm-2", serial="serial: 1")
    r = cli_env.cli("recover", "-c", "mark", "-t", "farm", "--include-healthy")
    assert r.code == 1, (r.out, r.err)
    assert sorted(p.name for p in marks.iterdir()) == ["farm-1"]   # nothing after farm-2
    runs = {x["target"]: x for x in _runs(cli_env) if x["incident_id"]}
    assert runs["farm-1"]["status"] == "succeeded"
    assert runs["farm-2"]["status"] == "failed"
    assert "farm-2 is broken (on purpose)" in runs["farm-2"]["reason"]
    for host in ("farm-3", "farm-4"):
        run = runs[host]
        assert run["status"] == "failed"
        assert [h["outcome"] for h in run["hosts"]] == ["not_started"]
        assert "rollout stopped after batch 2 of 4" in run["reason"]
        assert "farm-2" in run["reason"] and "broken (on purpose)" in run["reason"]
    batches = [x for x in _runs(cli_env) if x["incident_id"] is None]
    assert sorted(b["target"] for b in batches) == ["farm-1", "farm-2"]   # two Ansible runs
    incidents = {i["target"]: i["state"] for i in cli_env.cli("incidents", "--json").json()}
    assert incidents == {"farm-1": "recovered", "farm-2": "failed", "farm-3": "failed",
                         "farm-4": "failed"}


def test_a_tolerated_failure_does_not_stop_the_rollout(cli_env: Env) -> None:
    marks = _farm(cli_env, broken="farm-1", serial='serial: [2, "100%"]',
                  max_fail="max_fail_percentage: 50")
    r = cli_env.cli("recover", "-c", "mark", "-t", "farm", "--include-healthy")
    assert r.code == 1
    assert sorted(p.name for p in marks.iterdir()) == ["farm-2", "farm-3", "farm-4"]
    runs = {x["target"]: x["status"] for x in _runs(cli_env) if x["incident_id"]}
    assert runs == {"farm-1": "failed", "farm-2": "succeeded", "farm-3": "succeeded",
                    "farm-4": "succeeded"}
    batch = next(x for x in _runs(cli_env) if x["target"] == "farm-1,farm-2")
    assert batch["status"] == "partial"


def test_a_batch_run_beats_so_another_process_does_not_take_it_for_dead(
        cli_env: Env) -> None:
    """While a group's batch plays, another process's worker sweeps for dead runs (as a
    running service does, with the service's own bound: no beat for three leases): the
    batch's run beats like any step, so it ends as it ran, not ``interrupted``. The play
    lasts longer than that bound, so without beats the sweep would take it for dead."""
    from engine.config import load_config
    from engine.context import EngineContext
    from engine.service.worker import Worker

    _farm(cli_env, pause=4)
    other = EngineContext(load_config(cli_env.config))
    stale_after = 3 * other.config.lock_ttl       # what mark_interrupted counts as dead
    done = threading.Event()

    def sweep() -> None:      # from the batch's start until the command returns
        while not done.is_set():
            if other.store.query_runs(status="running", limit=50):
                Worker(other).mark_interrupted(time.time())
            done.wait(0.1)

    sweeper = threading.Thread(target=sweep, daemon=True)
    sweeper.start()
    try:
        r = cli_env.cli("recover", "-c", "mark", "-t", "farm", "--include-healthy")
    finally:
        done.set()
        sweeper.join(10)
        other.store.close()
    assert r.code == 0, (r.out, r.err)
    batch = [x for x in _runs(cli_env) if x["incident_id"] is None]
    assert [(b["target"], b["status"]) for b in batch] == [(",".join(FARM), "succeeded")]
    assert batch[0]["duration"] > stale_after   # long enough to have been taken for dead


@pytest.mark.parametrize("alone", ["farm-3"])
def test_one_host_runs_alone_with_no_batch_record(cli_env: Env, alone: str) -> None:
    marks = _farm(cli_env)
    assert cli_env.cli("recover", "-c", "mark", "-t", alone).code == 0
    assert [p.name for p in marks.iterdir()] == [alone]
    runs = _runs(cli_env)
    assert [(x["target"], x["status"]) for x in runs] == [(alone, "succeeded")]
    assert runs[0]["hosts"] == [{"host": alone, "outcome": "changed", "reason": ""}]


def test_a_step_that_names_a_group_fans_out_into_one_rollout(cli_env: Env) -> None:
    marks = _farm(cli_env)
    (marks / "farm-4").write_text("healthy already\n")     # its verify passes: left alone
    cli_env.write_runbook("spread.yml", f"""\
        name: spread
        strategies:
          - name: mark
            target: farm
            playbook: mark_host.yml
            extravars: {{mark_dir: "{marks}"}}
        verify: {{action: test.file_exists, with: {{dir: "{marks}"}}, interval: 0.1s,
                 deadline: 1s}}
        """)
    r = cli_env.cli("--as", "oncall", "recover", "-c", "spread", "-t", "farm-1")
    assert r.code == 0, (r.out, r.err)
    assert (marks / "farm-4").read_text() == "healthy already\n"    # not touched
    ran = {(marks / h).read_text().strip() for h in ("farm-1", "farm-2", "farm-3")}
    assert len(ran) == 1                                            # one Ansible run
    incidents = {i["target"]: i for i in cli_env.cli("incidents", "--json").json()}
    assert sorted(incidents) == ["farm-1", "farm-2", "farm-3"]
    assert {i["state"] for i in incidents.values()} == {"recovered"}
    first = incidents["farm-1"]["id"]
    for host in ("farm-2", "farm-3"):
        assert incidents[host]["requested_by"].startswith(f"fan-out of incident {first}")
    skipped = [x for x in _runs(cli_env) if x["target"] == "farm-4"]
    assert [(x["status"], x["hosts"][0]["reason"]) for x in skipped] == [("skipped",
                                                                          "healthy")]


def test_a_storm_of_20_alerts_for_4_hosts_is_one_rollout_in_the_service(
        serve, engine_env, tmp_path: Path) -> None:
    """Through the running service: one notification of 20 alerts (five per host) opens
    four incidents whose steps meet in one Ansible run, though the worker has two
    threads (a thread waiting on a rollout is not busy)."""
    from tests.support.alerts import alert_payload
    from tests.support.service import GRACE, post_alerts, store_rows, wait_for

    marks = tmp_path / "marks"
    marks.mkdir()
    hosts = "".join(f"    {h}: {{ansible_connection: local, ansible_python_interpreter: "
                    f"\"{{{{ ansible_playbook_python }}}}\"}}\n" for h in FARM)
    (engine_env.root / "inventory" / "hosts.yml").write_text(
        f"all:\n  children:\n    farm:\n      hosts:\n{hosts.replace('    ', '        ')}")
    shutil.copy(TEST_PLAYBOOKS / "mark_host.yml", engine_env.root / "playbooks")
    engine_env.runbook("mark", f"""
        match:
          - alertname="test-alert"
        target: "{{{{ labels.instance }}}}"
        strategies:
          - name: mark
            playbook: mark_host.yml
            extravars: {{mark_dir: "{marks}"}}
        verify: {{action: test.file_exists, with: {{dir: "{marks}"}}, interval: 0.1s,
                 deadline: 2s}}
        """)
    served = serve()
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                            "graceful_timeout: 2s}", fleet="{group_share: 100%, "
                            "coalesce_window: 1s}")
    served.start()
    served.wait_ready()
    payload = alert_payload(marks, *(FARM * 5))
    assert post_alerts(served, payload)["accepted"] == 20

    def incidents():
        return store_rows(served.home, "SELECT target, state FROM incidents")
    assert wait_for(lambda: sorted((r["target"], r["state"]) for r in incidents()) == [
        (h, "recovered") for h in FARM], 90), (incidents(), served.stderr()[-3000:])
    assert len({(marks / h).read_text() for h in FARM}) == 1      # one Ansible run
    runs = store_rows(served.home, "SELECT target, status, incident_id FROM runs")
    assert sorted(r["target"] for r in runs if r["incident_id"] is None) == [",".join(FARM)]
    assert sorted(r["target"] for r in runs if r["incident_id"]) == FARM


def test_the_plan_of_a_group_shows_its_batches(cli_env: Env) -> None:
    _farm(cli_env, serial='serial: [1, "50%"]', max_fail="max_fail_percentage: 25")
    plan = cli_env.cli("test", "-c", "mark", "-t", "farm", "--json").json()
    assert plan["batches"] == [["farm-1"], ["farm-2", "farm-3"], ["farm-4"]]
    assert plan["max_fail_percentage"] == 25
    text = cli_env.cli("test", "-c", "mark", "-t", "farm").out
    assert "batches:      3" in text and "  2. farm-2, farm-3" in text


@pytest.mark.slow
def test_a_member_late_in_a_long_rollout_waits_for_its_batch_and_is_acted_on_once(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """serial: 1 over four hosts whose verify takes a while: the last host's batch starts
    long after its step joined. Its step must wait for it (the rollout's batches, each
    with its play and its verify, bound the wait), not give up early, end its incident
    and free its host's lock while the rollout later runs the playbook on that host
    anyway."""
    from engine.orchestration import rollout

    monkeypatch.setattr(rollout, "PLAY_MARGIN", 0.5)
    marks = _farm(cli_env, serial="serial: 1\n            timeout: 15s")
    text = (cli_env.rb / "mark.yml").read_text()
    (cli_env.rb / "mark.yml").write_text(
        text.replace("deadline: 1s}", "deadline: 1s, initial_delay: 28s}"))
    r = cli_env.cli("recover", "-c", "mark", "-t", "farm", "--include-healthy")
    done = time.monotonic() + 180            # the rollout's own thread may still be at it
    while time.monotonic() < done and len(list(marks.iterdir())) < 4 and any(
            t.name.startswith("recovery-rollout-") for t in threading.enumerate()):
        time.sleep(0.2)
    runs = {x["target"]: x for x in _runs(cli_env) if x["incident_id"]}
    marked = sorted(p.name for p in marks.iterdir())
    for host in marked:                     # a host acted on is its incident's account
        assert runs[host]["status"] == "succeeded", (host, runs[host]["reason"])
    assert r.code == 0, (r.out, r.err)
    assert marked == FARM
