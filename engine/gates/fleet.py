"""Is there room in the fleet for one more remediation? The blast-radius limits.

Two limits, fleet-wide (engine.fleet_limits: ``recovery.yml``'s ``fleet:``, a runbook's
own ``fleet:`` over it), shared by every process on the store:

- ``max_in_flight``: remediations running at once. A step takes a slot, a store lock
  ``fleet-slot:<n>`` that its lease renews and releases with the target's lock, so two
  steps never hold one slot and a killed process's slot lapses with its lease.
- ``group_share`` within ``group_window``: of every inventory group the target belongs
  to (``all`` and ``ungrouped`` aside), at most max(1, floor(share x size)) hosts under
  remediation. A host counts when a run on it (not in check mode) began within the
  window, running or ended (not deferred, refused, parked, queued or skipped), or while
  its lock is held. A host already counted may run again: it adds nothing.

Whoever asks is held to them: alerts, probes, operators, ``--force`` too. What they hold
back is deferred with the limit, the numbers and an ``until`` when room may have freed
(a few seconds for a slot; for a group, when enough of its hosts leave the window).
A plan reports the deferral; a check-mode run is allowed, the would-be deferral in its
reason, and takes no slot.

Asked after the lock gate, whose lease on the target is already held: of two steps racing
for the last room of a group, the one whose lock was taken later (a higher fencing token)
sees the other's and waits; the earlier one does not count the later, so one of them
passes and never both. Alone in a chain without the lock gate, the group count is only as
good as the runs already recorded.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from engine.fleet_limits import FleetLimits
from engine.gates.base import Decision, Gate, GateContext, Verdict, when
from engine.lifecycle import RunStatus
from engine.runbooks.model import fleet_limits

if TYPE_CHECKING:
    from engine.inventory import Inventory
    from engine.records import Lock
    from engine.store.base import Store
    from engine.store.gate_state import Locks

SLOT_PREFIX = "fleet-slot:"
SLOT_RETRY = 3.0      # seconds: a full fleet is asked again this soon (slots free any time)
# Groups that are the whole fleet, not a part of it: no share of them is limited.
WHOLE_FLEET = frozenset({"all", "ungrouped"})
# Runs that never began acting on their host: they do not count against a group.
NOT_BEGUN = frozenset({RunStatus.DEFERRED, RunStatus.REFUSED, RunStatus.PENDING_APPROVAL,
                       RunStatus.QUEUED, RunStatus.REJECTED, RunStatus.EXPIRED,
                       RunStatus.SKIPPED})
_NAMED = 5            # hosts named in a reason


class FleetGate(Gate):
    name = "fleet"

    def __init__(self, limits: FleetLimits | None = None) -> None:
        self.limits = limits or FleetLimits()

    def check(self, ctx: GateContext) -> Decision:
        limits = fleet_limits(self.limits, ctx.runbook)
        reporting = ctx.check_mode or ctx.dry
        held = group_share_hold(ctx.store, ctx.inventory, [ctx.target], limits, ctx.now,
                                own_run=None if reporting else ctx.run_id)
        if held is not None:
            return self._held(ctx, *held)
        if reporting:
            busy = len(slots_in_flight(ctx.store))
            if busy >= limits.max_in_flight:
                return self._held(ctx, _full(busy, limits.max_in_flight),
                                  ctx.now + SLOT_RETRY)
            return self.allow(f"{busy} of {limits.max_in_flight} in flight")
        slot, reason = take_slot(ctx.store, limits.max_in_flight, ctx.holder, ctx.lock_ttl,
                                 run_id=ctx.run_id, component=ctx.component)
        if slot is None:
            return self.defer(reason, ctx.now + SLOT_RETRY)
        return Decision(self.name, Verdict.ALLOW, reason, locks=(slot,))

    def _held(self, ctx: GateContext, reason: str, until: float) -> Decision:
        """Deferred; only reported in a check-mode run (it takes no slot, counts nothing)."""
        if ctx.check_mode:
            return self.allow(f"{reason} (check mode: not held back)")
        return self.defer(reason, until)


def slots_in_flight(store: Locks) -> list[Lock]:
    """The fleet slots held now: one per remediation running, every process counted."""
    return [lock for lock in store.list_locks() if lock.target.startswith(SLOT_PREFIX)]


def take_slot(store: Locks, limit: int, holder: str, ttl: float, *, run_id: str | None,
              component: str | None) -> tuple[Lock | None, str]:
    """A free slot among the first ``limit`` (a lease of ``ttl``), and why; (None, why)
    when ``limit`` remediations are in flight. A runbook with a lower limit than
    another's sees every slot held, whatever its number (``Locks.acquire_slot``)."""
    slot, busy = store.acquire_slot(SLOT_PREFIX, limit, holder, ttl, run_id=run_id,
                                    component=component)
    if slot is None:
        return None, _full(busy, limit)
    n = int(slot.target[len(SLOT_PREFIX):])
    return slot, f"slot {n + 1} of {limit} ({busy} in flight)"


