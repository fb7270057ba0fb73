"""The state backends a test runs on: one store URL per backend, and the ``both_backends``
mark that runs a test once on each (a plugin of tests/conftest.py).

A test whose outcome depends on the store (gates, locks, cooldowns, approvals, incidents)
is marked ``@pytest.mark.both_backends`` (or its module, ``pytestmark``): it runs once on
SQLite and once on a real ``redis-server``, with no skip for either, since a test that
passes on one backend only is a bug in the other. Its ``engine_env`` (tests/conftest.py)
keeps its state on that backend (``state_url``: ``None`` for SQLite, the engine home's
default); ``store_url`` is the URL itself, as ``open_store`` takes it.

Redis: the session's one ``redis-server`` (``redis_store_server``: AOF on, a free port,
never the machine's own on 6379); each test gets a key prefix of its own, so tests never
see each other's keys.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "redis")
MARKER = "both_backends"


def backend_param(backend: str) -> object:
    """``backend`` as a parameter: Redis needs a real ``redis-server``."""
    marks = [pytest.mark.requires("redis-server")] if backend == "redis" else []
    return pytest.param(backend, id=backend, marks=marks)


def store_url_for(backend: str, request: pytest.FixtureRequest, folder: Path) -> str:
    """Where a fresh, empty store of ``backend`` is (SQLite in ``folder``); several
    processes opening it share one store."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'state' / 'recovery.db'}"
    if backend == "redis":
        server = request.getfixturevalue("redis_store_server")
        return f"{server.url}?prefix=test-{uuid.uuid4().hex}:"
    raise AssertionError(f"no store URL for backend {backend!r}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: the test runs once per state backend ({', '.join(BACKENDS)}), "
        "its engine_env keeping its state there")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "state_backend" in metafunc.fixturenames and \
            metafunc.definition.get_closest_marker(MARKER) is not None:
        metafunc.parametrize("state_backend", [backend_param(b) for b in BACKENDS],
                             indirect=True)


@pytest.fixture
def state_backend(request: pytest.FixtureRequest) -> str:
    """The backend this test runs on: each in turn under ``both_backends``, else SQLite."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def store_url(state_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store on the test's backend, as ``open_store`` takes it."""
    return store_url_for(state_backend, request, tmp_path)


@pytest.fixture
def state_url(state_backend: str, request: pytest.FixtureRequest) -> str | None:
    """The state URL of the test's ``engine_env``: ``None`` (the engine home's default
    SQLite file) on SQLite, else ``store_url``."""
    if state_backend == "sqlite":
        return None
    return request.getfixturevalue("store_url")
