"""Which store protocols a backend has, and the mark a store test names the protocols
it uses with (``uses``); a test runs on each backend of ``BACKENDS`` (SQLite and Redis,
tests/support/state_backends.py) that has them all. Both have every protocol now; a
backend being built would run exactly what it has, never a skip. Every backend is opened
by URL with ``open_store``, by the tests and by the processes they spawn alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from engine.store import open_store
from engine.store.redis import RedisStore
from tests.support.state_backends import BACKENDS

__all__ = ["BACKENDS", "implements", "open_test_store", "uses"]

# The name the store tests opened Redis by before ``open_store`` took ``redis://``; kept
# only for tests written then, on branches not merged yet. New tests use ``open_store``.
open_test_store = open_store


def implements(backend: str, protocols: Iterable[type]) -> bool:
    """Whether ``backend`` has every one of ``protocols`` (SQLite: the whole ``Store``)."""
    if backend == "sqlite":
        return True
    if backend == "redis":
        return all(p in RedisStore.__mro__ for p in protocols)   # declared bases
    raise AssertionError(f"unknown backend {backend!r}")


def uses(*protocols: type) -> pytest.MarkDecorator:
    """The mark ``store_protocols`` a test (or a module's ``pytestmark``) names the store
    protocols it uses with (``with_args``: a class alone would be taken for the test)."""
    return pytest.mark.store_protocols.with_args(*protocols)
