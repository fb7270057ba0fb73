"""disk_cleanup on a real 8 MiB tmpfs, so the usage threshold is real: the shipped
runbook and playbook, run by `recovery recover` (a subprocess, as an operator runs it)
and by `recovery serve` from a webhook alert.

The tree: two roots (cache/, logs/) holding old temp files and rotated logs of several
sizes, a fresh temp file, an old file that matches no pattern; outside the roots an old
temp file (data/) and a big one (out/) that a symlinked directory and a symlinked file
inside a root point to. Largest first until under 50%: exactly big.tmp and mid.tmp go.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from engine.artifacts import RunArtifacts
from engine.executors import StepResult
from engine.executors.ansible import AnsibleExecutor
from engine.lifecycle import RunStatus
from engine.security.redaction import Redactor
from tests.support.service import Served, free_port, wait_for, webhook_token
from tests.support.system_env import (
    MIB,
    ROOT,
    artifacts_text,
    home_of,
    install_system_runbook,
    recovery,
    runs_of,
)
from tests.support.tmpfs import mounted

OLD = 30   # days

# mounting a tmpfs needs root (the threshold must be real: a filesystem of known size)
pytestmark = pytest.mark.requires("root", "mount")


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory) -> Path:
    """One 8 MiB tmpfs for the module, unmounted at the end whatever happens."""
    with mounted(Path(os.path.realpath(tmp_path_factory.mktemp("tmpfs"))), "8m",
                 mode="1777") as fs:
        yield fs


def write(path: Path, size: int, days: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if days:
        stamp = time.time() - days * 86400
        os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def tree(tmpfs: Path) -> dict[str, Path]:
    for child in tmpfs.iterdir():
        subprocess.run(["rm", "-rf", "--", str(child)], check=True, timeout=30)
    files = {
        "big": write(tmpfs / "cache" / "big.tmp", 2 * MIB, OLD),
        "mid": write(tmpfs / "cache" / "mid.tmp", MIB, OLD),
        "log1": write(tmpfs / "logs" / "app.log.1", MIB // 2, OLD),
        "log2": write(tmpfs / "logs" / "nested" / "app.log.2", MIB // 4, OLD),
        "new": write(tmpfs / "cache" / "new.tmp", MIB),
        "nomatch": write(tmpfs / "cache" / "keep.txt", MIB // 2, OLD),
        "outside": write(tmpfs / "data" / "old.tmp", MIB // 2, OLD),
        "pointed": write(tmpfs / "out" / "huge.tmp", MIB, OLD),
    }
    (tmpfs / "cache" / "linkdir").symlink_to(tmpfs / "out")              # a dir pointing out
    (tmpfs / "logs" / "escape.tmp").symlink_to(tmpfs / "out" / "huge.tmp")  # a file too
    assert usage(tmpfs) > 80
    return files


def usage(path: Path) -> float:
    """Used / (used + available), as df and psutil count it."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return 100.0 * used / (used + st.f_bavail * st.f_frsize)


@pytest.fixture
def system(engine_env, tmpfs: Path) -> dict[str, str]:
    """The shipped runbook; localhost cleans cache/ and logs/ of the tmpfs down to 50%."""
    install_system_runbook(engine_env.root, {
        "cleanup_roots": [str(tmpfs / "cache"), str(tmpfs / "logs")],
        "cleanup_max_usage_percent": 50})
    return engine_env.env()


def left(files: dict[str, Path]) -> set[str]:
    return {name for name, path in files.items() if path.exists()}


@pytest.mark.slow
def test_check_mode_lists_the_largest_old_files_and_deletes_nothing(system, tree, tmpfs):
    before = usage(tmpfs)
    r = recovery(system, "recover", "-c", "system", "-s", "disk_cleanup", "-t", "localhost",
                 "--check")
    assert r.code == 0, r.out + r.err
    assert left(tree) == set(tree)
    assert usage(tmpfs) == pytest.approx(before)
    (run,) = runs_of(system, "disk_cleanup")
    assert run["check_mode"] and run["status"] == "succeeded"
    text = artifacts_text(home_of(system), run["id"])
    assert f'would delete [\\"{tree["big"]}\\", \\"{tree["mid"]}\\"]' in text
    assert "would delete 2 old files (3145728 bytes), leaving about 46.9%" in text


def test_deletes_largest_first_until_under_the_threshold_and_verifies(system, tree, tmpfs):
    r = recovery(system, "recover", "-c", "system", "-s", "disk_cleanup", "-t", "localhost")
    assert r.code == 0, r.out + r.err
    # big + mid bring 84% under 50%; the smaller old files are not needed
    assert left(tree) == {"log1", "log2", "new", "nomatch", "outside", "pointed"}
    assert (tmpfs / "cache" / "linkdir").is_symlink()
    assert (tmpfs / "logs" / "escape.tmp").is_symlink()
    assert usage(tmpfs) < 50
    (run,) = runs_of(system, "disk_cleanup")
    assert run["status"] == "succeeded"
    assert "verified by system.health" in run["reason"]
    assert "now 46.9%" in artifacts_text(home_of(system), run["id"])


