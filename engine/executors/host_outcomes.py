"""Per-host outcome of one playbook run over several hosts, and the run status it makes.

One ansible run acts on a whole batch: its status alone would hide which hosts it fixed.
Runner's closing stats decide each host (they know what a ``rescue`` or
``ignore_errors`` undid); the failure events only give the words. A host of the limit
that the play never reported on is failed, never ok; an unreachable host is never a
success, whatever else its stats say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.lifecycle import HostOutcome, RunStatus

NO_RESULT = "no result from the play"


def host_entry(host: str, outcome: HostOutcome, reason: str = "") -> dict[str, str]:
    """One host's line of run.json ``hosts``."""
    return {"host": host, "outcome": outcome.value, "reason": reason}


def host_outcomes(
    hosts: Sequence[str],
    stats: Mapping[str, Any] | None,
    failed: Mapping[str, str],
    unreachable: Mapping[str, str],
    no_result: str = NO_RESULT,
) -> list[dict[str, str]]:
    """An entry per host of ``hosts``, in that order. ``stats``: runner's
    ``playbook_on_stats`` (None: the play never finished, so no host is ok);
    ``failed`` and ``unreachable``: each host's reason from its last such event;
    ``no_result``: the reason of a host nothing is known of."""
    def count(kind: str, host: str) -> int:
        return int(((stats or {}).get(kind) or {}).get(host) or 0)

    entries = []
    for host in hosts:
        if host in unreachable or count("dark", host):
            entries.append(host_entry(host, HostOutcome.UNREACHABLE,
                                      unreachable.get(host) or "unreachable"))
        elif stats is None or count("failures", host):
            entries.append(host_entry(host, HostOutcome.FAILED,
                                      failed.get(host) or no_result))
        elif count("changed", host):
            entries.append(host_entry(host, HostOutcome.CHANGED))
        elif count("ok", host):
            entries.append(host_entry(host, HostOutcome.OK))
        elif count("skipped", host):
            entries.append(host_entry(host, HostOutcome.SKIPPED))
        else:
            entries.append(host_entry(host, HostOutcome.FAILED, no_result))
    return entries


def status_of(entries: Sequence[Mapping[str, str]]) -> RunStatus:
    """SUCCEEDED when every host succeeded (ok, changed, skipped), FAILED when none did,
    PARTIAL in between."""
    good = sum(HostOutcome(e["outcome"]).succeeded for e in entries)
    if entries and good == len(entries):
        return RunStatus.SUCCEEDED
    return RunStatus.PARTIAL if good else RunStatus.FAILED
