"""A configuration of its own for each CLI test (the ``cli_env`` fixture): recovery.yml,
runbooks and inventory in the test's temporary folder, runbooks that use the
deterministic actions of tests/support/engine_actions.py, and ways to run ``recovery``
against it: in this process through ``engine.cli.main`` (fast) or as ``python -m
engine`` (exit codes of the real entry point, signals, a lock held by another
process)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main
from tests.support.paths import ROOT

INVENTORY = """\
all:
  hosts:
    localhost:
      ansible_connection: local
  children:
    web:
      hosts:
        web-1: {ansible_host: 192.0.2.1, instance_aliases: ["web-1:9100"]}
        web-2: {ansible_host: 192.0.2.2}
"""

RUNBOOKS = {
    # fails, then succeeds: recovered by its second strategy
    "svc.yml": """\
        name: svc
        strategies:
          - name: first
            action: test.fail
          - name: second
            action: test.ok
        cooldown: {max_attempts: 2, window: 1h, after_failure: 0s}
        """,
    # every strategy fails: exhausted, degraded mode on, failure cooldown
    "broken.yml": """\
        name: broken
        strategies:
          - name: one
            action: test.fail
          - name: two
            action: test.fail
        degraded_mode: {name: broken_down}
        """,
    # a destructive step: parks for approval, then touches a file that verify checks
    "guarded.yml": """\
        name: guarded
        strategies:
          - name: touch
            action: test.touch
            with: {path: "{home}/touched"}
            approval: required
        verify: {action: test.file_exists, with: {path: "{home}/touched"}, interval: 0.1s,
                 deadline: 5s}
        """,
    # its only step degrades on purpose: the incident ends `degraded`, not recovered
    "shed.yml": """\
        name: shed
        strategies:
          - name: graceful_degradation
            action: test.ok
            degrades: true
        degraded_mode: {name: broken_down}
        """,
    # runs until canceled (30 s at most); says when it started
    "sleepy.yml": """\
        name: sleepy
        strategies:
          - name: nap
            action: test.sleep
            with: {seconds: 30, started: "{home}/nap-started"}
          - name: never
            action: test.ok
        """,
    # holds the target's lock until a file appears
    "holder.yml": """\
        name: holder
        strategies:
          - name: hold
            action: test.wait_for_file
            with: {release: "{home}/release", started: "{home}/hold-started", seconds: 30}
        """,
}

CONFIG = """\
home: var
runbooks: rb
playbooks: playbooks
inventory: inventory/hosts.yml
action_modules: [tests.support.engine_actions]
lock: {{lease: 1s}}
degraded_modes:
  broken_down:
    description: the broken service is down
    capabilities: {{reads: true, writes: false}}
{extra}"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Env:
    """One configuration in tmp_path and ways to run `recovery` against it."""

    def __init__(self, root: Path, state_url: str | None = None) -> None:
        self.root = root
        self.state_url = state_url      # None: the home's own SQLite file
        self.config = root / "recovery.yml"
        self.rb = root / "rb"
        self.home = root / "var"
        for folder in ("rb", "playbooks", "inventory", "work"):
            (root / folder).mkdir()
        (root / "inventory" / "hosts.yml").write_text(INVENTORY)
        (root / "playbooks" / "noop.yml").write_text(
            "- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
        for name, text in RUNBOOKS.items():
            self.write_runbook(name, text)
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        if self.state_url is not None:
            extra = f"state_url: {json.dumps(self.state_url)}\n{extra}"
        self.config.write_text(CONFIG.format(extra=extra))

    def write_runbook(self, name: str, text: str) -> Path:
        """A runbook; without a ``verify:`` of its own it gets one that always passes
        (the loader requires every step to be verified)."""
        text = textwrap.dedent(text)
        if not re.search(r"^verify:", text, re.M):
            text += "verify: {action: test.ok, interval: 0.05s, deadline: 2s}\n"
        path = self.rb / name
        path.write_text(text.replace("{home}", str(self.root / "work")))
        return path

    def work(self, name: str) -> Path:
        return self.root / "work" / name

    def cli(self, *args: str) -> Result:
        """In-process: ``engine.cli.main`` with stdout and stderr captured."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), *args])
        return Result(code, out.getvalue(), err.getvalue())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RECOVERY_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                          env.get("PYTHONPATH")]))
        return env

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "engine", "--config", str(self.config),
                                 *args], cwd=self.root, env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str, timeout: float = 60) -> Result:
        proc = self.popen(*args)
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)

    def store(self):
        """The store the commands use, opened anew (the caller closes it)."""
        from engine.store import open_store

        return open_store(self.state_url or f"sqlite:///{self.home / 'recovery.db'}")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_url: str | None) -> Env:
    """The configuration; its state on the test's backend (``both_backends``, else SQLite)."""
    for name in ("RECOVERY_CONFIG", "RECOVERY_HOME", "RECOVERY_STATE_URL",
                 "RECOVERY_OPERATOR", "RECOVERY_REPLICA"):
        monkeypatch.delenv(name, raising=False)
    return Env(tmp_path, state_url=state_url)


def wait_for_file(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)
