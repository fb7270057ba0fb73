"""`recovery recover` shows a playbook's progress as it happens, and tables fit the
terminal: a real ansible-runner playbook (local connection) in a `python -m engine`
process, its stdout read from a pipe line by line, and from a pseudo-terminal of a
given width; listing tables at COLUMNS=60 (tests/support/cli_env.py)."""

from __future__ import annotations

import fcntl
import os
import pty
import queue
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli_env import Env
from tests.support.paths import TEST_PLAYBOOKS

WAIT = 90.0          # bound on every wait for the command's output (ansible on a busy box)
TASK_LINES = [
    "TASK Look around  localhost  ok",
    "TASK Write the mark  localhost  changed",
    "TASK Never on this host  localhost  skipped",
    "TASK Hold until released  localhost  ok",
    "TASK Finish  localhost  ok",
]
HELD = re.compile(r"▶ localhost: steps_then_hold.yml  TASK Hold until released\s+"
                  r"ok 1  changed 1  failed 0  skipped 1  unreachable 0  ")
ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


def _steps_runbook(cli_env: Env) -> Path:
    """A runbook whose step plays steps_then_hold.yml on localhost; the file it waits for."""
    playbook = TEST_PLAYBOOKS / "steps_then_hold.yml"
    (cli_env.root / "playbooks" / playbook.name).write_text(playbook.read_text())
    # Modules run by the Python that runs ansible-playbook (discovery finds a broken one).
    (cli_env.root / "inventory" / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n')
    release = cli_env.work("release")
    cli_env.write_runbook("steps.yml", f"""\
        name: steps
        strategies:
          - name: play
            playbook: {playbook.name}
            extravars: {{mark_file: "{cli_env.work('mark')}", release_file: "{release}"}}
        """)
    return release


def _lines_of(stream) -> queue.Queue:
    """The stream's lines as they come (None at its end), read on a thread of their own."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.slow
def test_a_pipe_gets_each_task_and_host_as_it_happens_in_plain_lines(cli_env: Env) -> None:
    release = _steps_runbook(cli_env)
    proc = cli_env.popen("recover", "-c", "steps")
    try:
        lines, seen = _lines_of(proc.stdout), []
        while "TASK Write the mark  localhost  changed" not in seen:
            line = lines.get(timeout=WAIT)
            assert line is not None, f"ended before the task line: {seen} {proc.stderr.read()}"
            seen.append(line)
        # The playbook holds until the file exists: the line came while it ran.
        assert proc.poll() is None and not release.exists()
        release.touch()
        while (line := lines.get(timeout=WAIT)) is not None:
            seen.append(line)
        assert proc.wait(timeout=WAIT) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)
    assert [line for line in seen if line.startswith("TASK ")] == TASK_LINES
    started = next(i for i, line in enumerate(seen) if " running " in line)
    ended = next(i for i, line in enumerate(seen) if " succeeded " in line)
    assert started < seen.index(TASK_LINES[0]) and seen.index(TASK_LINES[-1]) < ended
    assert not any("\x1b" in line for line in seen), seen


def _pty_run(cli_env: Env, columns: int, *args: str) -> tuple[subprocess.Popen, int]:
    """The command on a pseudo-terminal ``columns`` wide (its size and COLUMNS agree)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**cli_env.env(), "COLUMNS": str(columns), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "--config", str(cli_env.config),
                             *args], cwd=cli_env.root, env=env, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    return proc, master


def _read_until(master: int, buf: bytearray, done, deadline: float) -> bool:
    """Read the terminal into ``buf`` until ``done(text)`` or its end; False at its end."""
    while not done(_screen_text(bytes(buf))):
        assert time.monotonic() < deadline, _screen_text(bytes(buf))
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:          # EIO: every writer has closed the terminal
            return False
        if not chunk:
            return False
        buf.extend(chunk)
    return True


def _screen_text(raw: bytes) -> str:
    return ESCAPES.sub("", raw.decode("utf-8", "replace"))


@pytest.mark.slow
def test_a_terminal_gets_a_live_status_and_no_line_wider_than_it(cli_env: Env) -> None:
    release = _steps_runbook(cli_env)
    proc, master = _pty_run(cli_env, 60, "recover", "-c", "steps")
    buf = bytearray()
    try:
        deadline = time.monotonic() + WAIT
        # While the playbook holds, the live status names its task and the results so far.
        _read_until(master, buf, lambda text: HELD.search(text) is not None, deadline)
        assert proc.poll() is None
        release.touch()
        _read_until(master, buf, lambda text: False, deadline)
        assert proc.wait(timeout=WAIT) == 0, _screen_text(bytes(buf))
    finally:
        os.close(master)
        proc.kill()
        proc.wait(timeout=WAIT)
    raw = bytes(buf).decode("utf-8", "replace")
    text = _screen_text(bytes(buf))
    assert "\x1b[" in raw                                  # rich drew and redrew it
    assert HELD.search(text)
    for line in TASK_LINES:
        assert line in text
    pieces = re.split(r"\r\n|\n|\r", text)
    assert max(len(piece) for piece in pieces) <= 60, [p for p in pieces if len(p) > 60]
    assert "recovered" in text


def test_listing_tables_fit_columns_and_a_pipe_keeps_them_whole(
        cli_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.lifecycle import RunStatus
    from engine.records import RunRecord, new_id

    reason = "task 'Restart the service' failed on localhost: " + "a long cause " * 12
    store = cli_env.store()
    for _ in range(2):
        now = time.time()
        store.add_run(RunRecord(
            id=new_id("run"), component="a-component-with-a-long-name",
            runbook="a-component-with-a-long-name", strategy="restart_everything_slowly",
            target="a-host-with-a-long-name.example.org", status=RunStatus.FAILED,
            trigger="manual", started_at=now - 1, finished_at=now,
            requested_by="cli:root", reason=reason))
    assert cli_env.cli("recover", "-c", "broken").code == 1      # incidents, a degraded mode
    assert cli_env.cli("disable", "-t", "web-1", "--reason", "maintenance " * 8).code == 0
    monkeypatch.setenv("COLUMNS", "60")
    for command in (["history"], ["incidents"], ["runbooks"], ["degraded"], ["pending"]):
        r = cli_env.cli(*command)
        assert r.code == 0, (command, r.err)
        lines = r.out.splitlines()
        assert lines and max(len(line) for line in lines) <= 60, (command, r.out)
    status = cli_env.cli("status").out        # its tables; its other lines are not tables
    tables = status[status.index("components"):status.index("degraded modes")]
    assert max(len(line) for line in tables.splitlines()) <= 60, tables
    # Too many columns for 60 even with whole headers: a block per run, values whole.
    history = cli_env.cli("history").out
    assert "COMPONENT  a-component-with-a-long-name" in history.splitlines()
    assert "TARGET     a-host-with-a-long-name.example.org" in history.splitlines()
    assert "REASON     task 'Restart the service' failed on" in history
    # Wide enough for the headers: a table, the reason cut first, long values wrapped.
    monkeypatch.setenv("COLUMNS", "100")
    history = cli_env.cli("history").out.splitlines()
    assert max(len(line) for line in history) <= 100, history
    assert history[0].split()[:3] == ["STARTED", "RUN", "COMPONENT"]
    assert history[1].endswith("...") and "a-component-with-a-long-name" not in history
    monkeypatch.delenv("COLUMNS")
    piped = cli_env.run("history")                      # not a terminal: as recorded
    assert reason.strip() in piped.out and max(map(len, piped.out.splitlines())) > 60
    assert "a-component-with-a-long-name" in piped.out
