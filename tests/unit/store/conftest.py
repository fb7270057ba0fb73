"""The ``store`` fixture, once per backend that has the protocols a test uses: every
protocol's tests run against each.

A test (or its module, ``pytestmark``) names the protocols it uses with
``@pytest.mark.store_protocols(...)``; unmarked, it uses the whole ``Store``. It runs on
every backend of ``backends.BACKENDS`` that has them all (both have every protocol
now), so a backend being built runs exactly what it has: never a skip. The tests go
through the protocols only (``backends.open_test_store``: ``open_store``, or the class
of a backend ``open_store`` does not choose yet), so they pass unchanged for every
backend. Tests of one backend's own machinery live in their own module
(``test_sqlite.py``, ``test_redis.py``).

Redis: one real ``redis-server`` for the session (``redis_store_server``, tests/conftest.py:
AOF on, a free port, never the machine's own on 6379); each test gets a key prefix of
its own, so tests never see each other's keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import Store
from tests.unit.store.backends import BACKENDS, implements, open_test_store


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "store_protocols(*protocols): the store protocols a test uses; it runs "
        "on every backend that has them all (unmarked: the whole Store)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" not in metafunc.fixturenames:
        return
    needed = [p for mark in metafunc.definition.iter_markers("store_protocols")
              for p in mark.args] or [Store]
    metafunc.parametrize("store_url", [b for b in BACKENDS if implements(b, needed)],
                         indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh, empty store of this backend is, as ``open_store`` takes it; several
    processes opening it share one store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'recovery.db'}"
    if request.param == "redis":
        server = request.getfixturevalue("redis_store_server")
        return f"{server.url}?prefix=test-{uuid.uuid4().hex}:"
    raise AssertionError(f"no store URL for backend {request.param!r}")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_test_store(store_url)
    yield s
    s.close()
