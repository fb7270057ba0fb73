"""What a running playbook is doing, as it happens, for ``recover`` and ``approve --now``.

The attempt runs in this process, but the orchestration hands the CLI only run records
(``on_run``); a playbook's own progress is in the job events ansible-runner writes into
the run's artifacts dir as they happen (engine.executors.ansible writes each one as it
arrives, for ``recovery show --follow`` too). A watcher thread reads them from there, for
every run this command follows and every run this process is running (``ctx.running``:
a rollout's batch run is one the command never hears of), and hands each task's result
on a host to a display: plain lines (``TASK name  host  outcome``) when stdout is not a
terminal; on a terminal the same lines, above a live status per run (rich): its
current task and its results ok/changed/failed/skipped/unreachable so far.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.alerts.alert import printable
from engine.artifacts import RunArtifacts
from engine.cli.output import out, span

POLL = 0.2          # seconds between two reads of the events of the runs followed
OUTCOMES = ("ok", "changed", "failed", "skipped", "unreachable")
_RESULT_EVENTS = {"runner_on_ok": "ok", "runner_on_failed": "failed",
                  "runner_on_skipped": "skipped", "runner_on_unreachable": "unreachable"}


def task_result(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """(task, host, outcome) of a task's result on a host; None for any other event.
    Names come from playbooks that may template label values: made printable."""
    word = _RESULT_EVENTS.get(str(event.get("event")))
    if word is None:
        return None
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    if word == "ok" and res.get("changed"):
        word = "changed"
    return (printable(str(data.get("task") or "?"), 120, quoted=False),
            printable(str(data.get("host") or "?"), 80, quoted=False), word)


def task_line(task: str, host: str, word: str) -> str:
    return f"TASK {task}  {host}  {word}"


@dataclass
class RunProgress:
    """One run as far as its events tell: what it plays, its current task, its counts."""

    run_id: str
    label: str = ""
    task: str = ""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    started: float = field(default_factory=time.monotonic)
    last: int = 0                 # the highest event counter read
    followed: bool = False        # told by on_run: dropped when on_run says it ended

    def head(self) -> str:
        """Where it plays and its current task."""
        task = f"TASK {self.task}" if self.task else "starting"
        return f"{self.label or self.run_id}  {task}"

    def tail(self) -> str:
        """Its results so far and how long it has run."""
        counts = "  ".join(f"{word} {self.counts[word]}" for word in OUTCOMES)
        return f"{counts}  {span(time.monotonic() - self.started)}"


class Display(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def result(self, task: str, host: str, word: str) -> None: ...
    def status(self, runs: list[RunProgress]) -> None: ...


class PlainDisplay:
    """Lines on stdout, one per task per host, nothing else: for a pipe or a file."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def result(self, task: str, host: str, word: str) -> None:
        out(task_line(task, host, word))

    def status(self, runs: list[RunProgress]) -> None:
        pass


class LiveDisplay:
    """On a terminal: task lines scroll above a status line per running run (rich's Live).
    While it shows, whatever the command prints goes above it, wrapped to the width."""

    STYLES = {"ok": "green", "changed": "yellow", "failed": "bold red",
              "skipped": "cyan", "unreachable": "bold magenta"}

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=sys.stdout)
        self._runs: list[RunProgress] = []
        self._lock = threading.Lock()
        # stderr goes through the display too only when it is the same screen: a
        # redirected stderr keeps its lines.
        self.live = Live(console=self.console, get_renderable=self._render,
                         refresh_per_second=4, transient=True,
                         redirect_stderr=_is_terminal(sys.stderr))

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def result(self, task: str, host: str, word: str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble("TASK ", task, "  ", host, "  ",
                                         (word, self.STYLES.get(word, ""))))

    def status(self, runs: list[RunProgress]) -> None:
        with self._lock:
            self._runs = runs
        self.live.refresh()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        with self._lock:
            runs = [run for run in self._runs if run.label]   # playbook runs only
        lines = []
        for run in runs:     # two lines each, cut at the terminal's edge, never wrapped
            lines.append(Text(f"▶ {run.head()}", style="bold", no_wrap=True,
                              overflow="ellipsis"))
            lines.append(Text(f"  {run.tail()}", no_wrap=True, overflow="ellipsis"))
        return Group(*lines)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def display_for_stdout() -> Display:
    """A live display on a terminal, plain lines anywhere else."""
    return LiveDisplay() if _is_terminal(sys.stdout) else PlainDisplay()


class ProgressWatcher:
    """Reads the events of the runs followed, on a thread of its own, and shows them.

    ``follow`` and ``finish`` come from ``on_run``: ``finish`` reads what is left before
    returning, so a run's last task lines come before the line that says it ended."""

    def __init__(self, artifacts_dir: Path, running: dict[str, Any], display: Display) -> None:
        self.artifacts_dir = Path(artifacts_dir)
        self.running = running              # this process's running steps (ctx.running)
        self.display = display
        self._runs: dict[str, RunProgress] = {}
        self._done: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="recover-progress")

    def start(self) -> None:
        self.display.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for run_id in list(self._runs):
                self._drop(run_id)
        self.display.stop()

    def follow(self, run_id: str) -> None:
        with self._lock:
            self._done.discard(run_id)      # a parked run resumed: its events go on
            self._runs.setdefault(run_id, RunProgress(run_id)).followed = True

    def finish(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._runs:
                self._drop(run_id)

    def _watch(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self._pass()
            except Exception:  # noqa: BLE001 - showing progress must never stop a run
                continue

    def _pass(self) -> None:
        with self._lock:
            for run_id in list(self.running):
                if run_id not in self._runs and run_id not in self._done:
                    self._runs[run_id] = RunProgress(run_id)
            for run_id, run in list(self._runs.items()):
                if not run.followed and run_id not in self.running:
                    self._drop(run_id)          # a batch run has ended: read it to its end
                else:
                    self._read(run)
            self.display.status(list(self._runs.values()))

    def _drop(self, run_id: str) -> None:
        self._read(self._runs.pop(run_id))
        self._done.add(run_id)
        self.display.status(list(self._runs.values()))

    def _read(self, run: RunProgress) -> None:
        artifacts = RunArtifacts(self.artifacts_dir, run.run_id)
        if not run.label:
            run.label = _label(artifacts)
        for event in artifacts.read_events(after=run.last):
            run.last = max(run.last, int(event.get("counter") or 0))
            if event.get("event") == "playbook_on_task_start":
                data = event.get("event_data") or {}
                run.task = printable(str(data.get("task") or "?"), 120, quoted=False)
            elif (found := task_result(event)) is not None:
                run.counts[found[2]] += 1
                self.display.result(*found)


def _label(artifacts: RunArtifacts) -> str:
    """``hosts: playbook`` from run.json, once the executor has written it."""
    ansible = artifacts.read_run_json().get("ansible") or {}
    if not ansible.get("playbook"):
        return ""
    return printable(f"{ansible.get('limit') or '?'}: {ansible['playbook']}", 100,
                     quoted=False)
