"""Is anyone else acting on this target (or component)? One run at a time per target.

The lock is a lease: the holder renews it while its step runs (``Lease``), so a
killed process does not hold it past ``ttl``. ``recovery unlock`` breaks one, recorded.
This gate is asked last: it takes the lease when it allows. A holder that stalled past
its lease (a paused process) may find its lock taken by another with a newer token:
``Lease`` tells its step (``on_lost``), and the step's writes, fenced with the token
(engine.store.fencing), are refused.

A runbook with ``concurrency: per_component`` serializes its component: the step also
takes ``component:<name>``, right after the target's lock. Neither is waited for while
the other is held: a component lock held elsewhere gives the target's lock back at once
and defers the step, naming the lock, until that lease would lapse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from engine.gates.base import Decision, Gate, GateContext, when
from engine.gates.fleet import SLOT_PREFIX
from engine.records import Lock
from engine.runbooks.model import Concurrency
from engine.store.gate_state import Locks

COMPONENT_PREFIX = "component:"


class LockGate(Gate):
    name = "lock"

    def check(self, ctx: GateContext) -> Decision:
        names = lock_names(ctx)
        if ctx.check_mode or ctx.dry:
            held = next((h for n in names if (h := ctx.store.get_lock(n)) is not None), None)
            if held is None:
                return self.allow("free" if len(names) == 1 else f"free: {', '.join(names)}")
            return self.defer(_busy(held), held.expires_at) if ctx.dry else self.allow(
                f"{_busy(held)} (check mode takes no lock)")
        taken: list[Lock] = []
        for name in names:
            try:
                lock = ctx.store.acquire_lock(name, ctx.holder, ctx.lock_ttl,
                                              run_id=ctx.run_id, component=ctx.component)
            except Exception:
                _give_back(ctx, taken)          # the chain knows only earlier gates' leases
                raise
            if lock is None:
                release_all(ctx.store, taken)   # never wait holding a lock
                return self._taken(ctx, name)
            taken.append(lock)
        return Decision(self.name, self.allow().verdict,
                        "lease " + ", ".join(f"{k.target} {k.token}" for k in taken)
                        if len(taken) > 1 else f"lease {taken[0].token}", locks=tuple(taken))

    def _taken(self, ctx: GateContext, name: str) -> Decision:
        held = ctx.store.get_lock(name)
        if held is None:  # released between our try and our look: ask again soon
            return self.defer(f"lock on {name} changed hands", ctx.now + 1)
        return self.defer(_busy(held), held.expires_at)


def _give_back(ctx: GateContext, taken: list[Lock]) -> None:
    try:
        release_all(ctx.store, taken)
    except Exception:  # noqa: BLE001 - the store's first error is the one raised; these lapse
        pass


def lock_names(ctx: GateContext) -> list[str]:
    """The locks a step takes, in order: its target's, then its component's if the
    runbook serializes the component (``concurrency: per_component``)."""
    if ctx.runbook.concurrency == Concurrency.PER_COMPONENT:
        return [ctx.target, component_lock(ctx.component)]
    return [ctx.target]


def component_lock(component: str) -> str:
    """The lock that serializes a component's remediations."""
    return f"{COMPONENT_PREFIX}{component}"


def serializes(lock_name: str) -> str:
    """What a lock of that name keeps to one at a time, in words (``recovery status``)."""
    if lock_name.startswith(COMPONENT_PREFIX):
        return (f"every remediation of component {lock_name[len(COMPONENT_PREFIX):]} "
                "(concurrency: per_component)")
    if lock_name.startswith(SLOT_PREFIX):
        return "one of the fleet's max_in_flight slots"
    return f"remediations of target {lock_name}"


def _busy(held: Lock) -> str:
    run = f" (run {held.run_id})" if held.run_id else ""
    what = (f"component lock {held.target} (concurrency: per_component)"
            if held.target.startswith(COMPONENT_PREFIX) else f"target {held.target}")
    return f"{what} is locked by {held.holder}{run} since {when(held.acquired_at)}"


# A lease is given up (its step stops acting) once unrenewed for this share of itself:
# beats come every third of a lease, so one beat may miss; the last third is the margin
# for the step to stop before the lock can be anyone's.
LAPSE_AFTER = 2 / 3


