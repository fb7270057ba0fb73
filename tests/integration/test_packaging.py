"""The package as pip builds it from this tree: every module and the files the code
reads at run time (the runbook schema, the console's templates and stylesheet), built
without setuptools' warnings (a newcomer's first `make run` printed eighty lines of
"Package would be ignored" for the console's folders)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import ROOT

pytestmark = pytest.mark.slow


def test_the_wheel_carries_the_consoles_files_and_builds_without_warnings(tmp_path: Path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "test-artifacts", "build", "*.egg-info"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"),
         str(tree)], capture_output=True, text=True, timeout=280)
    assert built.returncode == 0, built.stderr[-3000:]
    said = built.stdout + built.stderr
    assert "would be ignored" not in said and "absent from the `packages`" not in said, said
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"engine/runbooks/schema.json", "webhook/console/templates/now.html",
            "webhook/console/templates/login.html",
            "webhook/console/static/console.css"} <= names
    assert not [n for n in names if "__pycache__" in n]
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "webhook" / "console").rglob("*")
               if p.suffix in (".html", ".css")}
    assert shipped <= names
