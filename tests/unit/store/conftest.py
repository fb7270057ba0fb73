"""The ``store`` fixture, once per backend that has the protocols a test uses: every
protocol's tests run against each.

A test (or its module, ``pytestmark``) names the protocols it uses with
``@pytest.mark.store_protocols(...)``; unmarked, it uses the whole ``Store``. It runs on
every backend of ``backends.BACKENDS`` that has them all (both have every protocol), so
a backend being built runs exactly what it has: never a skip. The tests go through the
protocols only, opening a store by URL with ``open_store``, so they pass unchanged for
every backend. Tests of one backend's own machinery live in their own module
(``test_sqlite.py``, ``test_redis.py``).

Redis: the session's one real ``redis-server`` (``redis_store_server``, tests/conftest.py);
each test gets a key prefix of its own (tests/support/state_backends.py), so tests never
see each other's keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import Store, open_store
from tests.support.state_backends import backend_param, store_url_for
from tests.unit.store.backends import BACKENDS, implements


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "store_protocols(*protocols): the store protocols a test uses; it runs "
        "on every backend that has them all (unmarked: the whole Store)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" not in metafunc.fixturenames:
        return
    needed = [p for mark in metafunc.definition.iter_markers("store_protocols")
              for p in mark.args] or [Store]
    metafunc.parametrize("store_url", [backend_param(b) for b in BACKENDS
                                       if implements(b, needed)], indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh, empty store of this backend is, as ``open_store`` takes it; several
    processes opening it share one store."""
    return store_url_for(request.param, request, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    yield s
    s.close()
