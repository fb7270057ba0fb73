"""Group commit of the webhook's journal writes, for the threads of one process.

Every alert Alertmanager posts is journaled (``enqueue_alerts``) before the webhook
answers, one transaction per call; under load the calls of many threads wait on one
another for the write lock. Here the calls that arrive while a transaction is on its way
are journaled together in the next one, each caller answered by its own deadline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.store.base import StoreUnavailable


class Enqueue:
    """One ``enqueue_alerts`` call waiting in a group commit."""

    __slots__ = ("items", "texts", "repeat_after", "deadline", "result", "error", "lead",
                 "done")

    def __init__(self, items: list[tuple[str, dict[str, Any]]], texts: list[str],
                 repeat_after: float | None, deadline: float) -> None:
        self.items, self.texts, self.repeat_after = items, texts, repeat_after
        self.deadline = deadline           # time.monotonic() by which the caller answers
        self.result: tuple[int, int] | None = None
        self.error: BaseException | None = None
        self.lead = False                  # promoted: journal the pending batch
        self.done = threading.Event()      # result or error set, or promoted


class GroupCommit:
    """Leader/follower group commit, for the threads of one process (no thread of its
    own). A caller queues its request; if no transaction is on its way it leads: takes
    every request queued, runs ``journal(batch)`` (one transaction) and wakes each
    caller with its outcome. Callers that queue meanwhile wait; when the leader is done,
    the first of them leads the next batch. Every caller answers by its own deadline:
    a follower still queued then withdraws its request; one whose transaction is on its
    way is told the store is busy (its alerts may yet commit: Alertmanager's retry is
    deduplicated); a leader's transaction waits for the lock until the earliest deadline
    of its batch."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._mutex = threading.Lock()
        self._pending: list[Enqueue] = []
        self._leading = False
        self._pid = os.getpid()   # a forked child starts afresh (no leader there)

    def submit(self, request: Enqueue, journal: Callable[[list[Enqueue]], None]
               ) -> tuple[int, int]:
        if self._pid != os.getpid():
            self._reset()
        with self._mutex:
            self._pending.append(request)
            lead = request.lead = not self._leading
            self._leading = True
        if not lead:
            self._follow(request)
        if request.lead:
            self._lead(request, journal)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _follow(self, request: Enqueue) -> None:
        if request.done.wait(max(0.0, request.deadline - time.monotonic())):
            return
        with self._mutex:
            if request.lead or request.done.is_set():
                return
            if request in self._pending:   # no leader took it: nothing written
                self._pending.remove(request)
                raise StoreUnavailable("store busy: alerts not journaled in time")
        # In a transaction on its way: it may yet commit, and then a retry is a duplicate.
        raise StoreUnavailable("store busy: alerts not known journaled in time")

    def _lead(self, request: Enqueue, journal: Callable[[list[Enqueue]], None]) -> None:
        with self._mutex:
            batch, self._pending = self._pending, []
        try:
            journal(batch)
        except BaseException as exc:
            for other in batch:
                other.error = exc if other is request else _for_follower(exc)
        finally:
            with self._mutex:
                following = self._pending[0] if self._pending else None
                if following is None:
                    self._leading = False
                else:
                    following.lead = True
            for other in batch:
                if other is not request:
                    other.done.set()
            if following is not None:
                following.done.set()


def _for_follower(exc: BaseException) -> BaseException:
    """The leader's exception for another caller of the batch (one object is not
    raised in two threads: its traceback would be shared)."""
    if isinstance(exc, StoreUnavailable):
        copy = StoreUnavailable(str(exc))
    else:
        copy = StoreUnavailable(f"journaling the alerts failed: {type(exc).__name__}: {exc}")
    copy.__cause__ = exc
    return copy
