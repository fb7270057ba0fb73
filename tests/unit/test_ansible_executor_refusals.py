"""What the Ansible executor refuses before anything runs: a canceled step, extravars it
may not pass (connection settings, its own names), a playbook name outside its folder, a
limit that is not plain host names; the extravars file is unsafe at its root. No
playbook runs here (tests/integration/test_ansible_executor.py runs them)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.executors.ansible import AnsibleExecutor, render_extravars
from engine.lifecycle import RunStatus
from engine.security.redaction import Redactor
from tests.support.ansible_fixtures import (
    INVENTORY,
    SHIPPED,
    assert_private_dirs_deleted,
    new_run,
)
from tests.support.paths import TEST_PLAYBOOKS


def test_cancel_before_start_runs_nothing(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path
) -> None:
    run = new_run(artifacts_root)
    cancel = threading.Event()
    cancel.set()
    result = ansible_executor.run(artifacts=run, playbook="ping.yml", limit="localhost",
                                  extravars={}, cancel=cancel)

    assert result.status == RunStatus.CANCELED
    assert result.data["hosts"] == [
        {"host": "localhost", "outcome": "failed", "reason": "canceled before it started"}]
    assert list(run.read_events()) == []
    assert_private_dirs_deleted(private_root)


@pytest.mark.parametrize("forks", [0, -1, 1.5, "2", True])
def test_forks_must_be_a_positive_whole_number(
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, forks: object
) -> None:
    run = new_run(artifacts_root)
    with pytest.raises(ValueError, match="forks"):
        ansible_executor.run(artifacts=run, playbook="ping.yml", limit="localhost",
                             extravars={}, forks=forks)  # type: ignore[arg-type]
    assert not run.path.exists()
    assert_private_dirs_deleted(private_root)


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
    ansible_executor: AnsibleExecutor, artifacts_root: Path, private_root: Path, key: str
) -> None:
    run = new_run(artifacts_root)
    with pytest.raises(ValueError):
        ansible_executor.run(artifacts=run, playbook="ping.yml", limit="localhost",
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
    ansible_executor: AnsibleExecutor, artifacts_root: Path, limit: str
) -> None:
    with pytest.raises(ValueError):
        ansible_executor.run(artifacts=new_run(artifacts_root), playbook="ping.yml", limit=limit,
                             extravars={})


# -- syntax check ------------------------------------------------------------------------


def test_all_five_playbooks_ship() -> None:
    assert {"restart_container.yml", "snapshot_take.yml", "snapshot_rollback.yml",
            "disk_cleanup.yml", "process_restart.yml"} <= set(SHIPPED)
