"""The SQLite database as a file on disk, apart from what is in it.

Three ways the file fails a store that SQLite itself does not report in time:

- **Not writable now.** An empty transaction writes nothing, so it passes on a full disk
  and on a file made immutable or read-only; SQLite even opens new connections to such a
  file read-only without a word, and then every write on them fails. ``unwritable()``
  says why before a write is tried (the file refuses writes to us, or its file system is
  full), and the store's write probe then writes a row for real.
- **Deleted or replaced under a running process.** The process keeps its open file and
  writes on into a file no one will read again, while anything opened at the path (the
  CLI, a restart) starts with an empty database: two stores that disagree, and the
  history lost at the next restart. A store remembers the ``FileIdentity`` (device,
  inode) of the file it opened and ``lost()`` compares it with what the path names now;
  once lost, the store takes no more writes and ``save_copy()`` writes what the process
  still holds open (SQLite's backup: a consistent copy, write-ahead log included) to
  ``rescued_path()``, beside it, once, whichever process notices first.
- **A new, empty database made at the path of a lost one.** ``refusal_to_create()`` says
  why not (and what to do) while a process still holds the deleted file open, while a
  copy saved from it waits to be moved into place, or while its write-ahead log is left
  (an empty file beside an old log would be read as a damaged database).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 1 << 20   # below this the store's file system counts as full
HOWTO = "docs/operations.md, 'A deleted database'"


@dataclass(frozen=True)
class FileIdentity:
    """Which file a path named when it was opened: a path can be given to another file."""

    device: int
    inode: int

    @classmethod
    def of(cls, path: str | Path) -> FileIdentity:
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino)


def lost(path: str | Path, identity: FileIdentity) -> str | None:
    """None while ``path`` names the file opened as ``identity``; else how it was lost."""
    try:
        now = FileIdentity.of(path)
    except FileNotFoundError:
        return "deleted (or moved away)"
    except OSError:
        return None     # cannot tell (a folder we may not search): the writes will say
    return None if now == identity else "replaced by another file"


def rescued_path(path: str | Path, identity: FileIdentity) -> Path:
    """Where the copy of a lost database file goes: beside it, named after its inode."""
    return Path(f"{path}.rescued-{identity.inode}")


def rescued_copies(path: Path) -> list[Path]:
    """The copies saved beside ``path`` (``rescued_path``), the newest last; not the
    ``-wal`` and ``-shm`` files SQLite keeps beside one that someone has open."""
    named = re.compile(rf"{re.escape(path.name)}\.rescued-\d+")
    found = []
    for copy in path.parent.glob(f"{path.name}.rescued-*"):
        try:
            if named.fullmatch(copy.name):
                found.append((copy.stat().st_mtime, copy.name, copy))
        except OSError:
            continue   # gone meanwhile (moved into place)
    return [copy for _at, _name, copy in sorted(found)]


def save_copy(source: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of ``source``'s database at ``target`` (0600), unless one is
    there already (another process saved it first). OSError or sqlite3.Error if not."""
    if target.exists():
        return
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        copy = sqlite3.connect(part)
        try:
            source.backup(copy)
        finally:
            copy.close()
        os.chmod(part, 0o600)
        try:
            os.link(part, target)   # never over a copy another process made meanwhile
        except FileExistsError:
            pass
    finally:
        part.unlink(missing_ok=True)


def make_private(path: str | Path) -> None:
    """The database file 0600 (a control plane: whoever can write it can approve). Left
    as it is when it is 0600 already, and when its mode cannot be changed now (an
    immutable file, a read-only file system: EPERM, EROFS): the store then opens and
    answers unavailable for writes, rather than not starting at all."""
    try:
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            os.chmod(path, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EROFS):
            raise
        log.warning("the database file %s could not be made 0600 now: %s", path, exc)


def unwritable(path: str | Path) -> str | None:
    """Why the database file cannot take a write now, None if nothing says so."""
    if not os.access(path, os.W_OK):
        return (f"the database file {path} cannot be written (a read-only file system, "
                "an immutable file, or its permissions)")
    try:
        st = os.statvfs(Path(path).parent)
    except OSError:
        return None
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail   # root may use the reserve
    free = blocks * st.f_frsize
    if free < MIN_FREE_BYTES:
        return f"the file system of {path} is full ({free} bytes free)"
    return None


def refusal_to_create(path: str | Path) -> str | None:
    """Why no new database may be made at ``path``, where none is now; None if it may."""
    path = Path(path)
    holders = holders_of_deleted(path)
    saved = rescued_copies(path)
    if holders:
        who = ", ".join(_describe(pid) for pid in holders)
        return (f"the database file {path} is gone, but it is still open in process(es) "
                f"{who}: a new, empty database here would not be theirs, so none is made. "
                + (f"They saved its content to {saved[-1]}; " if saved else
                   "They save its content beside it as they notice; ")
                + f"stop them (the service), then move that copy to {path} ({HOWTO})")
    if saved:
        return (f"the database file {path} is gone; the copy saved from it is "
                f"{saved[-1]}: move it to {path} to go on with its history, or remove it "
                f"to start with an empty database ({HOWTO})")
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return (f"the database file {path} is gone but its write-ahead log {wal} is left "
                "(the database was deleted while a process that is now gone had it open): "
                f"to start with an empty database, remove {wal} and {path}-shm ({HOWTO})")
    return None


def holders_of_deleted(path: Path) -> list[int]:
    """Processes (that we may look into) holding ``path`` open after it was deleted."""
    real = os.path.join(os.path.realpath(path.parent), path.name)
    wanted = {f"{real} (deleted)", f"{path} (deleted)"}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    found.append(int(proc.name))
                    break
            except OSError:
                continue
    return found


def _describe(pid: int) -> str:
    try:
        return f"{pid} ({psutil.Process(pid).name()})"
    except psutil.Error:
        return str(pid)
