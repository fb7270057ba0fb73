"""Is anyone else acting on this target? One run at a time per target.

The lock is a lease: the holder renews it while its step runs (``Lease``), so a
killed process does not hold it past ``ttl``. ``recovery unlock`` breaks one, recorded.
This gate is asked last: it takes the lease when it allows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from engine.gates.base import Decision, Gate, GateContext, when
from engine.records import Lock
from engine.store.base import Store


class LockGate(Gate):
    name = "lock"

    def check(self, ctx: GateContext) -> Decision:
        if ctx.check_mode or ctx.dry:
            held = ctx.store.get_lock(ctx.target)
            if held is None:
                return self.allow("free")
            return self.defer(_busy(held), held.expires_at) if ctx.dry else self.allow(
                f"{_busy(held)} (check mode takes no lock)")
        lock = ctx.store.acquire_lock(ctx.target, ctx.holder, ctx.lock_ttl,
                                      run_id=ctx.run_id, component=ctx.component)
        if lock is not None:
            return Decision(self.name, self.allow().verdict, f"lease {lock.token}", lock=lock)
        held = ctx.store.get_lock(ctx.target)
        if held is None:  # released between our try and our look: ask again soon
            return self.defer(f"lock on {ctx.target} changed hands", ctx.now + 1)
        return self.defer(_busy(held), held.expires_at)


def _busy(held: Lock) -> str:
    run = f" (run {held.run_id})" if held.run_id else ""
    return (f"target {held.target} is locked by {held.holder}{run} since "
            f"{when(held.acquired_at)}")


class Lease:
    """Keeps a lock alive while a step runs; ``release()`` when done."""

    def __init__(self, store: Store, lock: Lock, ttl: float,
                 on_beat: Callable[[], None] | None = None) -> None:
        self.store, self.lock, self.ttl = store, lock, ttl
        self._on_beat = on_beat
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"lease-{lock.target}")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.store.renew_lock(self.lock.target, self.lock.token, self.ttl):
                    self.lost = True  # broken by `recovery unlock`: the record will say so
                if self._on_beat:
                    self._on_beat()
            except Exception:  # noqa: BLE001 - a missed beat must not kill the step
                continue

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.store.release_lock(self.lock.target, self.lock.token)
