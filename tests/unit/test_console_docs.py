"""docs/console.md stays true: its table of roles has a row for each role the engine
defines (engine/security/roles.py), in the same order, and no other; and it shows every
screenshot ``make screenshots`` takes (tests/support/console_screenshots.py), and no
other."""

from __future__ import annotations

import re

from engine.security.roles import ROLES
from tests.support.console_screenshots import DEFAULT_FOLDER, SHOTS
from tests.support.docs import DOCS, first_cells, sections

CONSOLE = DOCS / "console.md"


def test_the_role_table_has_a_row_for_each_role_in_the_table_s_order():
    rows = first_cells(sections(CONSOLE)["What each role can do"])
    assert rows == list(ROLES)


def test_the_doc_shows_each_screenshot_the_script_takes():
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", CONSOLE.read_text())
    folder = DEFAULT_FOLDER.relative_to(DOCS).as_posix()
    assert sorted(shown) == sorted(f"{folder}/{name}.png" for name in SHOTS)
