"""The `recovery` command line as a process of its own (``python -m engine``), where the
process boundary matters: exit codes of the real entry point, approvals run now by the
command, SIGINT, a lock held by another process, output in a pipe and on a terminal,
`validate` on the shipped configuration and on broken ones. The configuration is the
test's own (tests/support/cli_env.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli_env import CONFIG, Env, wait_for_file
from tests.support.paths import ROOT, TEST_PLAYBOOKS


def test_bad_config_exits_2_with_one_line_and_no_traceback(cli_env: Env) -> None:
    cli_env.config.write_text("home: var\nno_such_key: 1\n")
    r = cli_env.run("status")
    assert r.code == 2
    assert "no_such_key" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert r.out == ""

    missing = cli_env.cli("--config", str(cli_env.root / "nope.yml"), "status")
    assert missing.code == 2 and "not found" in missing.err

    cli_env.config.write_text(CONFIG.format(extra="").replace("tests.support.engine_actions",
                                                              "no_such_module_here"))
    r = cli_env.cli("status")
    assert r.code == 2 and "no_such_module_here" in r.err


# -- approvals ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_approval_parks_with_3_then_approve_now_runs_it(cli_env: Env) -> None:
    r = cli_env.run("recover", "-c", "guarded")
    assert r.code == 3, r.err
    pending = cli_env.cli("pending", "--json").json()
    assert len(pending) == 1
    run_id = pending[0]["run_id"]
    assert f"recovery --config {cli_env.config} approve {run_id}" in r.out
    assert pending[0]["plan"]["action"] == "test.touch"
    assert pending[0]["expires_in"] > 3000
    assert not cli_env.work("touched").exists()
    assert run_id in cli_env.cli("pending").out

    r = cli_env.run("approve", run_id, "--now", "--as", "alice", "--reason", "go")
    assert r.code == 0, r.err
    assert cli_env.work("touched").exists()
    run = next(x for x in cli_env.cli("history", "--json").json() if x["id"] == run_id)
    assert run["status"] == "succeeded"
    assert run["approved_by"] == "alice"
    assert cli_env.cli("pending", "--json").json() == []
    assert cli_env.cli("incidents", "--json").json()[0]["state"] == "recovered"
    # deciding twice is refused
    again = cli_env.cli("approve", run_id)
    assert again.code == 4 and "not waiting" in again.err


def test_approve_now_runs_a_step_approved_earlier(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "guarded").code == 3
    (pending,) = cli_env.cli("pending", "--json").json()
    run_id = pending["run_id"]
    r = cli_env.cli("approve", run_id, "--as", "bob")
    assert r.code == 0 and f"approve {run_id} --now" in r.out
    assert not cli_env.work("touched").exists()
    again = cli_env.cli("approve", run_id)  # no --now: already decided, says how to run it
    assert again.code == 4 and "not waiting" in again.err and "--now" in again.err

    r = cli_env.run("approve", run_id, "--now", "--as", "carol")
    assert r.code == 0, (r.out, r.err)
    assert "approved by bob" in r.out and "running it here" in r.out
    assert cli_env.work("touched").exists()
    run = cli_env.store().get_run(run_id)
    assert (run.status.value, run.approved_by) == ("succeeded", "bob")
    assert cli_env.cli("incidents", "--json").json()[0]["state"] == "recovered"
    ran = cli_env.cli("approve", run_id, "--now")  # nothing queued any more
    assert ran.code == 4 and "not queued" in ran.err


def test_housekeeping_prunes_hourly_and_never_breaks_a_command(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.orchestration.approvals
    import engine.service.retention

    assert cli_env.cli("validate").code == 0
    assert cli_env.store().get_value("retention_pruned_at") is None  # validate only reads
    assert cli_env.cli("incidents").code == 0
    first = cli_env.store().get_value("retention_pruned_at")
    assert first is not None
    assert cli_env.cli("incidents").code == 0
    assert cli_env.store().get_value("retention_pruned_at") == first  # at most hourly

    def boom(ctx, now=None):
        raise RuntimeError("database is\nlocked")

    monkeypatch.setattr(engine.orchestration.approvals, "expire_due", boom)
    monkeypatch.setattr(engine.service.retention, "prune_if_due", boom)
    r = cli_env.cli("incidents", "--json")
    assert r.code == 0 and r.json() == []
    warnings = r.err.strip().splitlines()
    assert len(warnings) == 2 and all("warning" in w for w in warnings)
    assert "expiring approvals failed: database is locked" in warnings[0]
    assert "pruning old artifacts failed" in warnings[1]


# -- cancel, signals, locks ---------------------------------------------------------------------

def test_disable_cancel_running_stops_runs_and_rejects_approvals_in_its_scope(
        cli_env: Env) -> None:
    """The emergency stop: in one step auto-recovery goes off for localhost, the run in
    flight there is stopped, the approval waiting there is rejected, each recorded with
    who; what waits on another target is left alone."""
    proc = cli_env.popen("recover", "-c", "sleepy")
    try:
        wait_for_file(cli_env.work("nap-started"))
        assert cli_env.cli("recover", "-c", "guarded").code == 3                 # localhost
        assert cli_env.cli("recover", "-c", "guarded", "-t", "web-1").code == 3  # elsewhere
        parked = {p["target"]: p["run_id"] for p in cli_env.cli("pending", "--json").json()}
        [running] = [r for r in cli_env.cli("history", "--json").json()
                     if r["status"] == "running"]
        r = cli_env.cli("disable", "-t", "localhost", "--cancel-running", "--reason", "fire",
                        "--as", "carol")
        assert r.code == 0, r.err
        assert "auto-recovery disabled for target=localhost" in r.out
        assert f"asked run {running['id']} to stop" in r.out, r.out
        assert f"rejected {parked['localhost']}" in r.out, r.out
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "never" not in out                          # the next strategy did not start
    store = cli_env.store()
    stopped = store.get_run(running["id"])
    assert stopped.status.value == "canceled", stopped
    # who stopped it and why, on the run's record too (not only "canceled")
    assert stopped.reason.startswith("canceled by carol: emergency stop: fire ("), stopped
    incident = store.get_incident(stopped.incident_id)
    assert (incident.state.value, incident.reason) == \
        ("canceled", "canceled by carol: emergency stop: fire")
    rejected = store.get_approval(parked["localhost"])
    assert (rejected.status, rejected.decided_by) == ("rejected", "carol")
    assert store.get_run(parked["localhost"]).status.value == "rejected"
    assert store.get_approval(parked["web-1"]).status == "pending"
    [event] = [e for e in store.list_events() if e.action == "disable"]
    assert event.actor == "carol"
    assert event.detail["canceled_runs"] == [running["id"]]
    assert event.detail["rejected_approvals"] == [parked["localhost"]]
    # without --cancel-running nothing in flight is touched
    assert cli_env.cli("disable", "-t", "web-1").code == 0
    assert store.get_approval(parked["web-1"]).status == "pending"


def test_sigint_cancels_the_running_step_and_exits_1(cli_env: Env) -> None:
    proc = cli_env.popen("recover", "-c", "sleepy")
    try:
        wait_for_file(cli_env.work("nap-started"))
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert time.monotonic() - started < 10
    assert "never" not in out  # the next strategy did not start
    (incident,) = cli_env.cli("incidents", "--json").json()
    assert incident["state"] == "canceled"
    (run,) = cli_env.cli("history", "--json").json()
    assert run["strategy"] == "nap" and run["status"] in ("failed", "canceled")


def test_unlock_breaks_a_lock_held_by_another_process_and_records_it(cli_env: Env) -> None:
    proc = cli_env.popen("recover", "-c", "holder", "-t", "web-1")
    try:
        wait_for_file(cli_env.work("hold-started"))
        held = cli_env.cli("status", "--json").json()["locks"]
        # the running step holds its target and one fleet slot (engine/gates/fleet.py)
        assert sorted(lk["target"] for lk in held) == ["fleet-slot:0", "web-1"]
        assert len({lk["run_id"] for lk in held}) == 1
        locks = [lk for lk in held if lk["target"] == "web-1"]
        holder = locks[0]["holder"]
        assert cli_env.cli("unlock", "web-1", "-c", "svc").code == 4  # other component: left

        r = cli_env.cli("unlock", "web-1", "--as", "dave")
        assert r.code == 0, r.err
        assert holder in r.out and locks[0]["run_id"] in r.out
        assert [lk["target"] for lk in cli_env.cli("status", "--json").json()["locks"]] == [
            "fleet-slot:0"]     # the step still runs: its slot is its own until it ends
        (event,) = cli_env.store().list_events()
        assert (event.action, event.actor, event.detail["lock"]["holder"]) == (
            "unlock", "dave", holder)

        # `show --follow` prints the run's events until it ends
        threading.Timer(0.5, cli_env.work("release").touch).start()
        shown = cli_env.cli("show", locks[0]["run_id"], "--follow")
        assert shown.code == 0
        assert "action_start" in shown.out and "ended: succeeded" in shown.out
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err)
    run = cli_env.store().get_run(locks[0]["run_id"])
    assert "its lock on web-1 was broken" in run.reason
    assert cli_env.cli("unlock", "web-1").out.strip() == "no lock on web-1"


# -- reading -------------------------------------------------------------------------------------

def test_every_listing_command_prints_json_only(cli_env: Env) -> None:
    assert cli_env.cli("recover", "-c", "svc").code == 0
    assert cli_env.cli("recover", "-c", "guarded").code == 3
    for args in (["incidents"], ["incidents", "--open"], ["history"], ["pending"],
                 ["degraded"], ["status"], ["runbooks"], ["test", "-c", "svc"]):
        r = cli_env.cli(*args, "--json")
        assert r.code == 0, (args, r.err)
        json.loads(r.out)  # nothing but the document on stdout
    # the real entry point, too
    r = cli_env.run("history", "--json", "--component", "svc", "--last", "1h", "--limit", "1")
    assert r.code == 0 and len(json.loads(r.out)) == 1
    r = cli_env.run("incidents", "--open", "--json")
    assert [i["runbook"] for i in json.loads(r.out)] == ["guarded"]


@pytest.mark.slow
def test_history_says_why_a_playbook_step_failed(cli_env: Env) -> None:
    """Not only "non-zero return code": the failed task's own words."""
    playbook = TEST_PLAYBOOKS / "fail_command.yml"
    (cli_env.root / "playbooks" / playbook.name).write_text(playbook.read_text())
    cli_env.write_runbook("container.yml", """\
        name: container
        strategies: [{name: restart_container, playbook: fail_command.yml}]
        """)
    r = cli_env.run("recover", "-c", "container", "-t", "localhost")
    assert r.code == 1, r.out + r.err
    shown = cli_env.run("history", "--component", "container")
    [line] = [x for x in shown.out.splitlines() if "restart_container" in x]
    assert "Cannot connect to the Docker daemon" in line, shown.out
    [run] = cli_env.run("history", "--json").json()
    assert run["reason"].startswith("task 'Restart the container' failed on localhost: "
                                    "Cannot connect to the Docker daemon at ")
    assert run["reason"].endswith("(non-zero return code, rc 1)")


