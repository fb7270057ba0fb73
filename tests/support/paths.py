"""Where things are in the checkout, for the tests and the benches: every path a test
reads is under ``ROOT`` (or in its own temporary folder)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]        # the repository
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
ALERTMANAGER_FIXTURES = FIXTURES / "alertmanager"  # payloads as Alertmanager sends them
TEST_PLAYBOOKS = FIXTURES / "playbooks"            # the tests' own playbooks
TEST_INVENTORY = FIXTURES / "inventory" / "hosts.yml"
EXAMPLES = ROOT / "docs" / "examples"
