"""docs/tutorial.md, run as written: its ```` ```sh tutorial ```` blocks in order (each
with ``bash -euo pipefail``, from a clone whose ``.venv`` is this interpreter's, with
``HOME`` a throwaway folder), ```` ```sh tutorial-background ```` ones left running (in a
second terminal, for a reader), and ```` ```sh tutorial-cleanup ```` ones at the end,
whatever happened. The document is read here, never copied, so the tutorial cannot
drift from the product: a real Redis under supervisord is killed, Prometheus's RedisDown
fires through a real Alertmanager into ``recovery serve``, and the runbook restarts it.

The set-up block (`make install system-deps`) is plain ```` ```sh ````, not run: ``make
test`` has just done both (its prerequisites), and here it would install into the shared
virtualenv. The tutorial's ports are fixed and documented; one already taken fails the
test with its name (never a skip: the reader would meet the same clash).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.paths import ROOT

pytestmark = pytest.mark.requires("redis-server", "prometheus", "alertmanager", "amtool",
                                  "redis-exporter", "curl", "supervisord")

TUTORIAL = ROOT / "docs" / "tutorial.md"
PORTS = {16380: "Redis", 19121: "redis_exporter", 19090: "Prometheus",
         19093: "Alertmanager", 19797: "recovery serve"}
BLOCK_TIMEOUT = 150.0     # s: a block's own waits are bounded by `timeout` below this
STOP_TIMEOUT = 20.0       # s: a background process given SIGTERM, then SIGKILL
_BLOCK = re.compile(r"^```sh (tutorial(?:-background|-cleanup)?)\n(.*?)^```$", re.M | re.S)
_SKIPPED = {".git", ".venv", "var", ".pytest_cache", ".ruff_cache", ".coverage",
            "test-artifacts"}


@dataclass(frozen=True)
class Block:
    kind: str      # tutorial | tutorial-background | tutorial-cleanup
    text: str
    line: int      # where it starts in the document, for the failure message


def blocks(document: str) -> list[Block]:
    return [Block(m.group(1), m.group(2), document.count("\n", 0, m.start()) + 1)
            for m in _BLOCK.finditer(document)]


def busy(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def clone(into: Path) -> Path:
    """The checkout as a reader has it after `make install`: its files (linked) and a
    `.venv` that is the virtualenv running these tests."""
    into.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in _SKIPPED:
            (into / entry.name).symlink_to(entry)
    (into / ".venv").symlink_to(Path(sys.prefix))
    return into


class Reader:
    """A newcomer's shell: the clone as working folder, a throwaway HOME, no RECOVERY_*
    setting of the test session."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.clone = clone(tmp_path / "clone")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
        self.env["HOME"] = str(self.home)
        self.background: list[tuple[subprocess.Popen, Path]] = []

    def run(self, block: Block, timeout: float = BLOCK_TIMEOUT) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["bash", "-euo", "pipefail", "-c", block.text],
                                  cwd=self.clone, env=self.env, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"docs/tutorial.md:{block.line}: no end within {timeout:g}s\n"
                        f"{exc.stdout}\n{exc.stderr}\n{self.diagnostics()}")

    def start(self, block: Block) -> None:
        log = self.clone.parent / f"background-{len(self.background)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(["bash", "-c", block.text], cwd=self.clone, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.background.append((proc, log))

    def stop_background(self) -> None:
        for proc, _ in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)

    def stop_supervisord(self) -> None:
        """What the clean-up block did not stop (it failed, or never ran): supervisord
        stops its programs on SIGTERM."""
        pidfile = self.home / "recovery-tutorial" / "supervisord.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass

    def recovery_json(self, *args: str) -> list[dict]:
        done = subprocess.run([str(self.clone / ".venv" / "bin" / "recovery"), "--config",
                               str(self.home / "recovery-tutorial" / "recovery.yml"), *args,
                               "--json"], cwd=self.clone, env=self.env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def diagnostics(self) -> str:
        parts = [f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
                 for _, log in self.background if log.exists()]
        state = self.home / "recovery-tutorial"
        for name in ("supervisord.log", "alertmanager.yml"):
            path = state / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    taken = [f"{port} ({what})" for port, what in PORTS.items() if busy(port)]
    assert not taken, (f"the tutorial's ports are taken on this machine: {', '.join(taken)}; "
                       "stop what listens there (ss -ltnp) and run again")
    reader = Reader(tmp_path)
    try:
        yield reader
    finally:
        reader.stop_background()
        reader.stop_supervisord()


def test_the_tutorial_documents_its_ports_and_marks_its_blocks():
    text = TUTORIAL.read_text()
    for port, what in PORTS.items():
        assert str(port) in text, f"docs/tutorial.md does not name {what}'s port {port}"
    kinds = [b.kind for b in blocks(text)]
    assert kinds.count("tutorial-background") == 1 and kinds[-1] == "tutorial-cleanup"


def test_the_tutorial_recovers_a_killed_redis_as_written(reader):
    steps = blocks(TUTORIAL.read_text())
    cleanup = [b for b in steps if b.kind == "tutorial-cleanup"]
    try:
        for block in steps:
            if block.kind == "tutorial-background":
                reader.start(block)
            elif block.kind == "tutorial":
                done = reader.run(block)
                assert done.returncode == 0, (
                    f"docs/tutorial.md:{block.line}: exit {done.returncode}\n{block.text}\n"
                    f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n"
                    f"{reader.diagnostics()}")

        # What the reader is told to see: Redis answers again, under supervisord, and the
        # history holds the verified restart of the alerted host.
        assert redis.Redis(port=16380, socket_timeout=5).ping()
        runs = reader.recovery_json("history")
        assert [(r["runbook"], r["strategy"], r["target"], r["status"]) for r in runs] == [
            ("redis", "restart_service", "tutorial-redis", "succeeded")], runs
        incidents = reader.recovery_json("incidents")
        # recovered, or resolved when the alert's resolve came in during the verify
        assert [(i["runbook"], i["target"]) for i in incidents] == [
            ("redis", "tutorial-redis")], incidents
        assert incidents[0]["state"] in ("recovered", "resolved"), incidents
    finally:
        for block in cleanup:
            reader.run(block, timeout=60)
