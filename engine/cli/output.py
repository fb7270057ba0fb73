"""How the CLI speaks: aligned tables and times for people, JSON for machines.

With ``--json`` a command prints exactly one JSON document on stdout and nothing else
there; everything meant for a person (notes, warnings) goes to stderr.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.alerts.alert import printable

Column = tuple[str, Callable[[Any], Any]]


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    """One JSON document on stdout (the only thing a ``--json`` command prints there)."""
    print(json.dumps(data, indent=2, sort_keys=False, default=_default), flush=True)


def emit_json_line(data: Any) -> None:
    print(json.dumps(data, default=_default), flush=True)


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "value"):  # enums
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def when(ts: float | None) -> str:
    """A moment as an operator reads it: UTC, to the second (``2024-05-01 03:12:09Z``)."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def span(seconds: float | None) -> str:
    """A duration in the two largest units: ``850ms``, ``42s``, ``3m20s``, ``2h5m``, ``3d4h``."""
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if s >= size:
            major, rest = divmod(s, size)
            minor = rest // subsize
            return f"{major}{unit}{minor}{sub}" if minor else f"{major}{unit}"
    return f"{s}s"


def ago(ts: float | None, now: float | None = None) -> str:
    """``5m ago`` for the past, ``in 5m`` for the future."""
    if ts is None:
        return "-"
    delta = (now if now is not None else time.time()) - ts
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(-delta)}"


def when_ago(ts: float | None, now: float | None = None) -> str:
    """``2024-05-01 03:12:09Z (5m ago)``."""
    if ts is None:
        return "-"
    return f"{when(ts)} ({ago(ts, now)})"


def alert_text(text: str | None) -> str:
    """Words that came with an alert (a label value, a fingerprint) as the CLI prints
    them: as they are, unless they hold control characters (an escape sequence, a
    newline): then quoted with those made visible (``engine.alerts.alert.printable``)."""
    return printable(text, 500, quoted=False) if text else ""


def shorten(text: Any, width: int) -> str:
    value = "" if text is None else str(text).replace("\n", " ")
    return value if len(value) <= width else value[: max(0, width - 3)] + "..."


LAST_COLUMN_MIN = 30     # the last column gets at least this, however narrow the terminal


def table(rows: Iterable[Any], columns: Sequence[Column], *, last_width: int | None = None,
          empty: str = "(none)") -> str:
    """Rows as a left-aligned table; the last column (a reason, a plan) is never padded
    and is shortened to ``last_width``, by default to the rest of the terminal's width
    (all of it when the output is not a terminal): the end of a reason is often the
    cause (a program's error after its log prefix)."""
    cells = [[("-" if (v := get(row)) is None or v == "" else str(v)) for _, get in columns]
             for row in rows]
    if not cells:
        return empty
    headers = [name for name, _ in columns]
    widths = [max(len(headers[i]), *(len(line[i]) for line in cells))
              for i in range(len(columns))]
    room = last_width if last_width is not None else _rest_of_terminal(widths[:-1])
    for line in cells:
        line[-1] = shorten(line[-1], room) if room else line[-1].replace("\n", " ")
    lines = []
    for line in [headers, *cells]:
        padded = [value.ljust(widths[i]) for i, value in enumerate(line[:-1])]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(lines)


def _rest_of_terminal(before: Sequence[int]) -> int | None:
    """Columns left on the terminal after ``before`` (widths, two spaces between);
    None when stdout is not a terminal (and no COLUMNS says its width)."""
    columns = shutil.get_terminal_size(fallback=(0, 0)).columns
    if not columns:
        return None
    return max(LAST_COLUMN_MIN, columns - sum(w + 2 for w in before))


def indented(text: str, prefix: str = "  ") -> str:
    """Every line of ``text`` under a heading: after ``prefix``."""
    return "\n".join(f"{prefix}{line}" for line in text.splitlines())


def key_values(pairs: Iterable[tuple[str, Any]], indent: str = "") -> str:
    items = [(k, "-" if v is None or v == "" else str(v)) for k, v in pairs]
    if not items:
        return ""
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}" for k, v in items)
