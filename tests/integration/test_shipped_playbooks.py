"""The shipped playbooks (playbooks/), run by the Ansible executor with real ansible-runner
on localhost, harmlessly: in check mode, or on folders of the test's own. Each passes
ansible-playbook's syntax check; restart_container, disk_cleanup, snapshot_take and
snapshot_rollback, process_restart do what they say and refuse what they must."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.executors import StepResult
from engine.executors.ansible import AnsibleExecutor
from engine.lifecycle import RunStatus
from tests.support.ansible_fixtures import (
    SHIPPED,
    assert_private_dirs_deleted,
    new_run,
)
from tests.support.paths import ROOT

# -- syntax check ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("playbook", SHIPPED)
def test_shipped_playbooks_pass_syntax_check(
    shipped_executor: AnsibleExecutor, private_root: Path, playbook: str
) -> None:
    assert shipped_executor.syntax_check(playbook) is None
    assert_private_dirs_deleted(private_root)


# -- shipped playbooks, harmless runs ----------------------------------------------------
def run_shipped(shipped_executor: AnsibleExecutor, root: Path, playbook: str, check: bool = False,
                **extravars: object) -> StepResult:
    return shipped_executor.run(artifacts=new_run(root), playbook=playbook, limit="localhost",
                                extravars=extravars, check=check)


def test_restart_container_check_mode_skips_the_restart(
    shipped_executor: AnsibleExecutor, artifacts_root: Path
) -> None:
    """Docker cannot run here: check mode proves the plan without touching a runtime."""
    result = run_shipped(shipped_executor, artifacts_root, "restart_container.yml", check=True,
                         container="redis")
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert result.data["stats"]["skipped"] == {"localhost": 1}


@pytest.mark.slow
@pytest.mark.parametrize("container", ["-rf", "a b", "$(id)", ""])
def test_restart_container_refuses_a_bad_name(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, container: str
) -> None:
    result = run_shipped(shipped_executor, artifacts_root, "restart_container.yml", check=True,
                         container=container)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason


def _old(path: Path, days: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x" * 10)
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.slow
def test_disk_cleanup_lists_in_check_mode_then_deletes_only_old_matches(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "clean"
    old_tmp = _old(root / "old.tmp")
    old_log = _old(root / "logs" / "app.log.1")
    old_other = _old(root / "keep.txt")
    new_tmp = root / "new.tmp"
    new_tmp.write_text("fresh")
    outside = _old(tmp_path / "outside" / "x.tmp")
    (root / "link").symlink_to(outside.parent)  # find must not follow it

    result = run_shipped(shipped_executor, artifacts_root, "disk_cleanup.yml", check=True,
                         cleanup_roots=[str(root)], max_age_days=7,
                         cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert old_tmp.exists() and old_log.exists()

    result = run_shipped(shipped_executor, artifacts_root, "disk_cleanup.yml",
                         cleanup_roots=[str(root)], max_age_days=7,
                         cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert not old_tmp.exists() and not old_log.exists()
    assert old_other.exists() and new_tmp.exists() and outside.exists()


@pytest.mark.slow
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
    shipped_executor: AnsibleExecutor, artifacts_root: Path, extravars: dict[str, object]
) -> None:
    result = run_shipped(shipped_executor, artifacts_root, "disk_cleanup.yml", check=True,
                         **extravars)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason


@pytest.mark.slow
@pytest.mark.parametrize("root", [
    "/etc/ssl", "/usr/lib/python3", "/var/lib", "/var/lib/postgresql", "/boot/grub",
    "/lib64", "/sbin", "/proc/self", "/sys/kernel", "/dev/shm", "/run/user", "/root/.cache",
    "/var/spool/cron", "/var", "/home", "/opt", "/srv"])
def test_disk_cleanup_refuses_system_directories_and_what_is_below_them(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, root: str
) -> None:
    """Not only the top-level names: /etc/ssl, /usr/lib/python3, /var/lib are refused by
    name (check mode: even a slip would delete nothing), next to an allowed root."""
    result = run_shipped(shipped_executor, artifacts_root, "disk_cleanup.yml", check=True,
                         cleanup_roots=["/tmp", root], cleanup_max_usage_percent=0)
    assert result.status == RunStatus.FAILED
    assert f"refused: {root} is a system directory" in result.reason


@pytest.mark.slow
def test_disk_cleanup_allows_logs_and_temp_directories(
    shipped_executor: AnsibleExecutor, artifacts_root: Path
) -> None:
    roots = [r for r in ("/var/log", "/var/tmp", "/tmp") if Path(r).is_dir()]
    result = run_shipped(shipped_executor, artifacts_root, "disk_cleanup.yml", check=True,
                         cleanup_roots=roots, cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason


@pytest.mark.slow
def test_snapshot_take_then_rollback_restores_the_data(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
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

    result = run_shipped(shipped_executor, artifacts_root, "snapshot_take.yml", check=True, **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert not snaps.exists()

    result = run_shipped(shipped_executor, artifacts_root, "snapshot_take.yml", **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    (good,) = snaps.glob("data-*.tar.gz")

    (data / "a.txt").write_text("v2")
    (data / "c.txt").write_text("written after the snapshot")

    result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", check=True,
                         **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert (data / "a.txt").read_text() == "v2"

    result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert (data / "a.txt").read_text() == "v1"
    assert (data / "sub" / "b.txt").read_text() == "s1"
    assert not (data / "c.txt").exists()
    assert good.exists()
    assert len(list(snaps.glob("data-*.pre-rollback.tar.gz"))) == 1
    assert sorted(p.name for p in root.iterdir()) == ["data", "snaps"]   # old data deleted

    (data / "a.txt").write_text("v3")
    result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", health_wait=1,
                         health_url="http://127.0.0.1:1/", **dirs)
    old = root / "data.rollback-old"
    assert result.status == RunStatus.FAILED
    assert f"kept in {old}" in result.reason, result.reason
    assert (data / "a.txt").read_text() == "v1"        # restored, but not proven healthy:
    assert (old / "a.txt").read_text() == "v3"         # the data before it is kept

    result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", **dirs)
    assert result.status == RunStatus.FAILED and "refused" in result.reason
    assert "data.rollback-old" in result.reason and (old / "a.txt").read_text() == "v3"


@pytest.mark.slow
def test_snapshot_rollback_refuses_swap_paths_outside_the_roots(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    """With the data directory itself as a root, <data>.rollback-staging and
    .rollback-old lie outside every root: refused before anything is written, and an
    unrelated directory of that name survives."""
    data, snaps = tmp_path / "data", tmp_path / "snaps"
    data.mkdir()
    (data / "a.txt").write_text("v1")
    dirs = {"persist_dir": str(data), "snapshot_dir": str(snaps),
            "snapshot_roots": [str(data), str(snaps)]}
    result = run_shipped(shipped_executor, artifacts_root, "snapshot_take.yml", **dirs)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    precious = tmp_path / "data.rollback-staging" / "precious"
    precious.parent.mkdir()
    precious.write_text("not the rollback's")
    (data / "a.txt").write_text("v2")

    result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", **dirs)
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


@pytest.mark.slow
@pytest.mark.requires("supervisord")
def test_snapshot_rollback_stops_the_service_before_its_pre_rollback_snapshot(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    """A program that writes all the time, under a real supervisord: the pre-rollback
    snapshot holds its clean-shutdown marker (taken after the stop, not from a live,
    changing directory), and the program runs again afterwards. A stale .partial left by
    a killed run is pruned; a fresh one is not."""
    import sys

    from tests.support.supervisor import BIN, Program, Supervisor

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
        result = run_shipped(shipped_executor, artifacts_root, "snapshot_take.yml",
                             stop_service=True, **service)
        assert result.status == RunStatus.SUCCEEDED, result.reason
        assert not stale.exists() and fresh.exists()
        second = supervisor.wait_running("busy")

        result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", **service)
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


@pytest.mark.slow
def test_snapshot_rollback_refuses_when_there_is_nothing_to_restore(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run_shipped(shipped_executor, artifacts_root, "snapshot_rollback.yml", check=True,
                         persist_dir=str(data), snapshot_dir=str(tmp_path / "snaps"),
                         snapshot_roots=[str(tmp_path)])
    assert result.status == RunStatus.FAILED
    assert "no snapshot" in result.reason


@pytest.mark.slow
@pytest.mark.parametrize("program", ["web", "workers:web-1"])
def test_process_restart_check_mode_shows_the_plan(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, program: str
) -> None:
    """Check mode restarts nothing and does not need a reachable supervisord; one
    program of a group (group:name) is one program."""
    result = run_shipped(shipped_executor, artifacts_root, "process_restart.yml", check=True,
                         program=program, supervisor_config="/nonexistent/supervisord.conf")
    assert result.status == RunStatus.SUCCEEDED, result.reason


# `workers:` (and `workers:*`) makes supervisorctl restart the whole group.
@pytest.mark.slow
@pytest.mark.parametrize("program", ["all", "-c", "a b", "workers:", "workers:*", ":web",
                                     "a:b:c"])
def test_process_restart_refuses_a_bad_program(
    shipped_executor: AnsibleExecutor, artifacts_root: Path, program: str
) -> None:
    result = run_shipped(shipped_executor, artifacts_root, "process_restart.yml", check=True,
                         program=program)
    assert result.status == RunStatus.FAILED
    assert "refused" in result.reason


@pytest.mark.slow
@pytest.mark.parametrize(("component", "plans"), [
    ("redis", {"cache-1.example": '["docker", "restart", "-t", "10", "redis-cache-1"]',
               "cache-2.example": '["docker", "restart", "-t", "10", "redis"]'}),
    ("chromadb", {"vectors-1.example": '["supervisorctl", "-c", '
                  '"/etc/supervisor/supervisord.conf", "restart", "chromadb"]'}),
    ("openwebui", {"webui-1.example": '["docker", "restart", "-t", "10", "open-webui"]'}),
])
def test_restart_service_plans_the_example_fleet_from_its_group_vars(
    component: str, plans: dict[str, str]
) -> None:
    """The shipped inventory in check mode (its hosts made local: the examples route
    nowhere): each host's manager and name come from inventory/group_vars, a host's own
    name wins, and the plan names the exact command."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
         str(ROOT / "inventory" / "hosts.yml"), str(ROOT / "playbooks" / "restart_service.yml"),
         "--check", "--limit", component, "-e", f"recovery_component={component}",
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    for host, plan in plans.items():
        shown = plan.replace('"', '\\"')          # as the debug output escapes it
        assert f'ok: [{host}] => {{\n    "msg": "would run: {shown}"' in done.stdout, done.stdout