def run_playbook(tmp_path: Path, **extravars) -> StepResult:
    """The shipped playbook through the engine's executor, without a runbook or verify."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n")
    executor = AnsibleExecutor(ROOT / "playbooks", inventory, redactor=Redactor())
    artifacts = RunArtifacts(tmp_path / "artifacts", f"run-{time.time_ns()}")
    result = executor.run(artifacts=artifacts, playbook="disk_cleanup.yml", limit="localhost",
                          extravars=extravars)
    result.data["stdout"] = artifacts.read_stdout()
    return result


@pytest.mark.slow
def test_threshold_zero_takes_every_old_match_but_nothing_outside_the_roots(
        tmp_path, tree, tmpfs):
    """Everything old under the roots goes (the strongest test of the symlinks: a file
    reached through a symlinked directory, a symlinked file, both pointing out)."""
    result = run_playbook(tmp_path, cleanup_roots=[str(tmpfs / "cache"), str(tmpfs / "logs")],
                          cleanup_max_usage_percent=0)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert left(tree) == {"new", "nomatch", "outside", "pointed"}
    assert (tmpfs / "cache" / "linkdir").is_symlink()
    assert (tmpfs / "logs" / "escape.tmp").is_symlink()
    assert "still over: nothing else here is old enough to delete" in result.data["stdout"]


@pytest.mark.slow
def test_fails_when_what_it_may_delete_does_not_bring_usage_under_the_threshold(
        tmp_path, tree, tmpfs):
    """The playbook's own check, df after deleting (on a host the engine's psutil cannot
    see, the one that verifies the cleanup): every old match goes, 84% -> about 37%, and
    that is still over 10%, so the step fails rather than calling it cleaned."""
    result = run_playbook(tmp_path, cleanup_roots=[str(tmpfs / "cache"), str(tmpfs / "logs")],
                          cleanup_max_usage_percent=10)
    assert result.status == RunStatus.FAILED, result.reason
    assert left(tree) == {"new", "nomatch", "outside", "pointed"}
    assert f"{tmpfs} ({tmpfs / 'cache'}, {tmpfs / 'logs'}) is still" in result.reason
    assert "threshold 10.0%: nothing else under the roots is old enough" in result.reason
    assert usage(tmpfs) > 10


@pytest.mark.slow
def test_a_filesystem_already_under_the_threshold_is_left_alone(tmp_path, tree, tmpfs):
    result = run_playbook(tmp_path, cleanup_roots=[str(tmpfs / "cache"), str(tmpfs / "logs")],
                          cleanup_max_usage_percent=90)
    assert result.status == RunStatus.SUCCEEDED, result.reason
    assert left(tree) == set(tree)
    assert "was 84.4% used, threshold 90.0%: already under, nothing deleted" in \
        result.data["stdout"]


def test_refuses_roots_reached_through_a_symlink(tmp_path, tree, tmpfs):
    """A root that is a symlink to a directory of the tmpfs, and one under a symlinked
    parent: both refused by name, nothing deleted (threshold 0 would take everything)."""
    (tmpfs / "via-link").symlink_to(tmpfs / "cache")
    (tmpfs / "alias").symlink_to(tmpfs)
    result = run_playbook(tmp_path, cleanup_max_usage_percent=0, cleanup_roots=[
        str(tmpfs / "via-link"), str(tmpfs / "alias" / "logs")])
    assert result.status == RunStatus.FAILED
    assert (f"refused: {tmpfs / 'via-link'} goes through a symlink (its real path is "
            f"{tmpfs / 'cache'}); {tmpfs / 'alias' / 'logs'} goes through a symlink") \
        in result.reason
    assert left(tree) == set(tree)


@pytest.mark.slow
def test_an_alert_through_the_service_cleans_the_inventorys_roots_never_the_labels(
        engine_env, system, tree, tmpfs, tmp_path):
    """HostOutOfDiskSpace from node-exporter, journaled by the real webhook of `recovery
    serve`, leads to the cleanup. Labels that try to pick the roots or the threshold are
    data: the inventory's roots and threshold are the ones used."""
    engine_env.write_config(webhook="{workers: 1, http_workers: 1, shutdown_grace: 5s}")
    served = Served(engine_env, tmp_path / "home", free_port())
    try:
        served.start().wait_ready()
        alert = {"status": "firing", "startsAt": "2024-05-01T10:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "disk-1",
                 "generatorURL": "http://prometheus.example/graph",
                 "labels": {"alertname": "HostOutOfDiskSpace", "severity": "critical",
                            "instance": "localhost:9100", "mountpoint": str(tmpfs),
                            "cleanup_roots": str(tmpfs), "cleanup_max_usage_percent": "0"},
                 "annotations": {"summary": "disk almost full"}}
        body = {"version": "4", "status": "firing", "receiver": "infra-recovery",
                "groupKey": "{}:{alertname=\"HostOutOfDiskSpace\"}", "truncatedAlerts": 0,
                "groupLabels": {"alertname": "HostOutOfDiskSpace"}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "http://am.example", "alerts": [alert]}
        answer = httpx.post(served.url + "/api/v1/alerts", json=body, timeout=5,
                            headers={"Authorization": f"Bearer {webhook_token(served.home)}"})
        assert answer.status_code == 200, answer.text
        env = served.environ()
        done = wait_for(lambda: [r for r in runs_of(env, "disk_cleanup")
                                 if r["status"] not in ("running", "queued")], 90, every=0.5)
        assert done, served.stderr()
        assert done[0]["status"] == "succeeded" and done[0]["trigger"] == "alert", done[0]
    finally:
        served.kill_all()
    assert left(tree) == {"log1", "log2", "new", "nomatch", "outside", "pointed"}
    assert usage(tmpfs) < 50
