"""A playbook run's private data dir: where it lives, whose it is, and who removes it
when the process that owned it died.

ansible-runner's private data dir of a run holds what must not outlive the run: the
extravars file with its secrets in clear text, runner's own unredacted stdout and job
events, and its ``command`` file with the child's whole environment. The executor
deletes it when the run ends, whatever the way it ends; a process killed outright
(SIGKILL, the OOM killer) cannot. So:

- each dir is ``recovery-<run id>-<pid>``: its run and the process that owns it, made
  0700 in one folder per machine (``private_root()``: ``RECOVERY_PRIVATE_ROOT`` when set,
  else ``/dev/shm`` when usable, so the secrets stay in memory, else the tmp dir), with
  an ``owner.json`` that names the run's artifacts directory;
- every engine process calls ``sweep()``: the CLI at every command, an application at
  start-up, the service's parent at start-up and every worker periodically (they share
  the store, and any of them may have died in the middle of a run). A dir whose owner is
  dead (``engine.liveness``: its pid gone, or reused by a process started after the dir
  was made) has the run's leftover processes killed (they carry the dir's name in
  ``RUN_MARKER``), then what the interrupted run's record lacks copied into its
  artifacts (runner's job events not copied yet, through a ``Redactor`` that also knows
  the dir's own extravars and the child's environment) with one event that says so, and
  is removed;
- the same sweep removes Ansible's per-task temp dirs left by a dead process on this
  machine (``ansible-tmp-<time>-<pid>-<n>`` in the remote_tmp of local connections,
  ``~/.ansible/tmp`` or ``ANSIBLE_REMOTE_TEMP``): a running module's arguments, secrets
  among them, are written there.

Only folders of this user are touched, and a dir is locked (``flock``) while it is swept,
so two sweepers never copy the same events twice.

What it cannot do: clean a remote host's remote_tmp (a task killed there leaves its
module file on that host), a remote_tmp set in ansible.cfg or the inventory, or a private
dir under a ``tmp_root`` given to the executor explicitly; an event runner had not
finished writing (``*-partial.json``) is removed with the dir, not copied.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import psutil
import yaml

from engine.artifacts import RunArtifacts, runner_event
from engine.liveness import alive_since
from engine.security.redaction import Redactor

log = logging.getLogger(__name__)

PREFIX = "recovery-"
OWNER_FILE = "owner.json"
# Every process of a run inherits this variable (the value: its private dir's name), so
# a cancel, a timeout or the sweep after its owner died can find them all: ansible-core
# 2.19 workers call setsid(), so runner's killpg() of ansible-playbook's process group
# leaves the running task (and the pty it holds open) behind.
RUN_MARKER = "RECOVERY_RUN_MARKER"
SWEEP_EVERY = 10.0          # seconds between the periodic sweeps of a worker
PRIVATE_ROOT_ENV = "RECOVERY_PRIVATE_ROOT"   # where private data dirs are made and swept
_IDENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ANSIBLE_TMP = re.compile(r"^ansible-tmp-(\d+(?:\.\d+)?)-(\d+)-\d+$")
_ANSIBLE_TMP_DEFAULT = "~/.ansible/tmp"


def default_tmp_root() -> Path | None:
    """``/dev/shm`` when usable (the extravars file with secrets stays in memory)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def private_root() -> Path:
    """Where the executor makes private data dirs and the sweep looks for them, unless
    told otherwise: ``RECOVERY_PRIVATE_ROOT`` when set, else ``default_tmp_root()``, else
    the tmp dir. An environment variable, not a setting: every process that shares a
    store must make and sweep them in the same folder, and the service's processes, the
    CLI and applications all inherit the environment they are started in."""
    given = os.environ.get(PRIVATE_ROOT_ENV)
    if given:
        return Path(given).absolute()
    return default_tmp_root() or Path(tempfile.gettempdir())


