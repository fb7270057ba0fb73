"""Can the store be written now? ``/readyz`` asks at every call.

The answer is a real write (``Store.ping(write=True)``): an empty transaction passes on a
full disk, on an immutable database file and on one deleted under the service, while
every alert gets a 503. Load balancers poll ``/readyz`` often, so a success is reused for
``PROBE_TTL`` seconds (one write per app and period, whoever asks); a failure never is:
the next call probes again, so readiness comes back as soon as the store does. Whether
the database file is still the one opened (deleted, replaced) is asked at every call.
"""

from __future__ import annotations

import threading
import time

from engine.store.housekeeping import Housekeeping

PROBE_TTL = 2.0


class WriteProbe:
    """One app's write probe: one at a time, a success remembered briefly."""

    def __init__(self, ttl: float = PROBE_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._ok_at: float | None = None

    def check(self, store: Housekeeping, wait: float) -> None:
        """StoreUnavailable (with the reason) unless the store can be written now, each
        command given ``wait`` seconds at most."""
        store.ping(wait=wait)
        with self._lock:
            if self._ok_at is not None and time.monotonic() - self._ok_at < self.ttl:
                return
            self._ok_at = None
            store.ping(write=True, wait=wait)
            self._ok_at = time.monotonic()
