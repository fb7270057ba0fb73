"""The Ansible executor, with real ansible-runner running real playbooks on localhost.

Given a playbook, a resolved host and extravars, a run ends with a ``StepResult`` whose
status comes from runner's stats and events, and with an artifacts directory in
ansible-runner's layout that holds no secret. Every test also checks that the run's
private data dir is gone. ``ghost`` in tests/inventory is SSH to 127.0.0.1 port 1:
refused at once, no traffic leaves the machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from engine.artifacts import RunArtifacts
from engine.executors import StepResult
from engine.executors.ansible import AnsibleExecutor, render_extravars
from engine.orchestration.lifecycle import RunStatus
from engine.security.redaction import Redactor

ROOT = Path(__file__).resolve().parent.parent
TEST_PLAYBOOKS = ROOT / "tests" / "playbooks"
SHIPPED_PLAYBOOKS = ROOT / "playbooks"
INVENTORY = ROOT / "tests" / "inventory" / "hosts.yml"


@pytest.fixture
def private_root(tmp_path: Path) -> Path:
    """Where the executor makes its private data dirs: must be empty after every run."""
    path = tmp_path / "private"
    path.mkdir()
    return path


@pytest.fixture
def artifacts_root(tmp_path: Path) -> Path:
    path = tmp_path / "artifacts"
    path.mkdir()
    return path


@pytest.fixture
def executor(private_root: Path) -> AnsibleExecutor:
    return AnsibleExecutor(TEST_PLAYBOOKS, INVENTORY, redactor=Redactor(), tmp_root=private_root)


@pytest.fixture
def shipped(private_root: Path) -> AnsibleExecutor:
    return AnsibleExecutor(SHIPPED_PLAYBOOKS, INVENTORY, redactor=Redactor(),
                           tmp_root=private_root)


_runs = iter(range(1_000_000))


def new_run(root: Path) -> RunArtifacts:
    return RunArtifacts(root, f"run-{os.getpid()}-{next(_runs)}")


def assert_private_dirs_deleted(private_root: Path) -> None:
    assert list(private_root.iterdir()) == []


def sleeping(seconds: str) -> list[psutil.Process]:
    """`sleep <seconds>` processes still alive (each test sleeps for its own number)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", seconds]:
            found.append(proc)
    return found


