"""A runbook the process may not read fails to load with its file, line and reason. The
loader runs in a process of its own without the power to read every file (as root:
without the capabilities that bypass file modes, tests/support/unprivileged.py), so the
test runs in CI, which runs as root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.unprivileged import unprivileged


@pytest.mark.requires("setpriv")
def test_unreadable_file(tmp_path: Path) -> None:
    """Read by a process that may not read it (as root: root without the capabilities
    that bypass file modes)."""
    path = tmp_path / "x.yml"
    path.write_text("name: x\nstrategies:\n  - {name: a, action: x.a}\nverify: {action: x.ok}\n")
    path.chmod(0)
    load = ("import json, sys; from pathlib import Path\n"
            "from engine.runbooks.loader import RunbookError, load_runbook\n"
            "try:\n    load_runbook(Path(sys.argv[1]))\n"
            "except RunbookError as error:\n    print(json.dumps([error.line, error.reason]))")
    done = subprocess.run(unprivileged([sys.executable, "-c", load, str(path)]), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line, reason = json.loads(done.stdout)
    assert line == 1 and "cannot read" in reason
