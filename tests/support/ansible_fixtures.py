"""Fixtures for the tests of the Ansible executor: an executor on the tests' own playbooks
(tests/fixtures/playbooks) and one on the shipped playbooks, both on the tests'
inventory, with a private data dir root that each test checks is left empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.artifacts import RunArtifacts
from engine.executors.ansible import AnsibleExecutor
from engine.security.redaction import Redactor
from tests.support.paths import ROOT, TEST_INVENTORY, TEST_PLAYBOOKS

SHIPPED_PLAYBOOKS = ROOT / "playbooks"
INVENTORY = TEST_INVENTORY
SHIPPED = sorted(p.name for p in SHIPPED_PLAYBOOKS.glob("*.yml"))   # their file names


@pytest.fixture
def private_root(tmp_path: Path) -> Path:
    """Where the executor makes its private data dirs: must be empty after every run."""
    path = tmp_path / "private"
    path.mkdir()
    return path


@pytest.fixture
def artifacts_root(tmp_path: Path) -> Path:
    path = tmp_path / "artifacts"
    path.mkdir()
    return path


@pytest.fixture
def ansible_executor(private_root: Path) -> AnsibleExecutor:
    return AnsibleExecutor(TEST_PLAYBOOKS, INVENTORY, redactor=Redactor(), tmp_root=private_root)


@pytest.fixture
def shipped_executor(private_root: Path) -> AnsibleExecutor:
    return AnsibleExecutor(SHIPPED_PLAYBOOKS, INVENTORY, redactor=Redactor(),
                           tmp_root=private_root)


_runs = iter(range(1_000_000))


def new_run(root: Path) -> RunArtifacts:
    return RunArtifacts(root, f"run-{os.getpid()}-{next(_runs)}")


def assert_private_dirs_deleted(private_root: Path) -> None:
    assert list(private_root.iterdir()) == []
