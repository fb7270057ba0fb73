"""The `recovery` command line, against a real configuration, store and inventory.

Each test gets its own recovery.yml (home, runbooks, inventory in tmp_path) whose runbooks
use the deterministic actions of tests/engine_actions.py. Commands run in-process through
``engine.cli.main`` (fast) and, where the process boundary matters (exit codes of the real
entry point, signals, a lock held by another process), as ``python -m engine``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parent.parent

INVENTORY = """\
all:
  hosts:
    localhost:
      ansible_connection: local
  children:
    web:
      hosts:
        web-1: {ansible_host: 192.0.2.1, instance_aliases: ["web-1:9100"]}
        web-2: {ansible_host: 192.0.2.2}
"""

RUNBOOKS = {
    # fails, then succeeds: recovered by its second strategy
    "svc.yml": """\
        name: svc
        strategies:
          - name: first
            action: test.fail
          - name: second
            action: test.ok
        cooldown: {max_attempts: 2, window: 1h, after_failure: 0s}
        """,
    # every strategy fails: exhausted, degraded mode on, failure cooldown
    "broken.yml": """\
        name: broken
        strategies:
          - name: one
            action: test.fail
          - name: two
            action: test.fail
        degraded_mode: {name: broken_down}
        """,
    # a destructive step: parks for approval, then touches a file that verify checks
    "guarded.yml": """\
        name: guarded
        strategies:
          - name: touch
            action: test.touch
            with: {path: "{home}/touched"}
            approval: required
        verify: {action: test.file_exists, with: {path: "{home}/touched"}, interval: 0.1s,
                 deadline: 5s}
        """,
    # its only step degrades on purpose: the incident ends `degraded`, not recovered
    "shed.yml": """\
        name: shed
        strategies:
          - name: graceful_degradation
            action: test.ok
            degrades: true
        degraded_mode: {name: broken_down}
        """,
    # runs until canceled (30 s at most); says when it started
    "sleepy.yml": """\
        name: sleepy
        strategies:
          - name: nap
            action: test.sleep
            with: {seconds: 30, started: "{home}/nap-started"}
          - name: never
            action: test.ok
        """,
    # holds the target's lock until a file appears
    "holder.yml": """\
        name: holder
        strategies:
          - name: hold
            action: test.wait_for_file
            with: {release: "{home}/release", started: "{home}/hold-started", seconds: 30}
        """,
}

CONFIG = """\
home: var
runbooks: rb
playbooks: playbooks
inventory: inventory/hosts.yml
action_modules: [tests.engine_actions]
lock: {{lease: 1s}}
degraded_modes:
  broken_down:
    description: the broken service is down
    capabilities: {{reads: true, writes: false}}
{extra}"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Env:
    """One configuration in tmp_path and ways to run `recovery` against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "recovery.yml"
        self.rb = root / "rb"
        self.home = root / "var"
        for folder in ("rb", "playbooks", "inventory", "work"):
            (root / folder).mkdir()
        (root / "inventory" / "hosts.yml").write_text(INVENTORY)
        (root / "playbooks" / "noop.yml").write_text(
            "- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
        for name, text in RUNBOOKS.items():
            self.write_runbook(name, text)
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        self.config.write_text(CONFIG.format(extra=extra))

    def write_runbook(self, name: str, text: str) -> Path:
        """A runbook; without a ``verify:`` of its own it gets one that always passes
        (the loader requires every step to be verified)."""
        text = textwrap.dedent(text)
        if not re.search(r"^verify:", text, re.M):
            text += "verify: {action: test.ok, interval: 0.05s, deadline: 2s}\n"
        path = self.rb / name
        path.write_text(text.replace("{home}", str(self.root / "work")))
        return path

    def work(self, name: str) -> Path:
        return self.root / "work" / name

    def cli(self, *args: str) -> Result:
        """In-process: ``engine.cli.main`` with stdout and stderr captured."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), *args])
        return Result(code, out.getvalue(), err.getvalue())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RECOVERY_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                          env.get("PYTHONPATH")]))
        return env

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "engine", "--config", str(self.config),
                                 *args], cwd=self.root, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str, timeout: float = 60) -> Result:
        proc = self.popen(*args)
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)

    def store(self):
        from engine.store.sqlite import SQLiteStore

        return SQLiteStore(self.home / "recovery.db")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    for name in ("RECOVERY_CONFIG", "RECOVERY_HOME", "RECOVERY_STATE_URL",
                 "RECOVERY_OPERATOR"):
        monkeypatch.delenv(name, raising=False)
    return Env(tmp_path)


def wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


# -- recover: exit codes ------------------------------------------------------------------------

