"""A command prefix that runs a process in a mount namespace of its own where the whole
filesystem is read-only but the given folders: anything it writes elsewhere fails with
EROFS ("Read-only file system"), which its logs then show. Needs root (``unshare``)."""

from __future__ import annotations

import shlex
from pathlib import Path

EROFS = ("Read-only file system", "EROFS", "Errno 30")


def read_only_root(*writable: Path) -> list[str]:
    """``unshare`` ... ``sh -c`` ...: put before a command (its arguments follow). Each of
    ``writable`` is bind-mounted on itself first, a mount of its own that stays writable
    when ``/`` is then remounted read-only (a per-mount flag: the host's ``/`` is
    untouched). Mounts of their own (/proc, /dev, /dev/shm) keep their flags."""
    binds = [f"mount --bind {shlex.quote(str(p))} {shlex.quote(str(p))}" for p in writable]
    script = " && ".join([*binds, "mount -o remount,bind,ro /", 'exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def root_is_read_only(pid: int) -> bool:
    """Whether ``/`` is mounted read-only in the mount namespace of process ``pid``."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return "ro" in fields[5].split(",")
    return False
