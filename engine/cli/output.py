"""How the CLI speaks: aligned tables and times for people, JSON for machines.

With ``--json`` a command prints exactly one JSON document on stdout and nothing else
there; everything meant for a person (notes, warnings) goes to stderr.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.cells import cell_len, chop_cells

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
    """``text`` on one line within ``width`` terminal cells, cut with ``...``."""
    value = "" if text is None else str(text).replace("\n", " ")
    return value if cell_len(value) <= width else _cut(value, max(0, width - 3)) + "..."


def _cut(text: str, width: int) -> str:
    """The longest start of ``text`` within ``width`` terminal cells (a wide character,
    CJK or an emoji, takes two: a table measured in characters runs past the edge)."""
    if cell_len(text) <= width:
        return text
    return chop_cells(text, width)[0] if width > 0 else ""


def _wrap(text: str, width: int) -> list[str]:
    """``text`` over lines of at most ``width`` cells, between words where it can."""
    return [piece for line in textwrap.wrap(text, width, break_long_words=True)
            for piece in chop_cells(line, width)] or [""]


LAST_COLUMN_MIN = 30     # the last column gives way first, down to this
CELL_MIN = 5             # no column narrower than its header, nor than this (if wider)


def table(rows: Iterable[Any], columns: Sequence[Column], *, last_width: int | None = None,
          empty: str = "(none)", indent: int = 0) -> str:
    """Rows as a left-aligned table that fits the terminal (``indent``: the columns the
    caller puts before each line).

    The last column (a reason, a plan) is never padded. On a terminal (or with COLUMNS
    set) no line is wider than it: the last column gives way first, cut with ``...``
    down to ``LAST_COLUMN_MIN`` (the whole reason is in ``--json`` and ``show``), then
    the widest columns (``_fit``), their cells wrapped within the column (an id cut
    short could not be copied); a table whose headers alone are too wide is printed as
    a block per row (``_stacked``). In a pipe every cell is whole, as recorded.
    ``last_width`` caps the last column everywhere; with ``last_width=0`` it is never
    cut: wrapped on a terminal."""
    cells = [[("-" if (v := get(row)) is None or v == "" else str(v).replace("\n", " "))
              for _, get in columns] for row in rows]
    if not cells:
        return empty
    if last_width:
        for line in cells:
            line[-1] = shorten(line[-1], last_width)
    headers = [name for name, _ in columns]
    widths = [max(cell_len(headers[i]), *(cell_len(line[i]) for line in cells))
              for i in range(len(columns))]
    room = terminal_width()
    if room is None:
        return "\n".join(_row(line, widths) for line in [headers, *cells])
    room = max(1, room - indent)
    whole = [max(cell_len(h), min(CELL_MIN, w)) for h, w in zip(headers, widths, strict=True)]
    if sum(whole) + 2 * (len(whole) - 1) > room:
        return _stacked(headers, cells, room)
    widths = _fit(widths, whole, room)
    lines: list[str] = []
    for line in [headers, *cells]:
        if last_width != 0:
            line = [*line[:-1], shorten(line[-1], widths[-1])]
        # A cell wider than its column goes on over more lines, in its column.
        wrapped = [_wrap(value, max(1, widths[i])) for i, value in enumerate(line)]
        for k in range(max(len(cell) for cell in wrapped)):
            lines.append(_cut(_row([cell[k] if k < len(cell) else "" for cell in wrapped],
                                   widths), room))
    return "\n".join(lines)


def _row(line: Sequence[str], widths: Sequence[int]) -> str:
    padded = [value + " " * (widths[i] - cell_len(value)) for i, value in enumerate(line[:-1])]
    return "  ".join([*padded, line[-1]]).rstrip()


def _fit(widths: Sequence[int], whole: Sequence[int], room: int) -> list[int]:
    """Column widths whose table (two spaces between columns) fits ``room``: the last
    column gives way first, to ``LAST_COLUMN_MIN``; then the widest other columns, one
    at a time, as far as their header's width (``whole``, which fits); then the last."""
    fitted = list(widths)
    for floors in ([*fitted[:-1], LAST_COLUMN_MIN], [*whole[:-1], LAST_COLUMN_MIN], whole):
        over = sum(fitted) + 2 * (len(fitted) - 1) - room
        while over > 0:
            can = [i for i, w in enumerate(fitted) if w > floors[i]]
            if not can:
                break
            fitted[max(can, key=lambda i: fitted[i])] -= 1
            over -= 1
    return fitted


def _stacked(headers: Sequence[str], cells: Sequence[Sequence[str]], room: int) -> str:
    """Rows too many columns for the terminal even with whole headers only: each row as
    a block of ``HEADER  value`` lines, values wrapped, a blank line between rows."""
    key = min(max(len(h) for h in headers), room // 3)
    blocks = []
    for line in cells:
        rows = []
        for header, value in zip(headers, line, strict=True):
            parts = _wrap(value, max(1, room - key - 2))
            rows.extend(_cut(f"{(header[:key] if k == 0 else '').ljust(key)}  {part}".rstrip(),
                             room) for k, part in enumerate(parts))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def terminal_width() -> int | None:
    """The terminal's width: COLUMNS when set, else stdout's terminal; None in a pipe."""
    columns = shutil.get_terminal_size(fallback=(0, 0)).columns
    return columns or None


def indented(text: str, prefix: str = "  ") -> str:
    """Every line of ``text`` under a heading: after ``prefix``."""
    return "\n".join(f"{prefix}{line}" for line in text.splitlines())


def indented_table(rows: Iterable[Any], columns: Sequence[Column], prefix: str = "  ",
                   **options: Any) -> str:
    """A table under a heading, fit to what the terminal has left after ``prefix``."""
    return indented(table(rows, columns, indent=len(prefix), **options), prefix)


def key_values(pairs: Iterable[tuple[str, Any]], indent: str = "") -> str:
    items = [(k, "-" if v is None or v == "" else str(v)) for k, v in pairs]
    if not items:
        return ""
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{indent}{k.ljust(width)}  {v}" for k, v in items)
