"""One run, one directory: ansible-runner's artifacts layout is the audit record.

``RECOVERY_HOME/artifacts/<run_id>/`` holds ``status``, ``rc``, ``stdout``,
``job_events/<counter>-<uuid>.json`` (as ansible-runner writes them) and the
engine's own ``run.json``. Python actions write the same layout, so one reader
serves history, ``recovery show``, the API and metrics. Every write goes through
the ``Redactor``; nothing here ever holds a secret. Files are created 0600 and folders
0700 whatever the umask: a run's record (labels, output, host names) is for whoever
runs the engine, not for every user of the machine.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.security.redaction import Redactor


def _write_private(path: Path, text: str, flags: int) -> None:
    """Write ``text`` to ``path`` opened with ``flags``, the file 0600 (also one left
    with another mode by an older version)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        if flags & os.O_EXCL == 0:
            os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def _write_new(path: Path, text: str) -> None:
    """A new file, written once: an event is never rewritten, so no rename is needed;
    a reader that finds it half-written stops there and reads it on its next pass."""
    _write_private(path, text, os.O_EXCL)


def _atomic_write(path: Path, text: str) -> None:
    """``path`` replaced whole, or left as it was: a write that fails (a full disk)
    leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _write_private(tmp, text, os.O_TRUNC)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _append(path: Path, text: str) -> None:
    _write_private(path, text, os.O_APPEND)


class RunArtifacts:
    """Writer and reader of one run's artifacts directory."""

    def __init__(self, root: Path, run_id: str, redactor: Redactor | None = None) -> None:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"invalid run id {run_id!r}")
        self.run_id = run_id
        self.path = Path(root) / run_id
        self.redactor = redactor or Redactor()
        self._lock = threading.Lock()
        self._counter = 0
        self._record: dict[str, Any] | None = None   # run.json as last written by us

    @property
    def counter(self) -> int:
        """The highest event counter written so far (after ``create()``, as found on disk)."""
        return self._counter

    # -- writing -----------------------------------------------------------------
    def create(self) -> RunArtifacts:
        events = self.path / "job_events"
        try:
            self.path.mkdir(parents=True, mode=0o700)
        except FileExistsError:  # a run resumed (approved, deferred): go on where it was
            events.mkdir(exist_ok=True, mode=0o700)
            existing = list(events.glob("*.json"))
            self._counter = max((_counter_of(p) for p in existing), default=0)
            return self
        events.mkdir(mode=0o700)
        return self

    def write_run_json(self, record: dict[str, Any]) -> None:
        """Merge ``record`` into run.json (the engine's own account of the run).

        Written whole and atomically each time (readers never see half of it); what we
        wrote last is kept in memory, so a merge does not read the file back."""
        with self._lock:
            if self._record is None:
                self._record = self.read_run_json()
            self._record.update(self.redactor.data(record))
            _atomic_write(self.path / "run.json",
                          json.dumps(self._record, indent=2, default=str))

    def event(self, event: str, stdout: str = "", **event_data: Any) -> dict[str, Any]:
        """Append one job event (and its stdout line) the way ansible-runner does."""
        with self._lock:
            self._counter += 1
            payload = {
                "uuid": str(uuid.uuid4()),
                "counter": self._counter,
                "stdout": self.redactor.text(stdout),
                "runner_ident": self.run_id,
                "event": event,
                "pid": os.getpid(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                + f".{int(time.time() * 1e6) % 1_000_000:06d}",
                "event_data": self.redactor.data(event_data),
            }
            name = f"{payload['counter']}-{payload['uuid']}.json"
            _write_new(self.path / "job_events" / name, json.dumps(payload, default=str))
            if stdout:
                _append(self.path / "stdout", payload["stdout"].rstrip("\n") + "\n")
            return payload

    def write_raw_event(self, payload: dict[str, Any]) -> None:
        """Store an event produced by ansible-runner itself, redacted, under its own name."""
        with self._lock:
            clean = self.redactor.data(payload)
            counter = int(clean.get("counter") or self._counter + 1)
            self._counter = max(self._counter, counter)
            name = f"{counter}-{clean.get('uuid') or uuid.uuid4()}.json"
            _write_new(self.path / "job_events" / name, json.dumps(clean, default=str))
            if clean.get("stdout"):
                _append(self.path / "stdout", str(clean["stdout"]).rstrip("\n") + "\n")

    def set_status(self, status: str, rc: int | None = None) -> None:
        _atomic_write(self.path / "status", status)
        if rc is not None:
            _atomic_write(self.path / "rc", str(rc))

    # -- reading -----------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "run.json").exists() or (self.path / "status").exists()

    def read_run_json(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "run.json").read_text())
        except FileNotFoundError:
            return {}

    def read_status(self) -> str | None:
        try:
            return (self.path / "status").read_text().strip()
        except FileNotFoundError:
            return None

    def read_rc(self) -> int | None:
        try:
            return int((self.path / "rc").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def read_stdout(self) -> str:
        try:
            return (self.path / "stdout").read_text()
        except FileNotFoundError:
            return ""

    def read_events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Events in counter order, those with a counter above ``after`` only."""
        folder = self.path / "job_events"
        if not folder.is_dir():
            return
        files = sorted(
            (p for p in folder.glob("*.json") if _counter_of(p) > after), key=_counter_of
        )
        for p in files:
            try:
                yield json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                if _recent(p):
                    return  # being written by a live run: read it (and what follows) next pass
                continue    # damaged long ago: show the rest


    def account(self, *, max_events: int = 500, stdout_tail: int = 16_384,
                event_text: int = 2_000) -> dict[str, Any]:
        """The run in short, to be kept in the store for processes that cannot read this
        directory (another replica's): run.json, status, rc, the events (each with its
        stdout cut to ``event_text`` characters and its ``event_data``'s scalar values
        only; the last ``max_events`` of them) and the last ``stdout_tail`` characters
        of stdout, with how much was left out of each. Read from what is already
        redacted on disk."""
        events = list(self.read_events())
        kept = [_event_in_short(e, event_text) for e in events[-max_events:]]
        stdout = self.read_stdout()
        return {"run_json": self.read_run_json(), "status": self.read_status(),
                "rc": self.read_rc(), "events": kept,
                "events_left_out": len(events) - len(kept),
                "stdout": stdout[-stdout_tail:] if stdout_tail else "",
                "stdout_left_out": max(0, len(stdout) - stdout_tail)}


def _event_in_short(event: dict[str, Any], text: int) -> dict[str, Any]:
    """An event with its stdout cut and only the scalar values of its event_data (host,
    task, ok, summary...): nested results can be large."""
    short = {k: v for k, v in event.items() if k not in ("stdout", "event_data")}
    stdout = str(event.get("stdout") or "")
    short["stdout"] = stdout if len(stdout) <= text else stdout[:text] + " [...]"
    data = event.get("event_data") or {}
    short["event_data"] = {k: (v[:text] if isinstance(v, str) else v)
                           for k, v in data.items()
                           if isinstance(v, str | int | float | bool) or v is None} \
        if isinstance(data, dict) else {}
    return short


def runner_event(event: dict[str, Any], base: int) -> dict[str, Any]:
    """An event of ansible-runner's as a run's record keeps it: numbered after the
    engine's own ``base`` events (runner counts from 1), the pty's ``\\r\\n`` as ``\\n``."""
    payload = dict(event)
    payload["counter"] = base + int(event.get("counter") or 0)
    if isinstance(payload.get("stdout"), str):
        payload["stdout"] = payload["stdout"].replace("\r\n", "\n")
    return payload


def _recent(path: Path, seconds: float = 5.0) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def _counter_of(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[0])
    except ValueError:
        return 0
