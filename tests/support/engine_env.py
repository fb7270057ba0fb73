"""A throwaway engine home for a test: its own recovery.yml, runbooks, playbooks and
inventory in the test's temporary folder (the ``engine_env`` fixture)."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

from tests.support.paths import ROOT

INVENTORY = """
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
    cache-1:
      ansible_host: 192.0.2.10
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
      instance_aliases: ["cache-1.example:9121"]
    cache-2:
      ansible_host: 192.0.2.11
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""


def local_inventory(hosts: list[str]) -> str:
    """An inventory of ``localhost`` and ``hosts``, every one reached locally (a playbook
    run on them runs here)."""
    lines = ["all:", "  hosts:"]
    for host in ["localhost", *hosts]:
        lines += [f"    {host}:", "      ansible_connection: local",
                  '      ansible_python_interpreter: "{{ ansible_playbook_python }}"']
    return "\n".join(lines) + "\n"


class EngineEnv:
    """A config folder: ``runbook(name, yaml)`` adds a runbook, ``context()`` builds one."""

    def __init__(self, root: Path, state_url: str | None = None) -> None:
        self.root = root
        self.state_url = state_url      # None: the home's own SQLite file
        (root / "runbooks").mkdir()
        (root / "playbooks").mkdir()
        (root / "inventory").mkdir()
        (root / "inventory" / "hosts.yml").write_text(INVENTORY)
        self.config_path = root / "recovery.yml"
        self.trace = root / "trace.log"
        self.write_config()

    def write_config(self, lease: str = "3s", threads: int = 2, poll_interval: str = "0.2s",
                     **extra: str) -> None:
        lines = ["home: var", "runbooks: runbooks", "playbooks: playbooks",
                 "inventory: inventory", "action_modules: [tests.support.engine_actions]",
                 f"lock: {{lease: {lease}}}",
                 f"workers: {{poll_interval: {poll_interval}, threads: {threads}}}",
                 "degraded_modes:", "  test_down: {capabilities: {feature: false}}"]
        if self.state_url is not None:
            lines.append(f"state_url: {json.dumps(self.state_url)}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def runbook(self, name: str, body: str) -> Path:
        """A runbook; without a ``verify:`` of its own it gets one that always passes
        (the loader requires every step to be verified)."""
        body = textwrap.dedent(body)
        if not re.search(r"^verify:", body, re.M):
            body += "verify: {action: test.ok, interval: 0.05s, deadline: 2s}\n"
        path = self.root / "runbooks" / f"{name}.yml"
        path.write_text(f"name: {name}\n" + body)
        return path

    def playbook(self, name: str, body: str) -> Path:
        path = self.root / "playbooks" / name
        path.write_text(textwrap.dedent(body))
        return path

    def context(self):
        from engine.config import load_config
        from engine.context import EngineContext

        return EngineContext(load_config(self.config_path))

    def traced(self) -> list[str]:
        return self.trace.read_text().splitlines() if self.trace.exists() else []

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that uses this engine home."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT)
        env["RECOVERY_CONFIG"] = str(self.config_path)
        return env
