"""The exit codes of ``recovery``: what a script may rely on (docs/operations.md, Exit
codes)."""

from __future__ import annotations

OK = 0          # done and verified
FAILED = 1      # failed (exhausted, canceled, interrupted, store lost mid-way)
USAGE = 2       # usage or configuration error
PARKED = 3      # parked for approval
REFUSED = 4     # refused or deferred by a gate (cooldown, disabled, lock, unknown target)

# With several hosts the worst outcome decides: failed > refused/deferred > parked > ok.
_SEVERITY = {OK: 0, PARKED: 1, REFUSED: 2, FAILED: 3, USAGE: 4}


def worst(codes: list[int]) -> int:
    """The exit code of a command that acted on several hosts: the worst of theirs."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 5), default=OK)
