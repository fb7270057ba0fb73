"""The start-up checks that need the store, when ``recovery serve`` starts while the store
is down (a Redis server restarting, or not up yet after a reboot).

The service does not refuse to start then: its webhook answers 503 (Alertmanager sends
again), ``/readyz`` fails, and the engine workers wait, so it is ready the moment the
store answers, without anyone restarting it. What the start would have asked the store
(are its settings safe; did a migration leave it half-written; put the set of runbooks in
force) is asked here, on a thread of the parent, until the store answers: passed, the
service goes on; refused (``StoreRefused``: settings that would lose state; or any other
refusal the check raises) the service stops with exit 2 and the reason, as it would have
at the start. Waiting would never make those right.

The wait between tries doubles up to ``MAX_WAIT``; the outage is said once when the
service starts, and once when it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from engine.store.base import StoreRefused, StoreUnavailable

log = logging.getLogger("engine.service.supervisor")

FIRST_WAIT = 1.0     # s before the first try again
MAX_WAIT = 10.0      # s between tries at most


class StoreWait:
    """``check()`` tried on a daemon thread until it returns (``passed``) or raises
    anything but a plain ``StoreUnavailable`` (``refused``: the reason, in one line)."""

    def __init__(self, check: Callable[[], None], *, first_wait: float = FIRST_WAIT,
                 max_wait: float = MAX_WAIT) -> None:
        self.check = check
        self.first_wait, self.max_wait = first_wait, max_wait
        self.passed = False
        self.refused: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="recovery-serve-store-wait")

    def start(self) -> StoreWait:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        wait = self.first_wait
        while not self._stop.wait(wait):
            try:
                self.check()
            except StoreRefused as exc:
                self.refused = _one_line(str(exc))
                return
            except StoreUnavailable:
                wait = min(wait * 2, self.max_wait)
                continue
            except Exception as exc:  # noqa: BLE001 - any other refusal stops the start
                self.refused = _one_line(str(exc)) or type(exc).__name__
                return
            self.passed = True
            log.warning("the store answers: the start-up checks passed; the service is "
                        "ready once an engine worker reports")
            return


def _one_line(text: str) -> str:
    return " ".join(text.split())
