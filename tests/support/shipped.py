"""A shipped runbook in a test's (or a bench's) engine home, with the shipped playbooks:
a runbook that names a playbook its home lacks does not load, and restart_service.yml
imports restart_container.yml and process_restart.yml."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.paths import ROOT


def install_playbooks(home: Path) -> None:
    """Every shipped playbook into ``home/playbooks``."""
    shutil.copytree(ROOT / "playbooks", home / "playbooks", dirs_exist_ok=True)


def install_runbook(name: str, home: Path) -> Path:
    """``runbooks/<name>.yml`` as shipped into ``home/runbooks``, with the playbooks."""
    (home / "runbooks").mkdir(parents=True, exist_ok=True)
    install_playbooks(home)
    return Path(shutil.copy(ROOT / "runbooks" / f"{name}.yml", home / "runbooks"))