def _full(busy: int, limit: int) -> str:
    return (f"fleet: {busy} remediations in flight (max_in_flight {limit}); "
            f"asked again in {SLOT_RETRY:g}s")


def group_share_hold(store: Store, inventory: Inventory | None,
                     targets: Collection[str], limits: FleetLimits, now: float, *,
                     own_run: str | None = None) -> tuple[str, float] | None:
    """Why, and until when, acting on ``targets`` now would put more than ``group_share``
    of one of their groups under remediation within ``group_window``; None if it may.
    The reason is about the last of ``targets``, the others counted ahead of it.
    ``own_run``: the asking run, whose own lock on a target does not count it."""
    if inventory is None:
        return None
    groups = sorted({g for t in targets if (host := inventory.get(t)) is not None
                     for g in host.groups if g not in WHOLE_FLEET})
    if not groups:
        return None
    members_of = {g: set(hosts) for g, hosts in inventory.groups().items() if g in groups}
    fleet = set().union(*members_of.values())
    frees_at = _under_remediation(store, fleet, limits.group_window, now, own_run)
    for group in groups:
        members = members_of.get(group, set())
        counted = {h for h in members if h in frees_at}
        asking = {t for t in targets if t in members}
        together = counted | asking
        allowed = limits.group_allowance(len(members))
        if asking <= counted or len(together) <= allowed:
            continue
        leaving = sorted(frees_at[h] for h in counted)
        need = len(together) - allowed         # hosts that must leave the window first
        until = leaving[need - 1] if need <= len(leaving) else now + limits.group_window
        # The last target is the one asked about; the others go ahead of it (a plan's).
        ahead = together - {list(targets)[-1]}
        shown = ", ".join(sorted(ahead)[:_NAMED]) + ("..." if len(ahead) > _NAMED else "")
        return (f"blast radius: {len(ahead)} of {len(members)} hosts of group {group} "
                f"under remediation within {limits.group_window:g}s ({shown}); "
                f"group_share {limits.group_share * 100:g}% allows {allowed}; "
                f"next at {when(until)}", until)
    return None


def _under_remediation(store: Store, hosts: set[str], window: float, now: float,
                       own_run: str | None) -> dict[str, float]:
    """Hosts of ``hosts`` under remediation now -> when each leaves the window: its last
    run begun within it, plus the window; a host whose lock is held (taken before
    ``own_run``'s, if that holds one), not before a retry."""
    frees_at: dict[str, float] = {}
    for run in store.query_runs(since=now - window, limit=None):
        if run.target in hosts and not run.check_mode and run.status not in NOT_BEGUN:
            frees_at[run.target] = max(frees_at.get(run.target, 0.0), run.started_at + window)
    locks = [lock for lock in store.list_locks() if lock.target in hosts]
    own = [lock.token for lock in locks if own_run is not None and lock.run_id == own_run]
    for lock in locks:
        # A lock taken after ours (a higher fencing token) is a step that asks after us:
        # it counts our host and waits, so we do not count it (else both would wait).
        if own and (lock.run_id == own_run or lock.token > own[0]):
            continue
        frees_at[lock.target] = max(frees_at.get(lock.target, 0.0), now + SLOT_RETRY)
    return frees_at
