"""What the tests read from the operator's docs (docs/*.md): sections by heading, the
first column of their tables, and the example files they quote."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.paths import ROOT

DOCS = ROOT / "docs"
_HEADING = re.compile(r"^(#{2,4}) (.+)$", re.M)
_FIRST_CELL = re.compile(r"^\| *`([^`]+)` *\|", re.M)
# A quoted example: this marker line, then a fenced block holding the file verbatim.
_QUOTE = re.compile(r"^<!-- example: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)^```$",
                    re.M | re.S)


def sections(path: Path) -> dict[str, str]:
    """Heading text (``#`` marks and backticks dropped) -> the text under it, up to the
    next heading of any level."""
    text = path.read_text()
    found = list(_HEADING.finditer(text))
    out = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        out[match.group(2).replace("`", "").strip()] = text[match.end():end]
    return out


def first_cells(text: str) -> list[str]:
    """The backticked first cell of every table row in ``text`` (header rows have none)."""
    return _FIRST_CELL.findall(text)


def table_rows(text: str) -> list[list[str]]:
    """Every table row of ``text`` whose first cell is backticked, as its cells."""
    rows = []
    for line in text.splitlines():
        if _FIRST_CELL.match(line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def quoted_examples(path: Path) -> dict[str, str]:
    """Example file (relative to the repository) -> the code the doc quotes for it."""
    return {m.group("path"): m.group("body") for m in _QUOTE.finditer(path.read_text())}
