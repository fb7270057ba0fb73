"""Listing tables measured in terminal cells, not characters: a label value or a reason in
Chinese, Japanese or with an emoji takes two cells a character, and a table that counted
characters would run past the terminal's edge and misalign its columns."""

from __future__ import annotations

import unicodedata

import pytest

from engine.cli.output import table

COLUMNS = [("TARGET", lambda row: row[0]), ("STATE", lambda row: row[1]),
           ("REASON", lambda row: row[2])]
ROWS = [("磁盘服务器一号", "failed", "磁盘已满，需要清理旧的日志文件以及临时文件，请尽快处理" * 2),
        ("db-1", "ok", "disk under the thresholds"),
        ("cache-🚀", "ok", "fine")]


def cells(text: str) -> int:
    """Terminal cells of ``text``: wide and fullwidth characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def column_starts(line: str) -> list[int]:
    """The cell offsets where a column's text begins (after two spaces or more)."""
    starts, at, gap = [], 0, 2
    for ch in line:
        if ch != " " and gap >= 2 and at > 0:
            starts.append(at)
        gap = gap + 1 if ch == " " else 0
        at += cells(ch)
    return starts


@pytest.mark.parametrize("width", [60, 80])
def test_wide_characters_fit_the_terminal_and_keep_columns_aligned(
        monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    lines = table(ROWS, COLUMNS).splitlines()
    assert max(cells(line) for line in lines) <= width, lines
    header = column_starts(lines[0])
    for line in lines[1:]:
        if not line.startswith(" "):             # a row's first line, not a wrapped cell's
            assert column_starts(line)[:2] == header[:2], (lines[0], line)


def test_a_pipe_keeps_wide_cells_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.cli.output.terminal_width", lambda: None)
    text = table(ROWS, COLUMNS)
    assert ROWS[0][2] in text
    lines = text.splitlines()
    for line in lines[1:]:
        assert column_starts(line)[:2] == column_starts(lines[0])[:2], lines
