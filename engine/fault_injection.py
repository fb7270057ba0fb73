"""Test-only: SIGKILL the whole service at an exact point, so that the reliability tests
can crash it where they mean to rather than at a moment chosen by a timer.

``RECOVERY_FAULT_AT=POINT[:N]`` in the environment of ``recovery serve`` arms it; every
process of the service reads it once, when this module is first imported. At the N-th
time (default 1) a process of the service reaches POINT, it freezes then SIGKILLs every
process of the service (the ``recovery serve`` parent named by ``RECOVERY_SERVICE_PID``
and all its descendants, the playbooks' included), itself last: a power cut, as far
as the store and the children are concerned. The points:

- ``in_request``: the webhook has parsed a notification and not journaled it yet;
- ``after_journal``: the webhook has journaled it and not answered yet;
- ``in_playbook``: a playbook has reported a task done on a host (``runner_on_ok``), and
  the engine has not seen it end.

Unset (always, outside the tests), ``reached`` is a comparison and nothing else. Only
the environment at a process' start arms it: no configuration, request or label can.
"""

from __future__ import annotations

import os
import signal
import threading

import psutil

ENV = "RECOVERY_FAULT_AT"
POINTS = ("in_request", "after_journal", "in_playbook")


def parse(text: str | None) -> tuple[str, int] | None:
    """``POINT[:N]`` as (point, n); None for unset or empty; ValueError otherwise."""
    if not text:
        return None
    point, _, count = text.partition(":")
    n = int(count) if count.isdigit() else 0 if count else 1
    if point not in POINTS or n < 1:
        raise ValueError(f"{ENV}={text!r}: expected one of {', '.join(POINTS)}[:N], N >= 1")
    return point, n


_armed = parse(os.environ.get(ENV))
_hits = 0
_lock = threading.Lock()


def reached(point: str) -> None:
    """Called where ``point`` is; kills the service there when armed for it."""
    global _hits
    if _armed is None or _armed[0] != point:
        return
    with _lock:
        _hits += 1
        if _hits != _armed[1]:
            return
    kill_service()


def kill_service() -> None:
    """SIGSTOP then SIGKILL to the service's process tree (this process' own tree when
    it runs outside ``recovery serve``), this process last. Stopping every process first
    means none reacts to another's death (no restart, no cleanup, no new child)."""
    root = int(os.environ.get("RECOVERY_SERVICE_PID") or os.getpid())
    me = os.getpid()
    others: dict[int, psutil.Process] = {}
    for _ in range(2):                       # again: a child started while we looked
        try:
            service = psutil.Process(root)
            tree = [service, *service.children(recursive=True)]
        except psutil.Error:
            tree = []
        for process in tree:
            if process.pid != me and process.pid not in others:
                others[process.pid] = process
                _send(process, signal.SIGSTOP)
    for process in others.values():
        _send(process, signal.SIGKILL)
    os.kill(me, signal.SIGKILL)


def _send(process: psutil.Process, sig: int) -> None:
    try:
        process.send_signal(sig)
    except psutil.Error:
        pass