def test_recover_escalates_and_exits_0_when_recovered(env: Env) -> None:
    r = env.cli("--as", "oncall", "recover", "--component", "svc")
    assert r.code == 0, r.err
    assert "first" in r.out and "failed" in r.out and "succeeded" in r.out
    assert "recovered" in r.out

    runs = env.cli("history", "--json").json()
    assert [(x["strategy"], x["status"]) for x in runs] == [("second", "succeeded"),
                                                           ("first", "failed")]
    assert {x["requested_by"] for x in runs} == {"oncall"}
    assert {x["target"] for x in runs} == {"localhost"}
    incidents = env.cli("incidents", "--json").json()
    assert [(i["runbook"], i["state"]) for i in incidents] == [("svc", "recovered")]
    assert runs[0]["incident_id"] == incidents[0]["id"]


def test_recover_exhausted_exits_1_and_switches_degraded_mode_on(env: Env) -> None:
    r = env.cli("recover", "-c", "broken")
    assert r.code == 1
    assert "failed: exhausted" in r.err
    status = env.cli("status", "--json").json()
    mode = next(m for m in status["degraded_modes"] if m["mode"] == "broken_down")
    assert mode["active"] and not mode["manual"]
    assert mode["capabilities"] == {"reads": True, "writes": False}
    broken = next(c for c in status["components"] if c["component"] == "broken")
    assert broken["health"] == "degraded"
    assert broken["success_rate"] == 0.0
    assert broken["incidents_ended"]["failed"] == 1


def test_recover_ending_degraded_exits_1_not_verified(env: Env) -> None:
    r = env.cli("recover", "-c", "shed")
    assert r.code == 1, (r.out, r.err)
    assert "degraded, not recovered: degraded by graceful_degradation" in r.err
    assert [i["state"] for i in env.cli("incidents", "--json").json()] == ["degraded"]


def test_bad_config_exits_2_with_one_line_and_no_traceback(env: Env) -> None:
    env.config.write_text("home: var\nno_such_key: 1\n")
    r = env.run("status")
    assert r.code == 2
    assert "no_such_key" in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert r.out == ""

    missing = env.cli("--config", str(env.root / "nope.yml"), "status")
    assert missing.code == 2 and "not found" in missing.err

    env.config.write_text(CONFIG.format(extra="").replace("tests.engine_actions",
                                                          "no_such_module_here"))
    r = env.cli("status")
    assert r.code == 2 and "no_such_module_here" in r.err