class LeaseKeeper:
    """Renews every lease this process holds, from one thread.

    A thread per step costs milliseconds to start on a loaded 2-core machine, on the
    path from alert to action; one long-lived thread renews all leases every ttl/3.
    """

    def __init__(self, store: Locks, ttl: float) -> None:
        self.store, self.ttl = store, ttl
        # Leases lapse (their steps stop) where the store can be lost by this process
        # alone: judged by a watchdog that does no I/O, so a renewal hung on a
        # partitioned server cannot make it late.
        self.lapses = bool(getattr(store, "leases_lapse_apart", False))
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None

    def hold(self, locks: Lock | Sequence[Lock] | None,
             on_beat: Callable[[], None] | None = None,
             on_lost: Callable[[str], None] | None = None) -> Lease:
        """Renew ``locks`` (none, one, or several: the target's and a fleet slot) and call
        ``on_beat`` every ttl/3 until released; a check-mode run holds no lock but still
        beats, so it is never taken for dead. ``on_lost(why)`` is called once when one of
        the locks turns out taken by another holder: the step must stop acting."""
        held = () if locks is None else (locks,) if isinstance(locks, Lock) else tuple(locks)
        lease = Lease(self, held, on_beat, on_lost)
        with self._lock:
            self._leases[id(lease)] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="lease-keeper")
                self._thread.start()
            if self.lapses and (self._watchdog is None or not self._watchdog.is_alive()):
                self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                                  name="lease-watchdog")
                self._watchdog.start()
        return lease

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.ttl / 3)
            self.beat_all()

    def _watch(self) -> None:
        while True:
            time.sleep(self.ttl / 12)
            self.watch_all()

    def watch_all(self) -> None:
        """Every lease held asked whether it lapsed (no I/O: never held up by the store)."""
        for lease in self._held():
            lease.lapse_if_due()

    def beat_all(self) -> None:
        """One beat of every lease held: renewed, each lost one told to its step."""
        for lease in self._held():
            lease.beat()

    def _held(self) -> list[Lease]:
        """The leases held now (a copy: each is asked outside the keeper's lock)."""
        with self._lock:
            return list(self._leases.values())


class Lease:
    """The locks held while a step runs; ``release()`` when done. ``lost`` names the ones
    no longer renewed (broken by ``recovery unlock``, or taken), which the run's record
    reports; ``taken`` says why, once one is held by another holder's newer token."""

    def __init__(self, keeper: LeaseKeeper, locks: tuple[Lock, ...],
                 on_beat: Callable[[], None] | None = None,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.keeper, self.locks, self._on_beat, self._on_lost = keeper, locks, on_beat, on_lost
        self.lost: list[str] = []
        self.taken: str | None = None
        # Why the lease lapsed: not renewed for LAPSE_AFTER of a lease (the store did not
        # answer), so its locks may be anyone's before long. Judged only while
        # ``acting``: a step that has finished keeps its result whatever the store does.
        self.lapsed: str | None = None
        self.acting = True
        self.renewed_at = time.monotonic()   # when the last renewal that held was sent
        self._checking = threading.Lock()   # the keeper's beat and the step's own check

    def beat(self) -> None:
        try:
            self.check()
        except Exception:  # noqa: BLE001 - a missed beat must not kill the keeper
            return      # not renewed: the watchdog stops the step in time (lapse_if_due)
        try:
            if self._on_beat:
                self._on_beat()
        except Exception:  # noqa: BLE001 - a missed beat must not kill the keeper
            pass

    def lapse_if_due(self) -> None:
        """A lease not renewed for LAPSE_AFTER of itself (counted from when its last good
        renewal was sent, which is when the store counts from) lapses: its step stops
        acting a third of a lease before another holder could take the lock."""
        unrenewed = time.monotonic() - self.renewed_at
        if (not self.keeper.lapses or not self.locks or not self.acting
                or self.taken is not None or self.lapsed is not None
                or unrenewed <= LAPSE_AFTER * self.keeper.ttl):
            return
        targets = ", ".join(lock.target for lock in self.locks)
        self.lapsed = (f"its lease on {targets} lapsed: not renewed for {unrenewed:.0f}s "
                       "(the store did not answer), and another holder could take it "
                       "soon")
        if self._on_lost:
            self._on_lost(self.lapsed)

    def check(self) -> str | None:
        """Renew every lock now; why the lease is lost (one of its locks is held by
        another token: the holder stalled past it and someone took it), else None. Asked
        at each beat, before a step starts and before each batch of a rollout."""
        store, ttl = self.keeper.store, self.keeper.ttl
        sent = time.monotonic()
        with self._checking:
            if self.taken is None:   # all renewed at once (one round trip to a server)
                renewed = store.renew_locks([(k.target, k.token) for k in self.locks], ttl)
                for lock, held in zip(self.locks, renewed, strict=True):
                    if not held and self.taken is None:
                        self._not_renewed(lock)
            self.renewed_at = sent     # the store answered: its expiry counts from about then
            return self.taken

    def _not_renewed(self, lock: Lock) -> None:
        """``lock`` was not renewed: broken (``recovery unlock``), or taken by another."""
        if lock.target not in self.lost:
            self.lost.append(lock.target)
        now = self.keeper.store.get_lock(lock.target)
        if now is not None and now.token != lock.token:
            self._lose(lock, now)

    def _lose(self, lock: Lock, now: Lock) -> None:
        self.taken = (f"its lease on {lock.target} was lost (token {lock.token}): "
                      f"{now.holder} holds the lock with token {now.token} since "
                      f"{when(now.acquired_at)}")
        if self._on_lost:
            self._on_lost(self.taken)

    def release(self) -> None:
        """Release every lock; the first failure is raised once all were tried (what is
        not released lapses by itself)."""
        self.keeper.drop(self)
        release_all(self.keeper.store, self.locks)


def release_all(store: Locks, locks: Sequence[Lock]) -> None:
    """Release ``locks``, each tried even if one fails; the first failure is raised."""
    failure: Exception | None = None
    for lock in locks:
        try:
            store.release_lock(lock.target, lock.token)
        except Exception as exc:  # noqa: BLE001 - the others must still be released
            failure = failure or exc
    if failure is not None:
        raise failure