REDIS_FATAL = ("task 'Start redis' failed on localhost: rc 1: 12294:C 06 Dec 2026 "
               "19:07:31.123 # Fatal error, can't open config file '/etc/redis/redis.conf': "
               "No such file or directory (non-zero return code, rc 1)")


def test_history_gives_the_reason_the_rest_of_the_terminal_and_all_of_it_in_a_pipe(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program's own error comes after its log prefix (redis: pid, role, time):
    a reason cut at a fixed width loses it."""
    from engine.lifecycle import RunStatus
    from engine.records import RunRecord, new_id

    now = time.time()
    cli_env.store().add_run(RunRecord(
        id=new_id("run"), component="redis", runbook="redis", strategy="restart",
        target="localhost", status=RunStatus.FAILED, trigger="manual", started_at=now - 1,
        finished_at=now, requested_by="cli:root", reason=REDIS_FATAL))
    # For people, the program's log prefix goes: its own words come sooner.
    readable = REDIS_FATAL.replace("12294:C 06 Dec 2026 19:07:31.123 # ", "")
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = cli_env.run("history")                               # not a terminal: all of it
    assert readable in piped.out, piped.out
    monkeypatch.setenv("COLUMNS", "400")                     # a wide terminal: all of it
    assert readable in cli_env.cli("history").out
    monkeypatch.setenv("COLUMNS", "200")                     # a narrower one: up to its edge
    lines = cli_env.cli("history").out.splitlines()
    assert max(len(line) for line in lines) == 200, lines
    assert "rc 1: Fatal error, can't open" in lines[1] and lines[1].endswith("...")
    assert cli_env.cli("history", "--json").json()[0]["reason"] == REDIS_FATAL   # the record


# -- validate and runbooks -------------------------------------------------------------------------

@pytest.mark.slow
def test_validate_passes_on_the_shipped_configuration(tmp_path: Path) -> None:
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
    cli_env["RECOVERY_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([sys.executable, "-m", "engine", "--config",
                           str(ROOT / "recovery.yml"), "validate"], env=cli_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runbooks = len(list((ROOT / "runbooks").glob("*.yml")))
    playbooks = len(list((ROOT / "playbooks").glob("*.yml")))
    assert f"{runbooks} runbooks, {playbooks} playbooks, inventory: ok" in proc.stdout


@pytest.mark.slow
def test_validate_fails_with_file_and_line(cli_env: Env) -> None:
    assert cli_env.cli("validate").code == 0
    bad = cli_env.write_runbook("bad.yml", """\
        name: bad
        strategies:
          - name: one
            action: test.ok
          - name: two
            action: no.such_action
        """)
    (cli_env.root / "playbooks" / "broken.yml").write_text(
        "- hosts: all\n  tasks:\n    - nope: [\n")
    r = cli_env.cli("validate")
    assert r.code == 2  # an invalid runbook or playbook is a configuration error
    assert f"{bad}:6: unknown action 'no.such_action'" in r.out
    assert "broken.yml:1: syntax check failed" in r.out
    assert "INVALID" in r.out.splitlines()[-1]
    doc = cli_env.cli("validate", "--json").json()
    assert doc["ok"] is False and doc["runbooks"]["errors"] and "broken.yml" in doc[
        "playbooks"]["errors"]


@pytest.mark.slow
def test_overlapping_runbooks_are_named_by_validate_and_test(cli_env: Env) -> None:
    # Two runbooks of equal priority for the same alerts: the file name decides.
    for name in ("a-restart", "b-failover"):
        cli_env.write_runbook(f"{name}.yml", f"""\
            name: {name}
            priority: high
            match: [alertname=~"Svc(Down|Slow)"]
            match_component_label: false
            strategies: [{{name: fix, action: test.ok}}]
            """)
    r = cli_env.run("validate")
    assert r.code == 0, r.out + r.err        # a warning, not an error
    [warning] = [line for line in r.err.splitlines() if "overlap" in line]
    assert "a-restart (a-restart.yml)" in warning and "b-failover (b-failover.yml)" in warning
    assert "the file name decides" in warning and 'alertname="SvcDown"' in warning
    doc = cli_env.run("validate", "--json").json()
    [overlap] = doc["overlaps"]
    assert overlap["winner"] == "a-restart" and overlap["example"] == {"alertname": "SvcDown"}
    assert any("overlap" in w for w in doc["warnings"])

    alert = cli_env.root / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "SvcSlow", "instance": "web-1"}}))
    plan = cli_env.cli("test", "--alert", str(alert), "--json").json()[0]
    assert plan["runbook"] == "a-restart"
    assert [(m["runbook"], m["chosen"]) for m in plan["matched"]] == [
        ("a-restart", True), ("b-failover", False)]
    assert "the file name decides" in plan["matched"][1]["why"]
    shown = cli_env.cli("test", "--alert", str(alert)).out
    assert "matched:      2 runbooks" in shown and "b-failover" in shown
    assert "a-restart.yml sorts before b-failover.yml" in shown


@pytest.mark.slow
def test_validate_says_nothing_of_runbooks_that_cannot_take_the_same_alert(cli_env: Env) -> None:
    # Different values of one label prove the groups disjoint; a more specific runbook
    # of higher priority is an override, on purpose.
    for name, match, priority in (("one", 'instance="web-1"', "high"),
                                  ("two", 'instance="web-2"', "high"),
                                  ("generic", 'alertname=~"Svc.*"', "warning"),
                                  ("special", 'alertname="SvcDown"', "critical")):
        cli_env.write_runbook(f"{name}.yml", f"""\
            name: {name}
            priority: {priority}
            match: [{match}]
            match_component_label: false
            strategies: [{{name: fix, action: test.ok}}]
            """)
    r = cli_env.run("validate")
    assert r.code == 0 and "overlap" not in r.err, r.err
    assert cli_env.run("validate", "--json").json()["overlaps"] == []