def test_a_foreign_recovery_home_exits_2_and_is_left_alone(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = env.root / "work"
    (foreign / "someone-elses.txt").write_text("x")
    os.chmod(foreign, 0o755)
    monkeypatch.setenv("RECOVERY_HOME", str(foreign))
    r = env.cli("status")
    assert r.code == 2 and "is not a recovery home" in r.err and r.out == ""
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o755


def test_store_unavailable_at_start_exits_2(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOVERY_STATE_URL", "sqlite:////proc/no-such-dir/recovery.db")
    r = env.cli("history")
    assert r.code == 2 and "store unavailable" in r.err and r.out == ""
    monkeypatch.setenv("RECOVERY_STATE_URL", "postgres://db/recovery")
    r = env.cli("history")
    assert r.code == 2 and "unsupported state URL" in r.err


def test_a_bad_runbook_is_a_config_error_for_commands_that_use_runbooks(env: Env) -> None:
    env.write_runbook("zzz.yml", "name: zzz\nstrategies:\n  - name: x\n    action: nope.nope\n")
    r = env.cli("recover", "-c", "svc")
    assert r.code == 2
    assert "zzz.yml:4:" in r.err and "Traceback" not in r.err
    # the kill switch still works when a runbook is broken
    assert env.cli("disable", "--for", "5m").code == 0


@pytest.mark.parametrize("args", [
    ["recover"],                                        # --component is required
    ["bogus"],
    [],
    ["recover", "-c", "svc", "--diff"],                 # --diff needs --check
    ["recover", "-c", "svc", "--strategy", "nope"],
    ["recover", "-c", "nope"],
    ["history", "--last", "yesterday"],
    ["approve", "run-x", "--now", "--reject"],
])
def test_usage_errors_exit_2(env: Env, args: list[str]) -> None:
    r = env.cli(*args)
    assert r.code == 2, (r.out, r.err)
    assert r.err and "Traceback" not in r.err


def test_config_from_environment_and_options_after_the_command(
        env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert main(["runbooks", "--config", str(env.config), "--json"]) == 0
    names = [rb["name"] for rb in json.loads(capsys.readouterr().out)]
    assert names == ["broken", "guarded", "holder", "shed", "sleepy", "svc"]
    monkeypatch.setenv("RECOVERY_CONFIG", str(env.config))
    monkeypatch.setenv("RECOVERY_OPERATOR", "from-env")
    assert main(["disable", "-c", "svc"]) == 0
    assert "by from-env" in capsys.readouterr().out
    assert main(["enable", "-c", "svc", "--as", "flag-wins"]) == 0
    events = env.store().list_events()
    assert [(e.action, e.actor) for e in events] == [("enable", "flag-wins"),
                                                     ("disable", "from-env")]


def test_unknown_target_is_refused_with_4_and_recorded(env: Env) -> None:
    r = env.cli("recover", "-c", "svc", "--target", "nowhere")
    assert r.code == 4
    assert "unknown target" in r.err
    refused = env.cli("history", "--status", "refused", "--json").json()
    assert len(refused) == 1 and "nowhere" in refused[0]["reason"]
    assert env.cli("incidents", "--json").json() == []


def test_target_alias_and_pattern_resolve_to_hosts(env: Env) -> None:
    r = env.cli("recover", "-c", "svc", "--target", "web-1:9100")
    assert r.code == 0, r.err
    assert env.cli("history", "--json", "-n", "1").json()[0]["target"] == "web-1"
    r = env.cli("recover", "-c", "guarded", "--target", "web")
    assert r.code == 3
    pending = env.cli("pending", "--json").json()
    assert sorted(p["target"] for p in pending) == ["web-1", "web-2"]


def test_several_hosts_the_worst_exit_code_wins(env: Env) -> None:
    assert env.cli("disable", "--target", "web-2").code == 0
    r = env.cli("recover", "-c", "svc", "--target", "web")
    assert r.code == 4
    states = {i["target"]: i["state"] for i in env.cli("incidents", "--json").json()}
    assert states == {"web-1": "recovered", "web-2": "canceled"}


def test_approval_parks_with_3_then_approve_now_runs_it(env: Env) -> None:
    r = env.run("recover", "-c", "guarded")
    assert r.code == 3, r.err
    pending = env.cli("pending", "--json").json()
    assert len(pending) == 1
    run_id = pending[0]["run_id"]
    assert f"recovery --config {env.config} approve {run_id}" in r.out
    assert pending[0]["plan"]["action"] == "test.touch"
    assert pending[0]["expires_in"] > 3000
    assert not env.work("touched").exists()
    assert run_id in env.cli("pending").out

    r = env.run("approve", run_id, "--now", "--as", "alice", "--reason", "go")
    assert r.code == 0, r.err
    assert env.work("touched").exists()
    run = next(x for x in env.cli("history", "--json").json() if x["id"] == run_id)
    assert run["status"] == "succeeded"
    assert run["approved_by"] == "alice"
    assert env.cli("pending", "--json").json() == []
    assert env.cli("incidents", "--json").json()[0]["state"] == "recovered"
    # deciding twice is refused
    again = env.cli("approve", run_id)
    assert again.code == 4 and "not waiting" in again.err


def test_approve_without_now_queues_and_reject_ends_the_attempt(env: Env) -> None:
    assert env.cli("recover", "-c", "guarded", "-t", "web-1").code == 3
    assert env.cli("recover", "-c", "guarded", "-t", "web-2").code == 3
    first, second = sorted(env.cli("pending", "--json").json(), key=lambda p: p["target"])
    r = env.cli("approve", first["run_id"], "--as", "bob")
    assert r.code == 0 and "queued" in r.out
    assert env.store().get_run(first["run_id"]).status.value == "queued"
    r = env.cli("approve", second["run_id"], "--reject", "--reason", "not now", "--as", "eve")
    assert r.code == 0
    run = env.store().get_run(second["run_id"])
    assert run.status.value == "rejected" and "eve" in run.reason
    approval = env.store().get_approval(second["run_id"])
    assert (approval.status, approval.decided_by, approval.reason) == ("rejected", "eve",
                                                                        "not now")
    unknown = env.cli("approve", "run-unknown")
    assert unknown.code == 2 and "no run run-unknown" in unknown.err


def test_approve_now_runs_a_step_approved_earlier(env: Env) -> None:
    assert env.cli("recover", "-c", "guarded").code == 3
    (pending,) = env.cli("pending", "--json").json()
    run_id = pending["run_id"]
    r = env.cli("approve", run_id, "--as", "bob")
    assert r.code == 0 and f"approve {run_id} --now" in r.out
    assert not env.work("touched").exists()
    again = env.cli("approve", run_id)  # no --now: already decided, says how to run it
    assert again.code == 4 and "not waiting" in again.err and "--now" in again.err

    r = env.run("approve", run_id, "--now", "--as", "carol")
    assert r.code == 0, (r.out, r.err)
    assert "approved by bob" in r.out and "running it here" in r.out
    assert env.work("touched").exists()
    run = env.store().get_run(run_id)
    assert (run.status.value, run.approved_by) == ("succeeded", "bob")
    assert env.cli("incidents", "--json").json()[0]["state"] == "recovered"
    ran = env.cli("approve", run_id, "--now")  # nothing queued any more
    assert ran.code == 4 and "not queued" in ran.err


def test_approve_now_leaves_a_run_a_worker_holds(env: Env) -> None:
    assert env.cli("recover", "-c", "guarded").code == 3
    (pending,) = env.cli("pending", "--json").json()
    run_id = pending["run_id"]
    assert env.cli("approve", run_id).code == 0
    store = env.store()
    assert store.claim_run(run_id, "worker-elsewhere", time.time(), 60) is not None
    r = env.cli("approve", run_id, "--now")
    assert r.code == 4 and "a worker holds it" in r.err
    assert store.get_run(run_id).status.value == "queued"
    assert not env.work("touched").exists()


def test_approving_a_step_of_a_closed_incident_is_refused(env: Env) -> None:
    from engine.orchestration.lifecycle import IncidentState

    assert env.cli("recover", "-c", "guarded").code == 3
    (pending,) = env.cli("pending", "--json").json()
    store = env.store()
    # the incident ended while the step waited (e.g. its alert resolved)
    assert store.update_incident(pending["incident_id"], state=IncidentState.RESOLVED,
                                 closed_at=time.time(), reason="alert resolved") is not None
    r = env.cli("approve", pending["run_id"], "--now")
    assert r.code == 4 and "resolved" in r.err and "cannot be approved" in r.err
    assert store.get_approval(pending["run_id"]).status == "pending"
    assert not env.work("touched").exists()
    # saying no is still possible
    assert env.cli("approve", pending["run_id"], "--reject").code == 0


def test_approve_a_run_that_never_waited_is_refused_with_4(env: Env) -> None:
    assert env.cli("recover", "-c", "svc").code == 0
    run = env.cli("history", "--json", "-n", "1").json()[0]
    r = env.cli("approve", run["id"])
    assert r.code == 4 and "never waited for approval" in r.err


def test_an_expired_approval_cannot_be_approved(env: Env) -> None:
    assert env.cli("recover", "-c", "guarded").code == 3
    (pending,) = env.cli("pending", "--json").json()
    store = env.store()
    approval = store.get_approval(pending["run_id"])
    approval.expires_at = time.time() - 1
    store.add_approval(approval)  # as if an hour had passed with no service to expire it
    r = env.cli("approve", pending["run_id"], "--now")
    assert r.code == 4 and "expired" in r.err
    assert store.get_run(pending["run_id"]).status.value == "expired"
    assert not env.work("touched").exists()


def test_every_command_expires_due_approvals_where_no_service_runs(env: Env) -> None:
    assert env.cli("recover", "-c", "guarded").code == 3
    (pending,) = env.cli("pending", "--json").json()
    store = env.store()
    approval = store.get_approval(pending["run_id"])
    approval.expires_at = time.time() - 1
    store.add_approval(approval)
    assert env.cli("pending", "--json").json() == []  # seen as expired, not waiting
    assert store.get_run(pending["run_id"]).status.value == "expired"
    (incident,) = env.cli("incidents", "--json").json()
    assert incident["state"] == "canceled" and "expired" in incident["reason"]
    assert env.cli("status", "--json").json()["pending_approvals"] == 0


def test_housekeeping_prunes_hourly_and_never_breaks_a_command(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.orchestration.approvals
    import engine.service.retention

    assert env.cli("validate").code == 0
    assert env.store().get_value("retention_pruned_at") is None  # validate only reads
    assert env.cli("incidents").code == 0
    first = env.store().get_value("retention_pruned_at")
    assert first is not None
    assert env.cli("incidents").code == 0
    assert env.store().get_value("retention_pruned_at") == first  # at most hourly

    def boom(ctx, now=None):
        raise RuntimeError("database is\nlocked")

    monkeypatch.setattr(engine.orchestration.approvals, "expire_due", boom)
    monkeypatch.setattr(engine.service.retention, "prune_if_due", boom)
    r = env.cli("incidents", "--json")
    assert r.code == 0 and r.json() == []
    warnings = r.err.strip().splitlines()
    assert len(warnings) == 2 and all("warning" in w for w in warnings)
    assert "expiring approvals failed: database is locked" in warnings[0]
    assert "pruning old artifacts failed" in warnings[1]


def test_kill_switch_refuses_with_4_and_force_passes_on_the_record(env: Env) -> None:
    r = env.cli("disable", "-c", "svc", "--reason", "maintenance", "--as", "bob")
    assert r.code == 0 and "until" in r.out
    r = env.cli("recover", "-c", "svc")
    assert r.code == 4
    assert "disabled" in r.err and "bob" in r.err
    r = env.cli("recover", "-c", "svc", "--force")
    assert r.code == 0, r.err
    runs = env.cli("history", "--json").json()
    ran = [x for x in runs if x["status"] in ("succeeded", "failed")]
    assert ran and all(x["forced"] for x in ran)
    assert [x["status"] for x in runs if not x["forced"]] == ["refused"]
    switches = env.cli("status", "--json").json()["switches"]
    assert [(s["component"], s["created_by"], s["reason"]) for s in switches] == [
        ("svc", "bob", "maintenance")]

    r = env.cli("enable", "-c", "svc", "--as", "bob")
    assert r.code == 0 and "removed switch" in r.out
    assert env.cli("status", "--json").json()["switches"] == []
    assert [e.action for e in env.store().list_events()] == ["enable", "disable"]


def test_disable_cancel_running_stops_runs_and_rejects_approvals_in_its_scope(
        env: Env) -> None:
    """The emergency stop: in one step auto-recovery goes off for localhost, the run in
    flight there is stopped, the approval waiting there is rejected, each recorded with
    who; what waits on another target is left alone."""
    proc = env.popen("recover", "-c", "sleepy")
    try:
        wait_for(env.work("nap-started"))
        assert env.cli("recover", "-c", "guarded").code == 3                 # localhost
        assert env.cli("recover", "-c", "guarded", "-t", "web-1").code == 3  # elsewhere
        parked = {p["target"]: p["run_id"] for p in env.cli("pending", "--json").json()}
        [running] = [r for r in env.cli("history", "--json").json()
                     if r["status"] == "running"]
        r = env.cli("disable", "-t", "localhost", "--cancel-running", "--reason", "fire",
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
    store = env.store()
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
    assert env.cli("disable", "-t", "web-1").code == 0
    assert store.get_approval(parked["web-1"]).status == "pending"


def test_disable_for_a_second_expires(env: Env) -> None:
    assert env.cli("disable", "--for", "1s").code == 0
    assert len(env.cli("status", "--json").json()["switches"]) == 1
    time.sleep(1.1)
    assert env.cli("status", "--json").json()["switches"] == []
    assert env.cli("recover", "-c", "svc").code == 0


def test_disable_never_and_unknown_component(env: Env) -> None:
    r = env.cli("disable", "-t", "web-1:9100", "--for", "never")
    assert r.code == 0 and "until `recovery enable`" in r.out
    (switch,) = env.cli("status", "--json").json()["switches"]
    assert (switch["target"], switch["until"]) == ("web-1", None)
    assert env.cli("disable", "-c", "nope").code == 2
    assert env.cli("disable", "--for", "-5m").code == 2
    r = env.cli("enable", "-t", "web-2")
    assert r.code == 0 and "no kill switch" in r.out and "still active" in r.out


def test_cooldown_defers_with_4(env: Env) -> None:
    assert env.cli("recover", "-c", "svc").code == 0
    assert env.cli("recover", "-c", "svc").code == 0
    r = env.cli("recover", "-c", "svc")
    assert r.code == 4
    assert "deferred" in r.err and "cooldown" in r.err
    (cd,) = env.cli("status", "--json").json()["cooldowns"]
    assert (cd["runbook"], cd["target"], cd["attempts"], cd["max_attempts"], cd["cooling"]) == (
        "svc", "localhost", 2, 2, True)
    assert cd["next_allowed_at"] > time.time() + 3000
    assert "cooldown" in env.cli("status").out


def test_check_mode_opens_no_incident_and_changes_nothing(env: Env) -> None:
    r = env.cli("recover", "-c", "guarded", "--check")
    assert r.code == 0, r.err
    assert not env.work("touched").exists()
    assert env.cli("incidents", "--json").json() == []
    runs = env.cli("history", "--json").json()
    assert len(runs) == 1 and runs[0]["check_mode"] and runs[0]["status"] == "succeeded"
    assert env.cli("pending", "--json").json() == []


# -- cancel, signals, locks ---------------------------------------------------------------------

def test_cancel_of_a_pending_approval_cancels_the_incident(env: Env) -> None:
    assert env.cli("recover", "-c", "guarded").code == 3
    (pending,) = env.cli("pending", "--json").json()
    r = env.cli("cancel", pending["run_id"], "--as", "carol")
    assert r.code == 0, r.err
    assert "canceled run" in r.out and "canceled incident" in r.out
    (incident,) = env.cli("incidents", "--json").json()
    assert incident["state"] == "canceled" and "carol" in incident["reason"]
    assert env.store().get_run(pending["run_id"]).status.value == "canceled"
    assert env.cli("pending", "--json").json() == []
    nope = env.cli("cancel", "inc-nope")
    assert nope.code == 2 and "no run or incident inc-nope" in nope.err


def test_sigint_cancels_the_running_step_and_exits_1(env: Env) -> None:
    proc = env.popen("recover", "-c", "sleepy")
    try:
        wait_for(env.work("nap-started"))
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert time.monotonic() - started < 10
    assert "never" not in out  # the next strategy did not start
    (incident,) = env.cli("incidents", "--json").json()
    assert incident["state"] == "canceled"
    (run,) = env.cli("history", "--json").json()
    assert run["strategy"] == "nap" and run["status"] in ("failed", "canceled")


def test_unlock_breaks_a_lock_held_by_another_process_and_records_it(env: Env) -> None:
    proc = env.popen("recover", "-c", "holder", "-t", "web-1")
    try:
        wait_for(env.work("hold-started"))
        locks = env.cli("status", "--json").json()["locks"]
        assert [lk["target"] for lk in locks] == ["web-1"]
        holder = locks[0]["holder"]
        assert env.cli("unlock", "web-1", "-c", "svc").code == 4  # other component: left

        r = env.cli("unlock", "web-1", "--as", "dave")
        assert r.code == 0, r.err
        assert holder in r.out and locks[0]["run_id"] in r.out
        assert env.cli("status", "--json").json()["locks"] == []
        (event,) = env.store().list_events()
        assert (event.action, event.actor, event.detail["lock"]["holder"]) == (
            "unlock", "dave", holder)

        # `show --follow` prints the run's events until it ends
        threading.Timer(0.5, env.work("release").touch).start()
        shown = env.cli("show", locks[0]["run_id"], "--follow")
        assert shown.code == 0
        assert "action_start" in shown.out and "ended: succeeded" in shown.out
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (out, err)
    run = env.store().get_run(locks[0]["run_id"])
    assert "lock was broken" in run.reason
    assert env.cli("unlock", "web-1").out.strip() == "no lock on web-1"


# -- reading -------------------------------------------------------------------------------------

def test_show_prints_record_events_and_stdout(env: Env) -> None:
    assert env.cli("recover", "-c", "svc", "--as", "zed").code == 0
    run = env.cli("history", "--json", "-n", "1").json()[0]
    r = env.cli("show", run["id"])
    assert r.code == 0
    text = r.out
    assert text.index("run.json:") < text.index("events:") < text.index("stdout:")
    assert "requested by     zed" in text
    assert "#1" in text and "action_start" in text and "RUN test.ok on localhost" in text
    doc = env.cli("show", run["id"], "--json").json()
    assert doc["run"]["id"] == run["id"]
    events = [e["event"] for e in doc["events"]]
    assert events[:2] == ["action_start", "action_result"]
    assert set(events[2:]) <= {"verify_check"}  # the runbook's verify, if it recorded any
    assert "succeeded: ok on localhost" in doc["stdout"]
    assert env.cli("show", "run-nope").code == 2   # usage: no such run


def test_every_listing_command_prints_json_only(env: Env) -> None:
    assert env.cli("recover", "-c", "svc").code == 0
    assert env.cli("recover", "-c", "guarded").code == 3
    for args in (["incidents"], ["incidents", "--open"], ["history"], ["pending"],
                 ["degraded"], ["status"], ["runbooks"], ["test", "-c", "svc"]):
        r = env.cli(*args, "--json")
        assert r.code == 0, (args, r.err)
        json.loads(r.out)  # nothing but the document on stdout
    # the real entry point, too
    r = env.run("history", "--json", "--component", "svc", "--last", "1h", "--limit", "1")
    assert r.code == 0 and len(json.loads(r.out)) == 1
    r = env.run("incidents", "--open", "--json")
    assert [i["runbook"] for i in json.loads(r.out)] == ["guarded"]


def test_human_tables_show_utc_times(env: Env) -> None:
    assert env.cli("recover", "-c", "svc").code == 0
    out = env.cli("history").out
    header = out.splitlines()[0].split()
    assert header[:4] == ["STARTED", "RUN", "COMPONENT", "STRATEGY"]
    assert time.strftime("%Y-%m-%d", time.gmtime()) in out and "Z" in out
    assert "ago" in env.cli("incidents").out
    status = env.cli("status").out
    assert "components (last 1d)" in status and "50% (1/2)" in status


def test_metrics_command(env: Env) -> None:
    assert env.cli("recover", "-c", "svc").code == 0
    r = env.cli("metrics")
    assert r.code == 0
    assert 'infra_recovery_attempts_total{component="svc"' in r.out
    r = env.cli("metrics", "--json")
    assert r.code == 0 and isinstance(r.json(), dict)


# -- plan only ------------------------------------------------------------------------------------

def _counts(env: Env) -> tuple[int, int, int]:
    store = env.store()
    return (len(store.query_runs(limit=None)), len(store.list_incidents()),
            len(store.list_approvals(None)))


def test_test_plans_and_records_nothing(env: Env) -> None:
    assert env.cli("disable", "-t", "web-2").code == 0
    before = _counts(env)
    r = env.cli("test", "-c", "svc", "-t", "web-1")
    assert r.code == 0, r.err
    assert "would:        allow" in r.out and "kill_switch" in r.out
    plan = env.cli("test", "-c", "guarded", "-t", "web-2", "--json").json()
    assert plan["target"] == "web-2" and plan["would"] == "refuse"
    assert plan["first_step"] == "touch"
    assert env.cli("test", "-c", "guarded", "--json").json()["would"] == "park"
    refused = env.cli("test", "-c", "svc", "-t", "nowhere", "--json").json()
    assert refused["would"] == "refuse" and "nowhere" in refused["refused"]

    notification = {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "SvcDown", "component": "svc",
                                        "instance": "web-1:9100"}, "fingerprint": "a1"},
        {"status": "resolved", "labels": {"alertname": "SvcDown", "component": "svc",
                                          "instance": "web-1:9100"}},
        {"status": "firing", "labels": {"alertname": "Other", "instance": "web-1"}},
    ]}
    alert_file = env.root / "alert.json"
    alert_file.write_text(json.dumps(notification))
    plans = env.cli("test", "--alert", str(alert_file), "--json").json()
    assert [(p["runbook"], p["would"]) for p in plans] == [
        ("svc", "allow"), (None, "nothing"), (None, "nothing")]
    assert plans[0]["target"] == "web-1"
    single = env.root / "one.json"
    single.write_text(json.dumps(notification["alerts"][0]))
    r = env.cli("test", "--alert", str(single))
    assert r.code == 0 and "runbook:      svc" in r.out
    assert _counts(env) == before

    (env.root / "junk.json").write_text("{not json")
    assert env.cli("test", "--alert", str(env.root / "junk.json")).code == 2
    assert env.cli("test", "--alert", str(env.root / "missing.json")).code == 2
    (env.root / "empty.json").write_text('{"foo": 1}')
    assert env.cli("test", "--alert", str(env.root / "empty.json")).code == 2


# -- degraded modes ------------------------------------------------------------------------------

def test_degraded_on_and_off_by_hand_show_in_status(env: Env) -> None:
    r = env.cli("degraded", "--on", "broken_down", "--reason", "db migration", "--as", "dave")
    assert r.code == 0, r.err
    mode = next(m for m in env.cli("status", "--json").json()["degraded_modes"]
                if m["mode"] == "broken_down")
    assert mode["active"] and mode["manual"]
    (reason,) = mode["reasons"]
    assert (reason["key"], reason["created_by"], reason["reason"]) == (
        "manual", "dave", "db migration")
    listing = env.cli("degraded").out
    assert "broken_down: ON" in listing
    assert "  off now: writes (still on: reads)" in listing

    r = env.cli("degraded", "--off", "broken_down", "--as", "erin")
    assert r.code == 0 and "cleared 1" in r.out
    modes = env.cli("degraded", "--json").json()
    assert not next(m for m in modes if m["mode"] == "broken_down")["active"]
    assert [(e.action, e.actor) for e in env.store().list_events()] == [
        ("degraded_off", "erin"), ("degraded_on", "dave")]
    assert env.cli("degraded", "--on", "no_such_mode").code == 2
    assert env.cli("degraded", "--off", "no_such_mode").code == 2


def test_degraded_modes_say_what_they_would_switch_off_not_that_it_is_off(env: Env) -> None:
    """Off, a mode's matrix is what it would switch off; on, what is off now."""
    listing = env.cli("degraded").out
    assert "broken_down: off" in listing
    assert "  when on, switches off: writes (keeps on: reads)" in listing
    assert "OFF" not in listing
    status = env.cli("status").out
    assert "broken_down: off" in status
    assert "when on, switches off: writes (keeps on: reads)" in status and "OFF" not in status
    [mode] = [m for m in env.cli("degraded", "--json").json() if m["mode"] == "broken_down"]
    assert (mode["switches_off"], mode["off_now"]) == (["writes"], [])

    assert env.cli("degraded", "--on", "broken_down").code == 0
    status = env.cli("status").out
    assert "broken_down: ON" in status and "off now: writes (still on: reads)" in status
    [mode] = [m for m in env.cli("status", "--json").json()["degraded_modes"]
              if m["mode"] == "broken_down"]
    assert (mode["switches_off"], mode["off_now"]) == (["writes"], ["writes"])


def test_history_says_why_a_playbook_step_failed(env: Env) -> None:
    """Not only "non-zero return code": the failed task's own words."""
    playbook = REPO / "tests" / "playbooks" / "fail_command.yml"
    (env.root / "playbooks" / playbook.name).write_text(playbook.read_text())
    env.write_runbook("container.yml", """\
        name: container
        strategies: [{name: restart_container, playbook: fail_command.yml}]
        """)
    r = env.run("recover", "-c", "container", "-t", "localhost")
    assert r.code == 1, r.out + r.err
    shown = env.run("history", "--component", "container")
    [line] = [x for x in shown.out.splitlines() if "restart_container" in x]
    assert "Cannot connect to the Docker daemon" in line, shown.out
    [run] = env.run("history", "--json").json()
    assert run["reason"].startswith("task 'Restart the container' failed on localhost: "
                                    "Cannot connect to the Docker daemon at ")
    assert run["reason"].endswith("(non-zero return code, rc 1)")


REDIS_FATAL = ("task 'Start redis' failed on localhost: rc 1: 12294:C 06 Dec 2026 "
               "19:07:31.123 # Fatal error, can't open config file '/etc/redis/redis.conf': "
               "No such file or directory (non-zero return code, rc 1)")


def test_history_gives_the_reason_the_rest_of_the_terminal_and_all_of_it_in_a_pipe(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program's own error comes after its log prefix (redis: pid, role, time):
    a reason cut at a fixed width loses it."""
    from engine.orchestration.lifecycle import RunStatus
    from engine.records import RunRecord, new_id

    now = time.time()
    env.store().add_run(RunRecord(
        id=new_id("run"), component="redis", runbook="redis", strategy="restart",
        target="localhost", status=RunStatus.FAILED, trigger="manual", started_at=now - 1,
        finished_at=now, requested_by="cli:root", reason=REDIS_FATAL))
    # For people, the program's log prefix goes: its own words come sooner.
    readable = REDIS_FATAL.replace("12294:C 06 Dec 2026 19:07:31.123 # ", "")
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = env.run("history")                               # not a terminal: all of it
    assert readable in piped.out, piped.out
    monkeypatch.setenv("COLUMNS", "400")                     # a wide terminal: all of it
    assert readable in env.cli("history").out
    monkeypatch.setenv("COLUMNS", "200")                     # a narrower one: up to its edge
    lines = env.cli("history").out.splitlines()
    assert max(len(line) for line in lines) == 200, lines
    assert "rc 1: Fatal error, can't open" in lines[1] and lines[1].endswith("...")
    assert env.cli("history", "--json").json()[0]["reason"] == REDIS_FATAL   # the record


# -- validate and runbooks -------------------------------------------------------------------------

def test_validate_passes_on_the_shipped_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
    env["RECOVERY_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([sys.executable, "-m", "engine", "--config",
                           str(REPO / "recovery.yml"), "validate"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runbooks = len(list((REPO / "runbooks").glob("*.yml")))
    playbooks = len(list((REPO / "playbooks").glob("*.yml")))
    assert f"{runbooks} runbooks, {playbooks} playbooks, inventory: ok" in proc.stdout


def test_validate_fails_with_file_and_line(env: Env) -> None:
    assert env.cli("validate").code == 0
    bad = env.write_runbook("bad.yml", """\
        name: bad
        strategies:
          - name: one
            action: test.ok
          - name: two
            action: no.such_action
        """)
    (env.root / "playbooks" / "broken.yml").write_text("- hosts: all\n  tasks:\n    - nope: [\n")
    r = env.cli("validate")
    assert r.code == 2  # an invalid runbook or playbook is a configuration error
    assert f"{bad}:6: unknown action 'no.such_action'" in r.out
    assert "broken.yml:1: syntax check failed" in r.out
    assert "INVALID" in r.out.splitlines()[-1]
    doc = env.cli("validate", "--json").json()
    assert doc["ok"] is False and doc["runbooks"]["errors"] and "broken.yml" in doc[
        "playbooks"]["errors"]


def test_overlapping_runbooks_are_named_by_validate_and_test(env: Env) -> None:
    # Two runbooks of equal priority for the same alerts: the file name decides.
    for name in ("a-restart", "b-failover"):
        env.write_runbook(f"{name}.yml", f"""\
            name: {name}
            priority: high
            match: [alertname=~"Svc(Down|Slow)"]
            match_component_label: false
            strategies: [{{name: fix, action: test.ok}}]
            """)
    r = env.run("validate")
    assert r.code == 0, r.out + r.err        # a warning, not an error
    [warning] = [line for line in r.err.splitlines() if "overlap" in line]
    assert "a-restart (a-restart.yml)" in warning and "b-failover (b-failover.yml)" in warning
    assert "the file name decides" in warning and 'alertname="SvcDown"' in warning
    doc = env.run("validate", "--json").json()
    [overlap] = doc["overlaps"]
    assert overlap["winner"] == "a-restart" and overlap["example"] == {"alertname": "SvcDown"}
    assert any("overlap" in w for w in doc["warnings"])

    alert = env.root / "alert.json"
    alert.write_text(json.dumps({"labels": {"alertname": "SvcSlow", "instance": "web-1"}}))
    plan = env.cli("test", "--alert", str(alert), "--json").json()[0]
    assert plan["runbook"] == "a-restart"
    assert [(m["runbook"], m["chosen"]) for m in plan["matched"]] == [
        ("a-restart", True), ("b-failover", False)]
    assert "the file name decides" in plan["matched"][1]["why"]
    shown = env.cli("test", "--alert", str(alert)).out
    assert "matched:      2 runbooks" in shown and "b-failover" in shown
    assert "a-restart.yml sorts before b-failover.yml" in shown


def test_validate_says_nothing_of_runbooks_that_cannot_take_the_same_alert(env: Env) -> None:
    # Different values of one label prove the groups disjoint; a more specific runbook
    # of higher priority is an override, on purpose.
    for name, match, priority in (("one", 'instance="web-1"', "high"),
                                  ("two", 'instance="web-2"', "high"),
                                  ("generic", 'alertname=~"Svc.*"', "warning"),
                                  ("special", 'alertname="SvcDown"', "critical")):
        env.write_runbook(f"{name}.yml", f"""\
            name: {name}
            priority: {priority}
            match: [{match}]
            match_component_label: false
            strategies: [{{name: fix, action: test.ok}}]
            """)
    r = env.run("validate")
    assert r.code == 0 and "overlap" not in r.err, r.err
    assert env.run("validate", "--json").json()["overlaps"] == []


def test_runbooks_lists_strategies_with_approval_markers(env: Env) -> None:
    r = env.cli("runbooks")
    assert r.code == 0
    line = next(x for x in r.out.splitlines() if x.startswith("guarded"))
    assert "touch*" in line
    rows = env.cli("runbooks", "--json").json()
    guarded = next(x for x in rows if x["name"] == "guarded")
    assert guarded["strategies"][0]["approval"] is True