# -- outcomes ----------------------------------------------------------------------------
def test_success_writes_the_file_and_the_runner_layout(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    """A task that writes a file: SUCCEEDED, and status/rc/stdout/job_events as runner's."""
    dest = tmp_path / "out.txt"
    run = new_run(artifacts_root).create()
    run.event("gates_passed", stdout="gates passed")  # the engine's own event comes first
    sigterm_before = signal.getsignal(signal.SIGTERM)
    sigint_before = signal.getsignal(signal.SIGINT)

    result = executor.run(artifacts=run, playbook="write_file.yml", limit="localhost",
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


def test_concurrent_runs_keep_their_own_events(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    """Two workers at once: each run has its own private dir, ident and events."""
    runs = [new_run(artifacts_root) for _ in range(2)]
    results: dict[int, StepResult] = {}

    def work(i: int) -> None:
        results[i] = executor.run(artifacts=runs[i], playbook="write_file.yml",
                                  limit="localhost",
                                  extravars={"value": f"v{i}", "dest": str(tmp_path / f"{i}")})

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
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """An ignored failure does not count; the failing task is named in the reason."""
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="fail.yml", limit="localhost", extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason == "task 'Break on purpose' failed on localhost: the disk is on fire"
    assert "ignored" not in result.reason
    assert run.read_status() == "failed"
    assert_private_dirs_deleted(private_root)


def test_a_failed_command_gives_its_own_error_not_only_its_return_code(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """`history` shows the reason: it must say why the command failed (its stderr)."""
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="fail_command.yml", limit="localhost",
                          extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason == (
        "task 'Restart the container' failed on localhost: Cannot connect to the Docker "
        "daemon at unix:///var/run/docker.sock. Is the docker daemon running? "
        "(non-zero return code, rc 1)")
    assert "\n" not in result.reason
    assert_private_dirs_deleted(private_root)


PYTHON_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ", re.M)   # file:line: XWarning: text


def test_warnings_of_the_tooling_stay_out_of_the_run_and_the_playbooks_own_stay_in(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="own_output.yml", limit="localhost",
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
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """rc 4 from an unreachable host: the reason comes from the event, not the rc."""
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="ping.yml", limit="ghost", extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason.startswith("unreachable: ghost: ")
    assert "Connection refused" in result.reason
    assert result.data["stats"]["dark"] == {"ghost": 1}
    assert_private_dirs_deleted(private_root)


def test_parse_error_is_told_apart_from_unreachable(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """Also rc 4, but no stats: the reason is ansible's error text with file and line."""
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="broken.yml", limit="localhost",
                          extravars={})

    assert result.status == RunStatus.FAILED
    assert result.rc == 4
    assert "unreachable" not in result.reason
    assert "YAML parsing failed" in result.reason
    assert "broken.yml:7" in result.reason
    assert_private_dirs_deleted(private_root)


def test_no_host_matched_is_a_failure(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="ping.yml", limit="nosuchhost",
                          extravars={})

    assert result.status == RunStatus.FAILED
    assert result.reason == "no hosts matched"
    assert_private_dirs_deleted(private_root)


def test_check_mode_writes_nothing_and_succeeds(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out.txt"
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="write_file.yml", limit="localhost",
                          extravars={"value": "hello", "dest": str(dest)},
                          check=True, diff=True)

    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert not dest.exists()
    assert run.read_run_json()["ansible"]["check"] is True
    assert "--check" in run.read_run_json()["ansible"]["command"]
    assert_private_dirs_deleted(private_root)


# -- timeout and cancel ------------------------------------------------------------------
def test_timeout_fails_promptly_and_leaves_no_process(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    """A 30 s task under a 2 s timeout: back in seconds, the task's process killed too
    (ansible's workers setsid(), so runner's own kill would leave it running)."""
    run = new_run(artifacts_root)
    started = time.monotonic()
    result = executor.run(artifacts=run, playbook="sleep.yml", limit="localhost",
                          extravars={"seconds": "31"}, timeout=2)
    elapsed = time.monotonic() - started

    assert result.status == RunStatus.FAILED
    assert result.reason == "timed out after 2s"
    assert elapsed < 10
    assert run.read_status() == "timeout"
    assert sleeping("31") == []
    assert_private_dirs_deleted(private_root)


def test_cancel_from_another_thread(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        result = executor.run(artifacts=run, playbook="sleep.yml", limit="localhost",
                              extravars={"seconds": "32"}, cancel=cancel)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started

    assert result.status == RunStatus.CANCELED
    assert elapsed < 10
    assert run.read_status() == "canceled"
    assert sleeping("32") == []
    assert_private_dirs_deleted(private_root)


def test_cancel_before_start_runs_nothing(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    cancel = threading.Event()
    cancel.set()
    result = executor.run(artifacts=run, playbook="ping.yml", limit="localhost",
                          extravars={}, cancel=cancel)

    assert result.status == RunStatus.CANCELED
    assert list(run.read_events()) == []
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


def test_hostile_extravars_stay_text_inside_a_real_run(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, tmp_path: Path
) -> None:
    """Ansible templates extravars again: each value must reach the file as typed."""
    out = tmp_path / "values"
    out.mkdir()
    run = new_run(artifacts_root)
    result = executor.run(artifacts=run, playbook="write_values.yml", limit="localhost",
                          extravars={"values": HOSTILE, "dest_dir": str(out)})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    for name, value in HOSTILE.items():
        assert (out / name).read_text() == value
    assert not any("uid=" in p.read_text() for p in out.iterdir())
    assert "uid=" not in run.read_stdout()
    assert_private_dirs_deleted(private_root)


def test_single_hostile_value_written_with_copy_content(
    executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out.txt"
    result = executor.run(artifacts=new_run(artifacts_root), playbook="write_file.yml",
                          limit="localhost",
                          extravars={"value": "{{ lookup('pipe','id') }}", "dest": str(dest)})

    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert dest.read_text() == "{{ lookup('pipe','id') }}"


def test_extravars_file_is_unsafe_at_the_root() -> None:
    """The whole mapping is tagged (ansible-core 2.19 re-resolves a tagged scalar)."""
    text = render_extravars({"a": "{{ x }}", "n": "123"}, "run-1")
    assert text.startswith("!unsafe\n")
    assert "recovery_run_id: run-1" in text


@pytest.mark.parametrize(
    "key",
    ["ansible_ssh_common_args", "ansible_connection", "ANSIBLE_HOST", "connection", "become",
     "become_user", "hosts", "port", "remote_user", "private_key_file", "ssh_common_args",
     "recovery_run_id", "not-a-name", "2x"],
)
def test_refused_extravars_raise_before_anything_runs(
    executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, key: str
) -> None:
    run = new_run(artifacts_root)
    with pytest.raises(ValueError):
        executor.run(artifacts=run, playbook="ping.yml", limit="localhost",
                     extravars={key: "x"})
    assert not run.path.exists()
    assert_private_dirs_deleted(private_root)


@pytest.mark.parametrize(
    "playbook",
    ["../playbooks/restart_container.yml", "/etc/passwd", "sub/x.yml", "missing.yml",
     ".hidden.yml", "ping", "outside.yml"],
)
def test_playbook_names_resolve_only_inside_the_folder(
    tmp_path: Path, artifacts_root: Path, playbook: str
) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "ping").write_text("- hosts: all\n  tasks: []\n")
    (folder / "outside.yml").symlink_to(TEST_PLAYBOOKS / "ping.yml")  # a symlink out
    ex = AnsibleExecutor(folder, INVENTORY, redactor=Redactor(), tmp_root=tmp_path / "p")
    with pytest.raises(ValueError):
        ex.run(artifacts=new_run(artifacts_root), playbook=playbook, limit="localhost",
               extravars={})


@pytest.mark.parametrize("limit", ["", "all", "all:!ghost", "local*", "@hosts.txt",
                                   "~loc.*", "a b", "localhost,"])
def test_limit_must_be_plain_host_names(
    executor: AnsibleExecutor, artifacts_root: Path, limit: str
) -> None:
    with pytest.raises(ValueError):
        executor.run(artifacts=new_run(artifacts_root), playbook="ping.yml", limit=limit,
                     extravars={})


# -- secrets -----------------------------------------------------------------------------
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


# -- syntax check ------------------------------------------------------------------------
SHIPPED = sorted(p.name for p in SHIPPED_PLAYBOOKS.glob("*.yml"))


def test_all_five_playbooks_ship() -> None:
    assert {"restart_container.yml", "snapshot_take.yml", "snapshot_rollback.yml",
            "disk_cleanup.yml", "process_restart.yml"} <= set(SHIPPED)


@pytest.mark.parametrize("playbook", SHIPPED)
def test_shipped_playbooks_pass_syntax_check(
    shipped: AnsibleExecutor, private_root: Path, playbook: str
) -> None:
    assert shipped.syntax_check(playbook) is None
    assert_private_dirs_deleted(private_root)


def test_syntax_check_returns_the_error_text(executor: AnsibleExecutor) -> None:
    error = executor.syntax_check("broken.yml")
    assert error is not None
    assert "YAML parsing failed" in error


# -- shipped playbooks, harmless runs ----------------------------------------------------
def run_shipped(shipped: AnsibleExecutor, root: Path, playbook: str, check: bool = False,
                **extravars: object) -> StepResult:
    return shipped.run(artifacts=new_run(root), playbook=playbook, limit="localhost",
                       extravars=extravars, check=check)


def test_restart_container_check_mode_skips_the_restart(
    shipped: AnsibleExecutor, artifacts_root: Path
) -> None:
    """Docker cannot run here: check mode proves the plan without touching a runtime."""
    result = run_shipped(shipped, artifacts_root, "restart_container.yml", check=True,
                         container="redis")
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert result.data["stats"]["skipped"] == {"localhost": 1}


@pytest.mark.parametrize("container", ["-rf", "a b", "$(id)", ""])
def test_restart_container_refuses_a_bad_name(
    shipped: AnsibleExecutor, artifacts_root: Path, container: str
) -> None:
    result = run_shipped(shipped, artifacts_root, "restart_container.yml", check=True,
                         container=container)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason


def _old(path: Path, days: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x" * 10)
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_disk_cleanup_lists_in_check_mode_then_deletes_only_old_matches(
    shipped: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "clean"
    old_tmp = _old(root / "old.tmp")
    old_log = _old(root / "logs" / "app.log.1")
    old_other = _old(root / "keep.txt")
    new_tmp = root / "new.tmp"
    new_tmp.write_text("fresh")
    outside = _old(tmp_path / "outside" / "x.tmp")
    (root / "link").symlink_to(outside.parent)  # find must not follow it

    result = run_shipped(shipped, artifacts_root, "disk_cleanup.yml", check=True,
                         cleanup_roots=[str(root)], max_age_days=7,
                         cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert old_tmp.exists() and old_log.exists()

    result = run_shipped(shipped, artifacts_root, "disk_cleanup.yml",
                         cleanup_roots=[str(root)], max_age_days=7,
                         cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert not old_tmp.exists() and not old_log.exists()
    assert old_other.exists() and new_tmp.exists() and outside.exists()


@pytest.mark.parametrize("extravars", [
    {"cleanup_roots": ["/etc"]},
    {"cleanup_roots": ["/"]},
    {"cleanup_roots": ["relative/dir"]},
    {"cleanup_roots": ["/tmp/../etc"]},
    {"cleanup_roots": []},
    {"cleanup_roots": ["/tmp/x"], "patterns": ["*"]},
    {"cleanup_roots": ["/tmp/x"], "patterns": ["../*.tmp"]},
    {"cleanup_roots": ["/tmp/x"], "max_age_days": 0},
])
def test_disk_cleanup_refuses_unsafe_input(
    shipped: AnsibleExecutor, artifacts_root: Path, extravars: dict[str, object]
) -> None:
    result = run_shipped(shipped, artifacts_root, "disk_cleanup.yml", check=True,
                         **extravars)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason


@pytest.mark.parametrize("root", [
    "/etc/ssl", "/usr/lib/python3", "/var/lib", "/var/lib/postgresql", "/boot/grub",
    "/lib64", "/sbin", "/proc/self", "/sys/kernel", "/dev/shm", "/run/user", "/root/.cache",
    "/var/spool/cron", "/var", "/home", "/opt", "/srv"])
def test_disk_cleanup_refuses_system_directories_and_what_is_below_them(
    shipped: AnsibleExecutor, artifacts_root: Path, root: str
) -> None:
    """Not only the top-level names: /etc/ssl, /usr/lib/python3, /var/lib are refused by
    name (check mode: even a slip would delete nothing), next to an allowed root."""
    result = run_shipped(shipped, artifacts_root, "disk_cleanup.yml", check=True,
                         cleanup_roots=["/tmp", root], cleanup_max_usage_percent=0)
    assert result.status == RunStatus.FAILED
    assert f"refused: {root} is a system directory" in result.reason


def test_disk_cleanup_allows_logs_and_temp_directories(
    shipped: AnsibleExecutor, artifacts_root: Path
) -> None:
    roots = [r for r in ("/var/log", "/var/tmp", "/tmp") if Path(r).is_dir()]
    result = run_shipped(shipped, artifacts_root, "disk_cleanup.yml", check=True,
                         cleanup_roots=roots, cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason


def test_snapshot_take_then_rollback_restores_the_data(
    shipped: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    """Real runs on temp dirs (service_manager none): take, change, check-mode rollback
    changes nothing, rollback restores and keeps a pre-rollback snapshot; a rollback whose
    service does not come back keeps the old data and says where; the next one refuses
    to overwrite that leftover."""
    root = tmp_path / "srv"
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("v1")
    (data / "sub" / "b.txt").write_text("s1")
    snaps = root / "snaps"
    dirs = {"persist_dir": str(data), "snapshot_dir": str(snaps),
            "snapshot_roots": [str(root)]}

    result = run_shipped(shipped, artifacts_root, "snapshot_take.yml", check=True, **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert not snaps.exists()

    result = run_shipped(shipped, artifacts_root, "snapshot_take.yml", **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    (good,) = snaps.glob("data-*.tar.gz")

    (data / "a.txt").write_text("v2")
    (data / "c.txt").write_text("written after the snapshot")

    result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", check=True, **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert (data / "a.txt").read_text() == "v2"

    result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert (data / "a.txt").read_text() == "v1"
    assert (data / "sub" / "b.txt").read_text() == "s1"
    assert not (data / "c.txt").exists()
    assert good.exists()
    assert len(list(snaps.glob("data-*.pre-rollback.tar.gz"))) == 1
    assert sorted(p.name for p in root.iterdir()) == ["data", "snaps"]   # old data deleted

    (data / "a.txt").write_text("v3")
    result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", health_wait=1,
                         health_url="http://127.0.0.1:1/", **dirs)
    old = root / "data.rollback-old"
    assert result.status == RunStatus.FAILED
    assert f"kept in {old}" in result.reason, result.reason
    assert (data / "a.txt").read_text() == "v1"        # restored, but not proven healthy:
    assert (old / "a.txt").read_text() == "v3"         # the data before it is kept

    result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", **dirs)
    assert result.status == RunStatus.FAILED and "refused" in result.reason
    assert "data.rollback-old" in result.reason and (old / "a.txt").read_text() == "v3"


def test_snapshot_rollback_refuses_swap_paths_outside_the_roots(
    shipped: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    """With the data directory itself as a root, <data>.rollback-staging and
    .rollback-old lie outside every root: refused before anything is written, and an
    unrelated directory of that name survives."""
    data, snaps = tmp_path / "data", tmp_path / "snaps"
    data.mkdir()
    (data / "a.txt").write_text("v1")
    dirs = {"persist_dir": str(data), "snapshot_dir": str(snaps),
            "snapshot_roots": [str(data), str(snaps)]}
    result = run_shipped(shipped, artifacts_root, "snapshot_take.yml", **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    precious = tmp_path / "data.rollback-staging" / "precious"
    precious.parent.mkdir()
    precious.write_text("not the rollback's")
    (data / "a.txt").write_text("v2")

    result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", **dirs)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason and "inside snapshot_roots" in result.reason
    assert precious.read_text() == "not the rollback's"
    assert (data / "a.txt").read_text() == "v2"
    assert not (tmp_path / "data.rollback-old").exists()
    assert list(snaps.glob("*.pre-rollback.tar.gz")) == []


# A "database" for the rollback under supervisord: appends while it runs, and writes a
# clean-shutdown marker on SIGTERM (removed at start), as a real database flushes on stop.
BUSY = """
import os, signal, sys, time
data = sys.argv[1]
marker = os.path.join(data, "clean-shutdown")
if os.path.exists(marker):
    os.remove(marker)
def stop(*_):
    open(marker, "w").write("stopped")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    with open(os.path.join(data, "journal"), "a") as fh:
        fh.write("x" * 1024 + "\\n")
    time.sleep(0.01)
"""


def test_snapshot_rollback_stops_the_service_before_its_pre_rollback_snapshot(
    shipped: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    """A program that writes all the time, under a real supervisord: the pre-rollback
    snapshot holds its clean-shutdown marker (taken after the stop, not from a live,
    changing directory), and the program runs again afterwards. A stale .partial left by
    a killed run is pruned; a fresh one is not."""
    import sys

    from tests.supervisor import BIN, Program, Supervisor

    root = tmp_path / "srv"
    data, snaps = root / "data", root / "snaps"
    data.mkdir(parents=True)
    snaps.mkdir()
    stale, fresh = (snaps / "data-20200101T000000000000Z.tar.gz.partial",
                    snaps / "data-20200101T000000000001Z.tar.gz.partial")
    for partial in (stale, fresh):
        partial.write_text("a run that died")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)
    script = tmp_path / "busy.py"
    script.write_text(BUSY)
    supervisor = Supervisor(root / "supervisor", {"busy": Program(
        command=[sys.executable, str(script), str(data)], startsecs=0)}).start()
    try:
        first = supervisor.wait_running("busy")
        service = {"service_name": "busy", "supervisor_config": str(supervisor.conf),
                   "supervisorctl_bin": str(BIN / "supervisorctl"),
                   "persist_dir": str(data), "snapshot_dir": str(snaps),
                   "snapshot_roots": [str(root)]}
        result = run_shipped(shipped, artifacts_root, "snapshot_take.yml",
                             stop_service=True, **service)
        assert result.status == RunStatus.SUCCEEDED, result.reason
        assert not stale.exists() and fresh.exists()
        second = supervisor.wait_running("busy")

        result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", **service)
        assert result.status == RunStatus.SUCCEEDED, result.reason
        (pre,) = snaps.glob("data-*.pre-rollback.tar.gz")
        listing = subprocess.run(["tar", "--list", "--gzip", "--file", str(pre)],
                                 capture_output=True, text=True, check=True).stdout
        assert "./clean-shutdown" in listing.split()      # taken with the program stopped
        assert len({first, second, supervisor.wait_running("busy")}) == 3
        assert list(snaps.glob("*.partial")) == [fresh]
        assert sorted(p.name for p in root.iterdir()) == ["data", "snaps", "supervisor"]
    finally:
        supervisor.stop()


def test_snapshot_rollback_refuses_when_there_is_nothing_to_restore(
    shipped: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run_shipped(shipped, artifacts_root, "snapshot_rollback.yml", check=True,
                         persist_dir=str(data), snapshot_dir=str(tmp_path / "snaps"),
                         snapshot_roots=[str(tmp_path)])
    assert result.status == RunStatus.FAILED
    assert "no snapshot" in result.reason


@pytest.mark.parametrize("program", ["web", "workers:web-1"])
def test_process_restart_check_mode_shows_the_plan(
    shipped: AnsibleExecutor, artifacts_root: Path, program: str
) -> None:
    """Check mode restarts nothing and does not need a reachable supervisord; one
    program of a group (group:name) is one program."""
    result = run_shipped(shipped, artifacts_root, "process_restart.yml", check=True,
                         program=program, supervisor_config="/nonexistent/supervisord.conf")
    assert result.status == RunStatus.SUCCEEDED, result.reason


# `workers:` (and `workers:*`) makes supervisorctl restart the whole group.
@pytest.mark.parametrize("program", ["all", "-c", "a b", "workers:", "workers:*", ":web",
                                     "a:b:c"])
def test_process_restart_refuses_a_bad_program(
    shipped: AnsibleExecutor, artifacts_root: Path, program: str
) -> None:
    result = run_shipped(shipped, artifacts_root, "process_restart.yml", check=True,
                         program=program)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason
