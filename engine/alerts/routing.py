"""Which runbook handles an alert: a pure function of its labels and the runbooks.

Deterministic, so a replayed alert picks the same runbook: highest priority first,
then file name, then runbook name. The engine's own alerts (``source="infra-recovery"``:
RecoveryExhausted, RecoveryDegradedMode, ...) never match, or an exhausted runbook
would page itself into another attempt.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from engine.runbooks.matchers import matches_all
from engine.runbooks.model import Runbook

OWN_SOURCE = "infra-recovery"


def is_own_alert(labels: Mapping[str, str]) -> bool:
    return labels.get("source") == OWN_SOURCE


def runbook_matches(runbook: Runbook, labels: Mapping[str, str]) -> bool:
    """Any of the runbook's matcher groups holds in full (no groups: never)."""
    if is_own_alert(labels):
        return False
    return any(matches_all(group, labels) for group in runbook.match)


def routing_key(runbook: Runbook) -> tuple[int, str, str]:
    return (-int(runbook.priority), os.path.basename(runbook.path), runbook.name)


def precedence(winner: Runbook, other: Runbook) -> str:
    """Why ``winner`` goes before ``other`` for an alert both match, in words."""
    mine, theirs = winner.priority.name.lower(), other.priority.name.lower()
    if winner.priority != other.priority:
        return f"priority {mine} over {theirs}"
    files = os.path.basename(winner.path), os.path.basename(other.path)
    if files[0] != files[1]:
        return f"both priority {mine}: the file name decides ({files[0]} sorts before {files[1]})"
    return (f"both priority {mine}, both in a file {files[0]}: the runbook name decides "
            f"({winner.name} before {other.name})")


def matching_runbooks(runbooks: Iterable[Runbook], labels: Mapping[str, str]) -> list[Runbook]:
    """Every runbook that matches, in the order they are preferred."""
    return sorted((rb for rb in runbooks if runbook_matches(rb, labels)), key=routing_key)


def match_runbook(runbooks: Iterable[Runbook], labels: Mapping[str, str]) -> Runbook | None:
    """The runbook that handles this alert, or None."""
    found = matching_runbooks(runbooks, labels)
    return found[0] if found else None
