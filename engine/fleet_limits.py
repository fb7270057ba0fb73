"""Fleet-wide limits: how wide a remediation may go, from ``recovery.yml``'s ``fleet:``.

One alert storm for a group must not touch the whole group at once, so the engine keeps a
few numbers fleet-wide (``FleetLimits``): Ansible forks per batch, the window in which
incidents of one step are fused into one run, remediations in flight at once, and the
share of any inventory group under remediation within a window. A runbook may override
any of them for its own steps (its ``fleet:`` mapping).

Values are written as an operator writes them (``10m``, ``25%``) and parsed here once, so
``recovery.yml`` and a runbook mean the same by them; a bad value is a ``ValueError``
naming the key, which the config reader and the runbook loader put in their own words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine.durations import parse_duration

FLEET_KEYS = ("forks", "coalesce_window", "max_in_flight", "group_share", "group_window")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%", re.ASCII)


@dataclass(frozen=True)
class FleetLimits:
    """The limits one step acts under (``recovery.yml``, then its runbook's overrides)."""

    forks: int = 5                  # Ansible forks in one batch
    coalesce_window: float = 1.0    # seconds: incidents of one step arriving within it fuse
    max_in_flight: int = 10         # remediations running at once, every process counted
    group_share: float = 0.25       # fraction of any group under remediation in group_window
    group_window: float = 600.0     # seconds

    def overridden(self, values: Mapping[str, Any]) -> FleetLimits:
        """These limits with ``values`` (parsed, as ``parse_fleet`` returns them) instead."""
        return replace(self, **{k: v for k, v in values.items() if k in FLEET_KEYS})

    def group_allowance(self, group_size: int) -> int:
        """Hosts of a group of ``group_size`` that may be under remediation in the window:
        the share rounded down, but never less than one (else a small group could never
        be remediated at all)."""
        return max(1, math.floor(self.group_share * group_size + 1e-9))


def parse_percent(value: object) -> float:
    """``"25%"`` -> 25.0, for a percentage from 1 to 100; else ValueError with the reason."""
    match = _PERCENT.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a percentage (write e.g. 25%)")
    percent = float(match.group(1))
    if not 1 <= percent <= 100:
        raise ValueError(f"{value!r} must be from 1% to 100%")
    return percent


def parse_share(value: object) -> float:
    """A share of a group as a fraction: ``"25%"`` (1% to 100%) or a number 0 < x <= 1."""
    if isinstance(value, str):
        return parse_percent(value) / 100
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a share (write e.g. 25% or 0.25)")
    if not 0 < value <= 1 or math.isnan(value):
        raise ValueError(f"{value!r} must be more than 0 and at most 1 (or a percentage "
                         "such as 25%)")
    return float(value)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} must be a whole number, at least 1")
    return value


def _window(value: object, *, positive: bool) -> float:
    seconds = parse_duration(value)
    if positive and seconds <= 0:
        raise ValueError(f"{value!r} must be more than 0")
    return seconds


_PARSERS = {
    "forks": _count,
    "coalesce_window": lambda v: _window(v, positive=False),
    "max_in_flight": _count,
    "group_share": parse_share,
    "group_window": lambda v: _window(v, positive=True),
}


class FleetValueError(ValueError):
    """A bad value in a ``fleet:`` mapping: ``key`` and the ``reason``."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def parse_fleet(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed values of the keys ``raw`` gives (seconds, a fraction, counts); the
    first bad one raises ``FleetValueError``. Unknown keys are the schema's to refuse."""
    parsed: dict[str, Any] = {}
    for key in FLEET_KEYS:
        if key in raw:
            try:
                parsed[key] = _PARSERS[key](raw[key])
            except ValueError as exc:
                raise FleetValueError(key, str(exc)) from None
    return parsed
