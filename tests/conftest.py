"""Shared fixtures: a throwaway engine home with its own runbooks and inventory."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
if str(ROOT) not in sys.path:  # `tests.engine_actions` is loaded by name
    sys.path.insert(0, str(ROOT))

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


class EngineEnv:
    """A config folder: ``runbook(name, yaml)`` adds a runbook, ``context()`` builds one."""

    def __init__(self, root: Path) -> None:
        self.root = root
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
                 "inventory: inventory", "action_modules: [tests.engine_actions]",
                 f"lock: {{lease: {lease}}}",
                 f"workers: {{poll_interval: {poll_interval}, threads: {threads}}}",
                 "degraded_modes:", "  test_down: {capabilities: {feature: false}}"]
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


@pytest.fixture
def engine_env(tmp_path: Path) -> EngineEnv:
    return EngineEnv(tmp_path)


@pytest.fixture
def serve(engine_env: EngineEnv, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``serve(*args)``: a ``recovery serve`` (tests/service.py) on ``engine_env``, not
    started yet; everything it started is killed at the end, even when the test fails."""
    from tests.service import GRACE, Served, free_port

    started: list[Served] = []
    engine_env.write_config(webhook=f"{{workers: 1, http_workers: 1, shutdown_grace: {GRACE}s, "
                            "graceful_timeout: 2s}")

    def make(*args: str) -> Served:
        served = Served(engine_env, tmp_path / "home", free_port(), *args)
        started.append(served)
        return served

    yield make
    for served in started:
        served.kill_all()


@pytest.fixture
def run_incident() -> Callable:
    """Open an incident for a request and carry its attempt in this thread."""
    from engine.orchestration.attempt import advance
    from engine.orchestration.triggers import TriggerRequest, open_incident

    def go(ctx, runbook: str, target: str = "localhost", **kw):
        opened = open_incident(ctx, TriggerRequest(runbook=runbook, target=target, **kw))
        if opened.incident is None:
            return opened
        if opened.claimed:
            advance(ctx, opened.incident.id)
        opened.incident = ctx.store.get_incident(opened.incident.id)
        return opened

    return go
