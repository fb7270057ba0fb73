"""What the gates ask before a step runs: one small protocol per gate's state.

Cooldowns are counted from the attempts (``Incidents`` records them), locks are leases
with fencing tokens, kill switches and degraded modes stop whole scopes, approvals hold
a run until someone decides. ``GateState`` is all of them; a gate that reads one needs
only its own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Protocol

from engine.records import Approval, Attempt, DegradedReason, Lock, Switch


class Cooldowns(Protocol):
    """The attempts a cooldown window counts, read by (runbook, target)."""

    @abstractmethod
    def attempts_since(self, runbook: str, target: str, since: float) -> list[Attempt]:
        """Attempts started at or after ``since`` (the cooldown window), oldest first."""

    @abstractmethod
    def last_failed_attempt(self, runbook: str, target: str) -> Attempt | None: ...

    def cooldown_history(self, runbook: str, target: str,
                         since: float) -> tuple[list[Attempt], Attempt | None]:
        """``attempts_since`` and ``last_failed_attempt`` together: what the cooldown gate
        asks before every attempt (a store over the network reads both at once)."""
        return (self.attempts_since(runbook, target, since),
                self.last_failed_attempt(runbook, target))

    @abstractmethod
    def attempt_keys_since(self, since: float) -> set[tuple[str, str]]:
        """(runbook, target) pairs with an attempt started or finished since ``since``:
        the only pairs a cooldown can be active for."""


class Locks(Protocol):
    """One lease per target, so that two runs never act on one host at once."""

    # True where one process can lose the store while others still reach it (a server
    # over the network): a holder that cannot renew must stop acting before its lease
    # ends, for another may take the lock then. A local file (SQLite) fails for every
    # process at once: nobody takes a lock nobody can write.
    leases_lapse_apart: bool = False

    @abstractmethod
    def acquire_lock(
        self, target: str, holder: str, ttl: float, *, run_id: str | None = None,
        component: str | None = None,
    ) -> Lock | None:
        """The lease if free (or expired), else None. Tokens grow: fencing."""

    @abstractmethod
    def renew_lock(self, target: str, token: int, ttl: float) -> bool: ...

    def renew_locks(self, held: Sequence[tuple[str, int]], ttl: float) -> list[bool]:
        """``renew_lock`` of each (target, token) of a step's lease (its target's lock, a
        fleet slot), in order: before a step starts and at every beat (a store over the
        network renews them all in one round trip)."""
        return [self.renew_lock(target, token, ttl) for target, token in held]

    def acquire_slot(self, prefix: str, limit: int, holder: str, ttl: float, *,
                     run_id: str | None = None,
                     component: str | None = None) -> tuple[Lock | None, int]:
        """One of ``limit`` interchangeable leases, the first free of ``prefix``0,
        ``prefix``1...: (the lease, how many locks named ``prefix``... are live with it),
        or (None, how many are) when ``limit`` or more are, whatever their numbers (a
        lower limit than another caller's sees them all). This default takes the lock
        and counts again, giving it back when others took the room meanwhile; a store
        that can count and take at once does (one round trip on a server)."""
        def live() -> set[str]:
            return {k.target for k in self.list_locks() if k.target.startswith(prefix)}

        held = live()
        if len(held) >= limit:
            return None, len(held)
        for n in range(limit):
            name = f"{prefix}{n}"
            if name in held:
                continue
            slot = self.acquire_lock(name, holder, ttl, run_id=run_id, component=component)
            if slot is None:       # taken meanwhile by another caller: try the next one
                continue
            busy = len(live())
            if busy > limit:       # others took the room meanwhile: give it back
                self.release_lock(slot.target, slot.token)
                return None, busy - 1
            return slot, busy
        return None, limit

    @abstractmethod
    def release_lock(self, target: str, token: int) -> bool: ...

    @abstractmethod
    def get_lock(self, target: str) -> Lock | None:
        """The live lock on ``target`` (expired ones are not returned)."""

    @abstractmethod
    def break_lock(self, target: str) -> Lock | None: ...

    @abstractmethod
    def list_locks(self) -> list[Lock]: ...


class KillSwitches(Protocol):
    """``recovery disable``: a scope (everything, a component, a target) with an expiry."""

    @abstractmethod
    def add_switch(self, switch: Switch) -> None: ...

    @abstractmethod
    def remove_switches(self, component: str | None, target: str | None) -> list[Switch]:
        """Remove the switches of exactly this scope (``enable`` undoes a ``disable``)."""

    @abstractmethod
    def active_switches(self, now: float) -> list[Switch]: ...


class Approvals(Protocol):
    """A run waiting for an operator's decision, decided once."""

    @abstractmethod
    def add_approval(self, approval: Approval) -> None: ...

    @abstractmethod
    def get_approval(self, run_id: str) -> Approval | None: ...

    @abstractmethod
    def list_approvals(self, status: str | None = "pending") -> list[Approval]: ...

    @abstractmethod
    def decide_approval(
        self, run_id: str, *, status: str, by: str | None, reason: str, at: float,
        expect: str = "pending",
    ) -> Approval | None:
        """Move an approval out of ``expect``; None if someone else decided first."""

    @abstractmethod
    def due_approvals(self, now: float) -> list[Approval]:
        """Pending approvals past their expiry."""


class DegradedModes(Protocol):
    """The reasons a degraded mode is on (automatic ones per incident, manual ones)."""

    @abstractmethod
    def add_degraded(self, reason: DegradedReason) -> None: ...

    @abstractmethod
    def clear_degraded(
        self, *, mode: str | None = None, target: str | None = None, manual: bool | None = False
    ) -> list[DegradedReason]:
        """Remove reasons (``manual=None``: automatic and manual alike)."""

    @abstractmethod
    def degraded_reasons(self, mode: str | None = None) -> list[DegradedReason]: ...


class GateState(Cooldowns, Locks, KillSwitches, Approvals, DegradedModes, Protocol):
    """Everything the gates read and write."""
