"""Fencing: a write made under a lease carries the lease's token, and is refused once
someone else holds that lock.

A lease (``Locks``) can outlive its holder's belief in it: a process paused past its
lease (SIGSTOP, a long GC, a frozen VM) wakes up still thinking it holds the lock,
while another process has taken it with a newer token. A write that carries a
``Fence`` (the lock's target and the token it was given) is checked in the same
transaction as the write: refused, with ``StaleLease``, when the lock on that target is
held by another token (taken after it lapsed). A lock that is still this token's, even
past its expiry, or that nobody holds any more (released, or broken by ``recovery
unlock``), lets the write through: nobody else can be acting on that target under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.records import Lock


@dataclass(frozen=True)
class Fence:
    """The lock a write is made under: its target and the token its lease was given."""

    target: str
    token: int

    @classmethod
    def of(cls, lock: Lock) -> Fence:
        return cls(lock.target, lock.token)


class StaleLease(RuntimeError):
    """A write made under a lease that another holder has taken since: nothing was
    written. The run that made it must stop acting on the target."""

    def __init__(self, fence: Fence, holder_token: int) -> None:
        super().__init__(f"its lease on {fence.target} was lost (token {fence.token}): "
                         f"the lock is held by token {holder_token} now")
        self.fence, self.holder_token = fence, holder_token


def refused(fence: Fence | None, held_token: int | None) -> StaleLease | None:
    """The refusal of a write under ``fence`` when the lock on its target has the token
    ``held_token`` (None: no lock row); None when the write may go through."""
    if fence is None or held_token is None or held_token == fence.token:
        return None
    return StaleLease(fence, held_token)
