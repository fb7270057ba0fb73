"""Is the process that left something behind still running?

A folder named after a pid (a service's metrics folder, a run's private data dir, one of
Ansible's temp dirs) belongs to a live process only if that pid runs now *and* that
process was already running when the thing was made: pids are reused, and a process
started since then is someone else. Zombies count as dead (they run nothing).

A claim in the store names its holder ``host:pid:thread`` (``EngineContext.holder``):
on this host the same test applies; a process on another host cannot be asked, so there
its worker's heartbeat (kept in the store) decides.
"""

from __future__ import annotations

import socket

import psutil

# Process start times are in clock ticks and files' times in the file system's own
# precision: a process that made something within this much of its start is its maker.
SLACK = 1.0


def alive_since(pid: int, made_at: float) -> bool:
    """True if process ``pid`` runs now and was already running at ``made_at`` (epoch s).

    Errs on the side of alive: a pid reused within ``SLACK`` of ``made_at`` passes for
    the maker until it dies too; a live maker never passes for dead."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= made_at + SLACK
    except psutil.Error:
        return False


def holder_gone(holder: str, since: float, heartbeat: float | None,
                stale_before: float) -> bool:
    """True if the holder of a claim made at ``since`` (``host:pid:thread``) is gone: on
    this host, no process started by then runs that pid; on another host, its worker's
    ``heartbeat`` is absent or older than ``stale_before``. A live process on this host
    is never gone, however old its heartbeat (it may only be slow), and a holder named
    otherwise is never judged (its claim lapses by itself)."""
    host, _, rest = holder.partition(":")
    pid, _, thread = rest.partition(":")
    if not host or not pid.isdigit() or not thread:
        return False
    if host == socket.gethostname():
        return not alive_since(int(pid), since)
    return heartbeat is None or heartbeat < stale_before