def make_private_dir(root: Path | None, ident: str, artifacts: Path | None = None) -> Path:
    """A new dir ``recovery-<ident>-<our pid>`` (0700) under ``root`` (default
    ``private_root()``); ``artifacts``: the run's artifacts directory, where a sweep
    copies what the run's record lacks if this process dies. Never reuses a dir."""
    if not _IDENT.match(ident):
        raise ValueError(f"invalid private dir name {ident!r}")
    root = root if root is not None else private_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = root / f"{PREFIX}{ident}-{os.getpid()}"
    path.mkdir(mode=0o700)
    if artifacts is not None:
        fd = os.open(path / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"run_id": ident, "artifacts": str(artifacts)}, fh)
    return path


def owner_pid(path: Path) -> int | None:
    """The pid in a private dir's name, None if the name is not one of ours."""
    if not path.name.startswith(PREFIX):
        return None
    ident, sep, pid = path.name[len(PREFIX):].rpartition("-")
    if not sep or not pid.isdigit() or not _IDENT.match(ident):
        return None
    return int(pid)


def earlier_version_dirs(root: Path | None = None) -> list[Path]:
    """This user's dirs under ``root`` (default ``private_root()``) named as versions
    before this one named private data dirs (``recovery-<run id>-<8 random
    characters>``, no pid): the sweep never removes them (whose they are cannot be told),
    and they may hold a run's secrets in clear. ``recovery serve`` names them at start."""
    root = root if root is not None else private_root()
    return sorted(path for path, _ in _own_dirs(root)
                  if path.name.startswith(PREFIX) and owner_pid(path) is None)


def sweep(root: Path | None = None, *, redactor: Redactor | None = None) -> list[Path]:
    """Remove the private data dirs under ``root`` (default ``private_root()``) and
    Ansible's temp dirs whose process is dead, after copying what their runs' records
    lack (redacted with ``redactor`` and each dir's own secrets). What was removed."""
    root = root if root is not None else private_root()
    redactor = redactor if redactor is not None else Redactor.from_environment()
    removed = []
    for path, made_at in _own_dirs(root):
        pid = owner_pid(path)
        # The dir's mtime: when it was made, or an entry last added by its live owner.
        if pid is None or alive_since(pid, made_at):
            continue
        if _sweep_private_dir(path, pid, redactor):
            removed.append(path)
    return removed + sweep_ansible_tmp()


def sweep_ansible_tmp() -> list[Path]:
    """Ansible's per-task temp dirs whose process is dead (each name carries the time it
    was made and the pid that made it), in the remote_tmp of local connections."""
    removed = []
    for root in _ansible_tmp_roots():
        for path, _mtime in _own_dirs(root):
            found = _ANSIBLE_TMP.match(path.name)
            if found is None or alive_since(int(found.group(2)), float(found.group(1))):
                continue
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                log.info("removed %s, left by Ansible process %s (gone): a module's "
                         "files, its arguments among them", path, found.group(2))
                removed.append(path)
    return removed


def _ansible_tmp_roots() -> list[Path]:
    roots = [_ANSIBLE_TMP_DEFAULT]
    roots += [os.environ[k] for k in ("ANSIBLE_REMOTE_TEMP", "ANSIBLE_REMOTE_TMP")
              if os.environ.get(k)]
    paths = {Path(os.path.expandvars(os.path.expanduser(r))) for r in roots}
    return sorted(p for p in paths if p.is_absolute())


