"""The ``store`` fixture, once per backend: every protocol's tests run against each.

A backend joins by adding its name to ``BACKENDS`` and its URL to ``store_url``; the
tests go through the protocols only (``open_store``, never a backend's class), so they
pass unchanged for every backend. Tests of one backend's own machinery live in their
own module (``test_sqlite.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import Store, open_store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh, empty store of this backend is, as ``open_store`` takes it; several
    processes opening it share one store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'recovery.db'}"
    raise AssertionError(f"no store URL for backend {request.param!r}")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()
