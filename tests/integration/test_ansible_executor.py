"""The Ansible executor, with real ansible-runner running real playbooks on localhost.

Given a playbook, a resolved host and extravars, a run ends with a ``StepResult`` whose
status comes from runner's stats and events, and with an artifacts directory in
ansible-runner's layout that holds no secret. Every test also checks that the run's
private data dir is gone. ``ghost`` in tests/fixtures/inventory is SSH to 127.0.0.1 port 1:
refused at once, no traffic leaves the machine.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from engine.executors import StepResult
from engine.executors.ansible import AnsibleExecutor
from engine.lifecycle import RunStatus
from engine.security.redaction import Redactor
from tests.support.ansible_fixtures import (
    INVENTORY,
    assert_private_dirs_deleted,
    new_run,
)
from tests.support.paths import TEST_PLAYBOOKS


def sleeping(seconds: str) -> list[psutil.Process]:
    """`sleep <seconds>` processes still alive (each test sleeps for its own number)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", seconds]:
            found.append(proc)
    return found


# -- outcomes ----------------------------------------------------------------------------
def test_success_writes_the_file_and_the_runner_layout(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    """A task that writes a file: SUCCEEDED, and status/rc/stdout/job_events as runner's."""
    dest = tmp_path / "out.txt"
    run = new_run(artifacts_root).create()
    run.event("gates_passed", stdout="gates passed")  # the engine's own event comes first
    sigterm_before = signal.getsignal(signal.SIGTERM)
    sigint_before = signal.getsignal(signal.SIGINT)

    result = ansible_executor.run(artifacts=run, playbook="write_file.yml", limit="localhost",
                                  extravars={"value": "hello", "dest": str(dest)})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert result.rc == 0
    assert dest.read_text() == "hello"
    assert result.data["stats"]["processed"] == {"localhost": 1}
    assert result.data["stats"]["changed"] == {"localhost": 1}
    assert len(result.data["playbook_sha256"]) == 64
    assert run.read_status() == "successful"
    assert run.read_rc() == 0
    stdout = run.read_stdout()
    assert "TASK [Write the value]" in stdout and "PLAY RECAP" in stdout
    assert "\r" not in stdout
    events = list(run.read_events())
    names = [e["event"] for e in events]
    assert names[0] == "gates_passed"
    assert "playbook_on_start" in names and "runner_on_ok" in names
    assert names[-1] == "playbook_on_stats"
    counters = [e["counter"] for e in events]
    assert counters == sorted(set(counters))
    assert all(e["runner_ident"] == run.run_id for e in events)
    record = run.read_run_json()
    assert record["playbook_sha256"] == result.data["playbook_sha256"]
    assert record["ansible"]["runner_status"] == "successful"
    assert record["ansible"]["limit"] == "localhost"
    assert not (run.path / "command").exists()  # runner's copy holds the environment
    assert "env" not in record["ansible"]
    # a cancel_callback was given, so runner left this process' signal handlers alone
    assert signal.getsignal(signal.SIGTERM) is sigterm_before
    assert signal.getsignal(signal.SIGINT) is sigint_before
    assert_private_dirs_deleted(private_root)


@pytest.mark.slow
def test_concurrent_runs_keep_their_own_events(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    """Two workers at once: each run has its own private dir, ident and events."""
    runs = [new_run(artifacts_root) for _ in range(2)]
    results: dict[int, StepResult] = {}

    def work(i: int) -> None:
        results[i] = ansible_executor.run(artifacts=runs[i], playbook="write_file.yml",
                                          limit="localhost", extravars={
                                              "value": f"v{i}", "dest": str(tmp_path / f"{i}")})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    for i, run in enumerate(runs):
        assert results[i].status == RunStatus.SUCCEEDED, results[i].reason
        assert (tmp_path / f"{i}").read_text() == f"v{i}"
        events = list(run.read_events())
        assert {e["runner_ident"] for e in events} == {run.run_id}
        assert [e["event"] for e in events].count("playbook_on_stats") == 1
    assert_private_dirs_deleted(private_root)


def test_failed_task_names_the_task_the_host_and_the_message(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """An ignored failure does not count; the failing task is named in the reason."""
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="fail.yml", limit="localhost",
                                  extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason == "task 'Break on purpose' failed on localhost: the disk is on fire"
    assert "ignored" not in result.reason
    assert run.read_status() == "failed"
    assert_private_dirs_deleted(private_root)


def test_a_failed_command_gives_its_own_error_not_only_its_return_code(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """`history` shows the reason: it must say why the command failed (its stderr)."""
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="fail_command.yml", limit="localhost",
                                  extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason == (
        "task 'Restart the container' failed on localhost: Cannot connect to the Docker "
        "daemon at unix:///var/run/docker.sock. Is the docker daemon running? "
        "(non-zero return code, rc 1)")
    assert "\n" not in result.reason
    assert_private_dirs_deleted(private_root)


PYTHON_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ", re.M)   # file:line: XWarning: text


@pytest.mark.slow
def test_warnings_of_the_tooling_stay_out_of_the_run_and_the_playbooks_own_stay_in(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="own_output.yml", limit="localhost",
                                  extravars={})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    stdout = run.read_stdout()
    events = list(run.read_events())
    printed = stdout + "\n".join(str(e.get("stdout") or "") for e in events)
    assert PYTHON_WARNING.search(printed) is None, PYTHON_WARNING.search(printed)
    assert "Deprecat" not in printed.replace("[DEPRECATION WARNING]", "")
    assert stdout.lstrip().startswith("[WARNING]") or stdout.lstrip().startswith("PLAY")
    # the playbook's own: Ansible's warning about it, its debug message, its program's
    assert "[WARNING]: Found variable using reserved name 'environment'" in printed
    assert "the playbook's own message" in printed
    [task] = [e for e in events if e["event"] == "runner_on_ok"
              and e["event_data"]["task"] == "Run a program that warns"]
    assert "UserWarning: the task program own warning" in task["event_data"]["res"]["stderr"]
    assert_private_dirs_deleted(private_root)


def test_unreachable_host_fails_with_the_connection_error(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """rc 4 from an unreachable host: the reason comes from the event, not the rc."""
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="ping.yml", limit="ghost", extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason.startswith("unreachable: ghost: ")
    assert "Connection refused" in result.reason
    assert result.data["stats"]["dark"] == {"ghost": 1}
    assert_private_dirs_deleted(private_root)


# -- per-host outcome --------------------------------------------------------------------
FLEET = "fleet_ok,fleet_changed,fleet_failed,ghost,fleet_skipped"


def test_each_host_of_a_run_has_its_own_outcome_and_a_partial_run_says_which_failed(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """One run over five hosts (per_host.yml does on each what its `wanted` says; ghost
    is unreachable): an entry per host in the limit's order, and the run ``partial``,
    its reason naming the failed and the unreachable host with their own words."""
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="per_host.yml", limit=FLEET,
                                  extravars={}, forks=2)

    assert result.status == RunStatus.PARTIAL, result.reason
    hosts = result.data["hosts"]
    assert [(h["host"], h["outcome"]) for h in hosts] == [
        ("fleet_ok", "ok"), ("fleet_changed", "changed"), ("fleet_failed", "failed"),
        ("ghost", "unreachable"), ("fleet_skipped", "skipped")]
    why = {h["host"]: h["reason"] for h in hosts}
    assert why["fleet_failed"] == "task 'Break on purpose': fleet_failed is broken on purpose"
    assert why["ghost"].startswith("task 'Reach the host': ")
    assert "Connection refused" in why["ghost"]
    assert why["fleet_ok"] == why["fleet_changed"] == why["fleet_skipped"] == ""
    assert result.reason.startswith("2 of 5 hosts failed: ")
    assert ("task 'Break on purpose' failed on fleet_failed: fleet_failed is broken on "
            "purpose") in result.reason
    assert "unreachable: ghost: " in result.reason
    ansible = run.read_run_json()["ansible"]
    assert ansible["forks"] == 2
    assert ansible["command"][ansible["command"].index("--forks") + 1] == "2"
    assert_private_dirs_deleted(private_root)


def test_a_run_whose_hosts_all_succeed_succeeds_and_one_where_none_did_fails(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """Skipped is no failure; an unreachable host is never a success."""
    good = ansible_executor.run(artifacts=new_run(artifacts_root), playbook="per_host.yml",
                                limit="fleet_changed,fleet_skipped", extravars={})
    bad = ansible_executor.run(artifacts=new_run(artifacts_root), playbook="per_host.yml",
                               limit="fleet_failed,ghost", extravars={})

    assert good.status == RunStatus.SUCCEEDED, good.reason
    assert [h["outcome"] for h in good.data["hosts"]] == ["changed", "skipped"]
    assert bad.status == RunStatus.FAILED, bad.reason
    assert [h["outcome"] for h in bad.data["hosts"]] == ["failed", "unreachable"]
    assert bad.reason.startswith("task 'Break on purpose' failed on fleet_failed: ")
    assert_private_dirs_deleted(private_root)


def test_a_host_of_the_limit_the_play_never_reached_is_failed_not_ok(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """A host the play's own pattern leaves out (per_host.yml's `only`) has no result:
    failed, and the run with it partial."""
    result = ansible_executor.run(artifacts=new_run(artifacts_root), playbook="per_host.yml",
                                  limit="localhost,fleet_ok", extravars={"only": "localhost"})

    assert [(h["host"], h["outcome"], h["reason"]) for h in result.data["hosts"]] == [
        ("localhost", "ok", ""), ("fleet_ok", "failed", "no result from the play")]
    assert result.status == RunStatus.PARTIAL
    assert result.reason == "1 of 2 hosts failed: fleet_ok: no result from the play"
    assert_private_dirs_deleted(private_root)


def test_parse_error_is_told_apart_from_unreachable(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """Also rc 4, but no stats: the reason is ansible's error text with file and line."""
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="broken.yml", limit="localhost",
                                  extravars={})

    assert result.status == RunStatus.FAILED
    assert result.rc == 4
    assert "unreachable" not in result.reason
    assert "YAML parsing failed" in result.reason
    assert "broken.yml:7" in result.reason
    assert_private_dirs_deleted(private_root)


def test_no_host_matched_is_a_failure(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="ping.yml", limit="nosuchhost",
                                  extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason == "no hosts matched"
    assert_private_dirs_deleted(private_root)


@pytest.mark.slow
def test_check_mode_writes_nothing_and_succeeds(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out.txt"
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="write_file.yml", limit="localhost",
                                  extravars={"value": "hello", "dest": str(dest)},
                                  check=True, diff=True)

    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert not dest.exists()
    assert run.read_run_json()["ansible"]["check"] is True
    assert "--check" in run.read_run_json()["ansible"]["command"]
    assert_private_dirs_deleted(private_root)


# -- timeout and cancel ------------------------------------------------------------------
def test_timeout_fails_promptly_and_leaves_no_process(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """A 30 s task under a 2 s timeout: back in seconds, the task's process killed too
    (ansible's workers setsid(), so runner's own kill would leave it running)."""
    run = new_run(artifacts_root)
    started = time.monotonic()
    result = ansible_executor.run(artifacts=run, playbook="sleep.yml", limit="localhost",
                                  extravars={"seconds": "31"}, timeout=2)
    elapsed = time.monotonic() - started

    assert result.status == RunStatus.FAILED
    assert result.reason == "timed out after 2s"
    assert elapsed < 10
    assert run.read_status() == "timeout"
    assert sleeping("31") == []
    assert_private_dirs_deleted(private_root)


def test_cancel_from_another_thread(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        result = ansible_executor.run(artifacts=run, playbook="sleep.yml", limit="localhost",
                                      extravars={"seconds": "32"}, cancel=cancel)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started

    assert result.status == RunStatus.CANCELED
    assert elapsed < 10
    assert run.read_status() == "canceled"
    assert sleeping("32") == []
    assert_private_dirs_deleted(private_root)


# -- labels are data ---------------------------------------------------------------------
HOSTILE = {
    "lookup": "{{ lookup('pipe','id') }}",
    "loop": "{% for i in range(3) %}x{% endfor %}",
    "subshell": "$(id)",
    "semicolon": "; rm -rf /tmp/x",
    "number": "123",
    "boolean": "yes",
    "star": "*",
    "equals": "=",
}


@pytest.mark.slow
def test_hostile_extravars_stay_text_inside_a_real_run(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    """Ansible templates extravars again: each value must reach the file as typed."""
    out = tmp_path / "values"
    out.mkdir()
    run = new_run(artifacts_root)
    result = ansible_executor.run(artifacts=run, playbook="write_values.yml", limit="localhost",
                                  extravars={"values": HOSTILE, "dest_dir": str(out)})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    for name, value in HOSTILE.items():
        assert (out / name).read_text() == value
    assert not any("uid=" in p.read_text() for p in out.iterdir())
    assert "uid=" not in run.read_stdout()
    assert_private_dirs_deleted(private_root)


@pytest.mark.slow
def test_single_hostile_value_written_with_copy_content(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out.txt"
    result = ansible_executor.run(artifacts=new_run(artifacts_root), playbook="write_file.yml",
                                  limit="localhost", extravars={
                                      "value": "{{ lookup('pipe','id') }}", "dest": str(dest)})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert dest.read_text() == "{{ lookup('pipe','id') }}"


# -- secrets -----------------------------------------------------------------------------
@pytest.mark.slow
def test_secrets_never_reach_the_artifacts(
    monkeypatch: pytest.MonkeyPatch, artifacts_root: Path, private_root: Path
) -> None:
    """A playbook that prints a secret extravar, env vars and ansible_env: every file
    under the artifacts root is free of the secrets, and the caller's redactor is not
    changed by the run."""
    monkeypatch.setenv("SUPER_SECRET_TOKEN", "s3cr3t-value-xyz")
    redactor = Redactor()
    ex = AnsibleExecutor(TEST_PLAYBOOKS, INVENTORY, redactor=redactor, tmp_root=private_root,
                         envvars={"EXPLICIT_API_KEY": "explicit-key-789"})
    run = new_run(artifacts_root)
    result = ex.run(artifacts=run, playbook="leak.yml", limit="localhost",
                    extravars={"db_password": "hunter2-pass", "note": "x hunter2-pass y"})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    files = [p for p in artifacts_root.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        for secret in (b"s3cr3t-value-xyz", b"hunter2-pass", b"explicit-key-789"):
            assert secret not in data, f"{secret!r} in {path}"
    stdout = run.read_stdout()
    assert "password is ********" in stdout
    assert "api key is ********" in stdout  # given on purpose, then masked
    assert run.read_run_json()["ansible"]["extravars"]["db_password"] == "********"
    assert redactor.text("hunter2-pass") == "hunter2-pass"
    assert_private_dirs_deleted(private_root)


def test_syntax_check_returns_the_error_text(ansible_executor: AnsibleExecutor) -> None:
    error = ansible_executor.syntax_check("broken.yml")
    assert error is not None
    assert "YAML parsing failed" in error