def _own_dirs(root: Path) -> list[tuple[Path, float]]:
    """The directories in ``root`` that belong to this user (no symlinks), each with its
    mtime."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    mine = []
    for path in entries:
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            mine.append((path, st.st_mtime))
    return mine


def _sweep_private_dir(path: Path, pid: int, redactor: Redactor) -> bool:
    """Kill the dead owner's leftover processes, copy what its run's record lacks, remove
    the dir; False when another sweeper has it (or had it: gone or replaced)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                return False
        except OSError:
            return False
        killed = kill_marked_processes(RUN_MARKER, path.name)
        run_id, copied = _salvage(path, pid, redactor)
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
    if path.exists():
        log.error("could not remove %s, the private data dir left by process %d: remove "
                  "it by hand (it may hold secrets)", path, pid)
        return False
    log.warning("removed %s, the private data dir of %s left by process %d (gone)%s%s",
                path, f"run {run_id}" if run_id else "a playbook check", pid,
                f"; {killed} leftover process(es) of the run killed" if killed else "",
                f"; {copied} event(s) copied to the run's record first" if copied else "")
    return True


def _salvage(path: Path, pid: int, redactor: Redactor) -> tuple[str | None, int]:
    """Into the run's artifacts: runner's job events it does not have yet (redacted),
    then one event that says the run's process died and the dir was removed. Returns
    (run id, events copied); (None, 0) when the dir names no run record."""
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
        run_id, folder = str(owner["run_id"]), Path(owner["artifacts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, 0
    if folder.name != run_id or not folder.is_dir():
        return run_id, 0
    runner_dir = path / "artifacts" / run_id
    known = redactor.copy()
    known.add_from_mapping(_read_extravars(path / "extravars.yml"))
    known.add_from_environment(_child_environment(runner_dir / "command"))
    record = RunArtifacts(folder.parent, run_id, known)
    copied = 0
    try:
        record.create()
        have = {str(e.get("uuid")): int(e.get("counter") or 0) for e in record.read_events()}
        events = _runner_events(runner_dir / "job_events")
        # Runner numbers its events from 1; the record, after the engine's own events.
        base = next((have[str(e.get("uuid"))] - e["counter"]
                     for e in events if str(e.get("uuid")) in have), record.counter)
        for event in events:
            if str(event.get("uuid")) in have:
                continue
            try:
                record.write_raw_event(runner_event(event, base))
                copied += 1
            except FileExistsError:
                continue
        record.event("private_data_dir_removed", stdout=(
            f"the process that ran this step (pid {pid}) stopped before the step ended; "
            f"process {os.getpid()} removed its private data dir"
            + (f" after copying {copied} event(s) from it" if copied else "")))
    except (OSError, ValueError, TypeError) as exc:   # the dir goes anyway: it holds secrets
        log.error("run %s: could not copy what its private data dir %s held: %s",
                  run_id, path, exc)
    return run_id, copied


def _runner_events(folder: Path) -> list[dict[str, Any]]:
    events = []
    for p in folder.glob("*.json"):
        if p.name.endswith("-partial.json"):
            continue
        try:
            event = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(event, dict) and isinstance(event.get("counter"), int):
            events.append(event)
    return sorted(events, key=lambda e: e["counter"])


class _ExtravarsLoader(yaml.SafeLoader):
    """Reads the extravars file the executor writes (an ``!unsafe`` mapping)."""


def _unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ExtravarsLoader.add_constructor("!unsafe", _unsafe)


def _read_extravars(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_ExtravarsLoader)  # noqa: S506 - safe
    except (OSError, yaml.YAMLError):
        return {}


def _child_environment(path: Path) -> dict[str, str]:
    """The environment runner gave the child (its ``command`` file): what the run's own
    redactor knew of it (variables given to a playbook on purpose)."""
    try:
        env = json.loads(path.read_text()).get("env")
    except (OSError, ValueError, AttributeError):
        return {}
    return env if isinstance(env, dict) else {}


def kill_marked_processes(name: str, value: str) -> int:
    """SIGKILL every process of ours whose environment has ``name=value``; how many.

    Two passes: a worker may fork a module between the first scan and its own death.
    """
    me = os.getpid()
    killed = 0
    for _ in range(2):
        for proc in psutil.process_iter():
            if proc.pid == me:
                continue
            try:
                if proc.environ().get(name) == value:
                    proc.kill()
                    killed += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
    return killed
