"""An engine home for the system runbook's tests and bench: the shipped runbook and
playbooks, copied as they ship (only the verify timings shortened and the cooldown
widened, so a test does not wait 15 s per verify), and an inventory whose ``localhost``
carries the host vars a test gives (cleanup roots, the program to restart...)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import ROOT

MIB = 1 << 20
FAST_VERIFY = {"initial_delay": "0s", "interval": "0.2s", "deadline": "30s"}


def install_system_runbook(root: Path, host_vars: dict[str, Any],
                           stable_for: str = "0.5s") -> None:
    """Into an ``EngineEnv`` folder (or any config folder with runbooks/, playbooks/,
    inventory/): the shipped system runbook and its playbooks, and ``localhost``."""
    book = yaml.safe_load((ROOT / "runbooks" / "system.yml").read_text())
    book["verify"].update(FAST_VERIFY, stable_for=stable_for)
    for strategy in book["strategies"]:
        if "verify" in strategy:
            strategy["verify"].update(FAST_VERIFY, stable_for=stable_for)
    book["cooldown"] = {"max_attempts": 50, "window": "1h", "after_failure": "0s"}
    (root / "runbooks" / "system.yml").write_text(yaml.safe_dump(book, sort_keys=False))
    for name in ("disk_cleanup.yml", "process_restart.yml"):
        shutil.copy(ROOT / "playbooks" / name, root / "playbooks" / name)
    host = {"ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}", **host_vars}
    (root / "inventory" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {"localhost": host}}}, sort_keys=False))


@dataclass
class Cli:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def recovery(env: dict[str, str], *args: str, timeout: float = 120) -> Cli:
    """``python -m engine ARGS`` as the operator runs it (a subprocess, its exit code)."""
    done = subprocess.run([sys.executable, "-m", "engine", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return Cli(done.returncode, done.stdout, done.stderr)


def runs_of(env: dict[str, str], strategy: str) -> list[dict[str, Any]]:
    """The runs of one system strategy in the store of ``env``'s home, oldest first."""
    from engine.store.sqlite import SQLiteStore

    store = SQLiteStore(home_of(env) / "recovery.db")
    try:
        rows = store.query_runs(component="system", limit=None)
    finally:
        store.close()
    return sorted((r.to_dict() for r in rows if r.strategy == strategy),
                  key=lambda r: r["started_at"])


def artifacts_text(home: Path, run_id: str) -> str:
    """A run's stdout and job events, as one text to search."""
    folder = home / "artifacts" / run_id
    parts = [p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()]
    return "\n".join(parts)


def home_of(env: dict[str, str]) -> Path:
    """RECOVERY_HOME of a subprocess with ``env`` (``home: var`` beside the config)."""
    config = Path(env["RECOVERY_CONFIG"])
    return Path(env.get("RECOVERY_HOME") or config.parent / "var")
