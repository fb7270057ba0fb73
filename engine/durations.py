"""Durations as runbooks and the CLI write them: ``300``, ``"300s"``, ``"1h30m"``, ``"250ms"``.

One parser, so a cooldown window means the same in a runbook, ``recovery.yml`` and
``--for``. It never guesses: a bare string number is seconds, anything else must be
a run of ``<number><unit>`` parts; negative, empty or unknown units are refused with
the reason. ``never`` (as ``--for never`` uses it) is the caller's business, not ours.
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)", re.ASCII)
_WHOLE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d|w))+", re.ASCII)
_BARE = re.compile(_NUMBER, re.ASCII)


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a non-negative number or a string like ``"1h30m"``.

    Raises ValueError with a message an operator can act on.
    """
    if isinstance(value, bool):   # bool is an int: `deadline: yes` is a mistake
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h)")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"duration {value!r} must be a finite, non-negative number of seconds")
    return seconds


def _parse_text(text: str) -> float:
    if _BARE.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        units = ", ".join(UNITS)
        raise ValueError(
            f"{text!r} is not a duration: write <number><unit>, units {units} (e.g. 90s, 1h30m)"
        )
    return sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))
